import datetime as dt

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medgan.data.base import DataError, subject_key
from medgan.data.dicom import (find_series, load_series, read_dicom, suv_factor, suv_factor_from_values,
                               to_hu, write_slice)


def _ct_series(folder, hu_slices, *, positions=None, patient_id="P1", series_uid="1.2.3", slope=1.0,
               intercept=-1024.0, order=None):
    paths = []
    positions = positions if positions is not None else [float(k) * 2.5 for k in range(len(hu_slices))]
    order = order if order is not None else range(len(hu_slices))
    for k in order:
        stored = np.round((hu_slices[k] - intercept) / slope).astype(np.uint16)
        paths.append(write_slice(folder / f"im{k:03d}.dcm", stored, modality="CT", patient_id=patient_id,
                                 series_uid=series_uid, study_uid="1.2", instance_number=k + 1,
                                 position_mm=(0, 0, positions[k]), rescale_slope=slope, rescale_intercept=intercept))
    return paths


def test_hu_uses_float_before_intercept(tmp_path):
    hu = np.array([[-1000, -500], [0, 1200]], np.float32)
    path = write_slice(tmp_path / "a.dcm", np.round((hu + 1024) / 2).astype(np.uint16), modality="CT", patient_id="x",
                       series_uid="1", study_uid="2", rescale_slope=2.0, rescale_intercept=-1024.0)
    ds = pydicom.dcmread(path)
    assert ds.pixel_array.dtype == np.uint16 and ds.PixelRepresentation == 0
    values = to_hu(ds, path)
    assert values.dtype == np.float32
    np.testing.assert_allclose(values, hu)  # uint16 arithmetic would wrap the negatives


def test_series_sorted_by_position_and_duplicates_dropped(tmp_path):
    slices = [np.full((4, 4), 10.0 * k, np.float32) for k in range(5)]
    paths = _ct_series(tmp_path / "s", slices, order=[3, 0, 4, 1, 2])
    # a duplicate of slice 2 under another file name
    write_slice(tmp_path / "s" / "dup.dcm", np.full((4, 4), 1024 + 20, np.uint16), modality="CT", patient_id="P1",
                series_uid="1.2.3", study_uid="1.2", instance_number=99, position_mm=(0, 0, 5.0),
                rescale_slope=1.0, rescale_intercept=-1024.0)
    volume = load_series(sorted((tmp_path / "s").glob("*.dcm")))
    assert volume.n_duplicates_dropped == 1
    np.testing.assert_allclose(volume.array[:, 0, 0], [0, 10, 20, 30, 40])
    assert volume.spacing_mm[0] == pytest.approx(2.5)
    assert volume.subject == subject_key("P1") and "P1" not in volume.subject


def test_inconsistent_spacing_names_the_file(tmp_path):
    slices = [np.zeros((4, 4), np.float32)] * 4
    _ct_series(tmp_path, slices, positions=[0.0, 2.5, 5.0, 12.0])
    with pytest.raises(DataError, match=r"im003\.dcm: inconsistent slice spacing"):
        load_series(sorted(tmp_path.glob("*.dcm")))


def test_truncated_and_non_dicom_files(tmp_path):
    paths = _ct_series(tmp_path / "s", [np.zeros((8, 8), np.float32)] * 3)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) - 40])  # PixelData cut short
    with pytest.raises(DataError, match=r"im001\.dcm: .*(truncated|unreadable)"):
        load_series(paths)
    bad = tmp_path / "s" / "notes.dcm"
    bad.write_text("not a dicom file")
    with pytest.raises(DataError, match=r"notes\.dcm: unreadable"):
        read_dicom(bad)
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.dcm"):
        read_dicom(empty)


def test_skip_bad_counts_and_logs(tmp_path, caplog):
    from medgan.data.base import BadInputLog
    paths = _ct_series(tmp_path / "s", [np.zeros((8, 8), np.float32)] * 3, positions=[0.0, 2.5, 5.0])
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[:-40])
    log = BadInputLog(skip_bad=True, name="t")
    with caplog.at_level("WARNING", logger="medgan.data"):
        volume = load_series(paths, log=log)
    assert volume.array.shape[0] == 2 and log.count == 1 and "im002.dcm" in log.skipped[0][0]
    assert "im002.dcm" in caplog.text


