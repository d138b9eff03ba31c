import numpy as np
import pytest

from medgan.data.chest_xray import ChestXray, parse_findings, percentile_to_8bit, read_radiograph
from medgan.data.dicom import write_slice


def test_monochrome1_is_inverted_to_match_monochrome2(tmp_path):
    rng = np.random.default_rng(0)
    value = rng.integers(0, 4096, (32, 32)).astype(np.uint16)
    kwargs = dict(modality="DX", patient_id="1", series_uid="1", study_uid="2", bits_stored=12,
                  rescale_slope=1.0, rescale_intercept=-512.0)
    m2 = write_slice(tmp_path / "m2.dcm", value, photometric="MONOCHROME2", **kwargs)
    m1 = write_slice(tmp_path / "m1.dcm", (4095 - value).astype(np.uint16), photometric="MONOCHROME1", **kwargs)
    a = read_radiograph(m2, low_percentile=0, high_percentile=99, normalise_png=False)
    b = read_radiograph(m1, low_percentile=0, high_percentile=99, normalise_png=False)
    np.testing.assert_array_equal(a, b)
    # bright = dense: the pixel with the largest stored MONOCHROME2 value is white
    assert a.flat[np.argmax(value)] == 255


def test_percentile_normalisation_is_8_bit():
    values = np.arange(1000, dtype=np.float32)
    levels = percentile_to_8bit(values, low_percentile=0, high_percentile=99)
    assert levels.min() == 0 and levels.max() == 255 and np.all(levels == np.round(levels))
    high = np.percentile(values, 99)
    assert np.all(levels[values >= high] == 255)  # the top 1 % saturates
    np.testing.assert_allclose(levels[values < high], np.round(values[values < high] / high * 255))


def test_parse_findings_and_aliases():
    assert parse_findings("No Finding", aliases={}) == []
    assert parse_findings("Nodule|Effusion", aliases={"effusion": "Pleural Effusion"}) == ["Nodule", "Pleural Effusion"]


def test_label_modes_and_filters(make_phantom):
    root = make_phantom("cxr")
    normal = ChestXray(root, image_size=16, label_mode="abnormal", normal_only=True)
    assert {r["label"] for r in normal.records} == {0}
    abnormal = ChestXray(root, image_size=16, abnormal_only=True)
    assert all(r["meta"]["abnormal"] == 1 for r in abnormal.records)
    train, test = ChestXray(root, image_size=16, split="train"), ChestXray(root, image_size=16, split="test")
    assert not set(train.subjects) & set(test.subjects)
    with pytest.raises(ValueError):
        ChestXray(root, label_mode="severity")