def test_find_series_by_modality_and_mixed_folder(tmp_path):
    _ct_series(tmp_path / "odd-folder-name" / "x", [np.zeros((4, 4), np.float32)] * 2, series_uid="1.1")
    write_slice(tmp_path / "seg" / "seg.dcm", np.zeros((4, 4), np.uint16), modality="PT", patient_id="P1",
                series_uid="9.9", study_uid="1.2")
    (tmp_path / "LICENSE").write_text("TCIA data usage policy")  # beside real downloads; not DICOM
    write_slice(tmp_path / "odd-folder-name" / "x" / "IM0003", np.zeros((4, 4), np.uint16), modality="CT",
                patient_id="P1", series_uid="1.1", study_uid="1.2", position_mm=(0, 0, 5.0))
    found = find_series(tmp_path, modality="CT")
    assert len(found) == 1 and len(found[0].files) == 3
    # a second CT series dropped into the same folder
    write_slice(tmp_path / "odd-folder-name" / "x" / "other.dcm", np.zeros((4, 4), np.uint16), modality="CT",
                patient_id="P1", series_uid="1.7", study_uid="1.2")
    with pytest.raises(DataError, match="mixed series in one folder"):
        find_series(tmp_path, modality="CT")


def test_find_series_reads_headers_only(tmp_path, monkeypatch):
    # indexing a dataset never decodes pixels: a slice whose pixel data is cut short is still indexed
    # (load_series reports it), and no pixel array is ever built
    paths = _ct_series(tmp_path / "s", [np.zeros((16, 16), np.float32)] * 3)
    paths[1].write_bytes(paths[1].read_bytes()[:-64])

    def no_pixels(self):
        raise AssertionError("pixel data decoded while indexing")
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_pixels))
    for progress in (False, True):
        found = find_series(tmp_path, modality="CT", progress=progress)
        assert len(found) == 1 and sorted(found[0].files) == sorted(paths)
    monkeypatch.undo()
    with pytest.raises(DataError, match=r"im001\.dcm: PixelData"):
        load_series(found[0].files)


def _pet_dataset(**overrides):
    ds = Dataset()
    ds.Units = "BQML"
    ds.DecayCorrection = "START"
    ds.PatientWeight = "72.5"
    ds.SeriesDate = "20200101"
    ds.SeriesTime = "103000.000000"
    info = Dataset()
    info.RadionuclideTotalDose = "350000000"
    info.RadionuclideHalfLife = "6586.2"
    info.RadiopharmaceuticalStartTime = "093015.500000"
    ds.RadiopharmaceuticalInformationSequence = Sequence([info])
    for key, value in overrides.items():
        setattr(ds, key, value)
    return ds


def test_suv_factor_matches_hand_computation():
    ds = _pet_dataset()
    elapsed = (10 * 3600 + 30 * 60) - (9 * 3600 + 30 * 60 + 15.5)
    hand = 72.5 * 1000 / (350e6 * 2 ** (-elapsed / 6586.2))
    assert suv_factor(ds) == pytest.approx(hand, rel=1e-9)
    assert suv_factor_from_values(dose_bq=350e6, half_life_s=6586.2, weight_kg=72.5,
                                  injection_time=dt.datetime(2020, 1, 1, 9, 30, 15, 500000),
                                  scan_time=dt.datetime(2020, 1, 1, 10, 30)) == pytest.approx(hand)
    assert suv_factor(_pet_dataset(DecayCorrection="ADMIN")) == pytest.approx(72.5 * 1000 / 350e6)
    # with a start date-time tag, the date matters: the day before -> 25 h of decay
    ds = _pet_dataset()
    ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime = "20191231093015.5"
    assert suv_factor(ds) == pytest.approx(72.5 * 1000 / (350e6 * 2 ** (-(elapsed + 86400) / 6586.2)), rel=1e-9)
    # scan just after midnight, injection (time only) the evening before
    late = _pet_dataset(SeriesTime="000500")
    late.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartTime = "235500"
    assert suv_factor(late) == pytest.approx(72.5 * 1000 / (350e6 * 2 ** (-600 / 6586.2)), rel=1e-9)


def test_suv_missing_tag_is_named():
    with pytest.raises(DataError, match="PatientWeight"):
        suv_factor(_pet_dataset(PatientWeight="0"))
    ds = _pet_dataset()
    del ds.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose
    with pytest.raises(DataError, match="RadionuclideTotalDose"):
        suv_factor(ds)
