import logging

import numpy as np
import pandas as pd
import pytest

from medgan.data.base import DataError
from medgan.data.chest_xray import (FINDING_SPELLINGS, FINDINGS, ChestXray, match_findings, parse_findings,
                                    percentile_to_8bit, read_radiograph)
from medgan.data.dicom import write_slice
from medgan.data.transforms import resize


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


# ---------------------------------------------------------------- labels CSV (issue 15, items 7, 11)
def _table(root):
    return pd.read_csv(root / "Data_Entry.csv", dtype=str, keep_default_na=False)


def _save(root, table):
    table.to_csv(root / "Data_Entry.csv", index=False)


def _targets(dataset):
    return np.stack([r["label"] for r in dataset.records])


@pytest.mark.parametrize("spelling", [
    {"Pleural Effusion": "Effusion"},                                            # ChestX-ray14
    {"Nodule": "Nodule/Mass", "Interstitial Opacity": "ILD", "Pleural Effusion": "Pleural effusion"},  # VinDr-CXR
    {"Interstitial Opacity": "Interstitial lung disease", "Pneumothorax": "pneumothorax"},
])
def test_public_spellings_give_the_same_targets(phantom_copy, spelling):
    root = phantom_copy("cxr")
    full = ChestXray(root, image_size=16)
    table = _table(root)
    table["Finding Labels"] = ["|".join(spelling.get(p, p) for p in t.split("|")) for t in table["Finding Labels"]]
    _save(root, table)
    np.testing.assert_array_equal(_targets(ChestXray(root, image_size=16)), _targets(full))


def test_spelling_table_covers_the_four_label_sets():
    chestxray14 = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
                   "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"]
    chexpert = ["Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema", "Consolidation",
                "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
                "Support Devices"]
    vindr = ["Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture", "Consolidation",
             "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung Opacity", "Lung cavity", "Lung cyst",
             "Mediastinal shift", "Nodule/Mass", "Other lesion", "Pleural effusion", "Pleural thickening",
             "Pneumothorax", "Rib fracture", "COPD", "Lung tumor", "Pneumonia",
             "Tuberculosis", "Other disease", "No finding"]
    report = match_findings(["|".join(chestxray14 + chexpert + vindr)], FINDINGS, FINDING_SPELLINGS)
    assert report["near_misses"] == {} and report["unmatched"] == []
    assert report["matched"] == {"Nodule": ["Nodule", "Nodule/Mass"], "Consolidation": ["Consolidation"],
                                 "Interstitial Opacity": ["ILD"], "Pleural Effusion": ["Effusion", "Pleural Effusion",
                                                                                        "Pleural effusion"],
                                 "Pneumothorax": ["Pneumothorax"]}
    assert report["mapping"]["Pleural_Thickening"] == "Pleural Thickening"


@pytest.mark.parametrize("old, new", [("Pleural Effusion", "Pleural_Effusion"), ("Nodule", "Nodules"),
                                      ("Pneumothorax", "Pneumothoraces"), ("Consolidation", "consolidations")])
def test_near_miss_labels_are_an_error_never_zero_targets(phantom_copy, old, new):
    root = phantom_copy("cxr")
    table = _table(root)
    table["Finding Labels"] = [t.replace(old, new) for t in table["Finding Labels"]]
    _save(root, table)
    with pytest.raises(DataError, match=rf"Data_Entry.csv: Finding Labels: label\(s\) match no finding: {new} \(like '{old}'\)"):
        ChestXray(root, image_size=16, skip_bad=True)
    dataset = ChestXray(root, image_size=16, finding_aliases={new: old})  # the fix the message asks for
    assert _targets(dataset)[:, FINDINGS.index(old)].sum() > 0


def test_unknown_labels_are_reported_and_kept_as_other_findings(phantom_copy, caplog):
    root = phantom_copy("cxr")
    table = _table(root)
    table.loc[0, "Finding Labels"] = "Situs inversus"
    _save(root, table)
    with caplog.at_level(logging.WARNING, logger="medgan.data"):
        dataset = ChestXray(root, image_size=16)
    assert any("Data_Entry.csv: Finding Labels: label(s) ['Situs inversus'] match no known finding" in r.getMessage()
               for r in caplog.records)
    assert dataset.label_report["unmatched"] == ["Situs inversus"]
    first = dataset.records[0]
    assert first["meta"]["other_findings"] == "Situs inversus" and first["meta"]["abnormal"] == 1


def test_repeated_image_index_collapses_or_is_an_error(phantom_copy):
    root = phantom_copy("cxr")
    full = ChestXray(root, image_size=16)
    table = _table(root)
    twin = table.iloc[[1]].copy()
    twin["Finding Labels"] = "|".join(reversed(twin["Finding Labels"].iloc[0].split("|")))  # same labels
    _save(root, pd.concat([table, twin, table.iloc[[2]]]))
    dataset = ChestXray(root, image_size=16)
    assert dataset.duplicates_collapsed == 2 and len(dataset) == len(full)
    clash = table.iloc[[4]].copy()
    clash["Finding Labels"] = "No Finding"  # contradicts row 6
    _save(root, pd.concat([table, clash]))
    index = clash["Image Index"].iloc[0]
    with pytest.raises(DataError, match=rf"Data_Entry.csv: Finding Labels: Image Index '{index}' listed in rows \[6, 18\]"):
        ChestXray(root, image_size=16)
    skipped = ChestXray(root, image_size=16, skip_bad=True)
    assert skipped.bad_input.count == 1 and len(skipped) == len(full) - 1
    clash = table.iloc[[4]].copy()
    clash["Patient ID"] = "99999"
    _save(root, pd.concat([table, clash]))
    with pytest.raises(DataError, match=rf"Patient ID: Image Index '{index}' listed in rows"):
        ChestXray(root, image_size=16)


def test_blank_patient_id_is_never_one_subject(phantom_copy):
    root = phantom_copy("cxr")
    full = ChestXray(root, image_size=16)
    table = _table(root)
    table.loc[[3, 7], "Patient ID"] = ["", "  "]
    _save(root, table)
    with pytest.raises(DataError, match=r"Data_Entry.csv: Patient ID: blank in row 5 \(Image Index '00010003_000.dcm'"):
        ChestXray(root, image_size=16)
    dataset = ChestXray(root, image_size=16, skip_bad=True)  # each such image skipped and counted
    assert dataset.bad_input.count == 2 and len(dataset) == len(full) - 2
    assert len(dataset.subjects) == len(full.subjects) - 2


def test_patient_ids_are_text_and_csv_files_are_checked(phantom_copy):
    root = phantom_copy("cxr")
    table = _table(root)
    table.loc[0, "Patient ID"], table.loc[1, "Patient ID"] = "007", "7"
    _save(root, table)
    dataset = ChestXray(root, image_size=16)
    assert dataset.records[0]["subject"] != dataset.records[1]["subject"]  # leading zeros kept
    text = (root / "Data_Entry.csv").read_text()
    (root / "Data_Entry.csv").write_bytes(b"")
    with pytest.raises(DataError, match=r"Data_Entry.csv: labels CSV is empty \(0 bytes\)"):
        ChestXray(root, image_size=16)
    (root / "Data_Entry.csv").write_bytes(text.replace("Calcification", "Calcification|Situs inversé").encode("latin-1"))
    dataset = ChestXray(root, image_size=16)
    assert "Situs inversé" in dataset.label_report["unmatched"]
    (root / "Data_Entry.csv").write_text('Image Index,Finding Labels,Patient ID\n"a.dcm,No Finding,1\n')
    with pytest.raises(DataError, match=r"Data_Entry.csv: labels CSV unreadable as CSV"):
        ChestXray(root, image_size=16)


def test_palette_png_radiographs_read_through_the_palette(tmp_path):
    from PIL import Image
    levels = np.random.default_rng(0).integers(0, 256, (24, 24)).astype(np.uint8)
    (tmp_path / "images").mkdir()
    Image.fromarray(levels).save(tmp_path / "images" / "a.png")
    image = Image.fromarray(255 - levels).convert("P")
    image.putpalette(np.repeat(np.arange(256)[::-1], 3).astype(np.uint8).tolist())
    image.save(tmp_path / "images" / "b.png")
    (tmp_path / "Data_Entry.csv").write_text("Image Index,Finding Labels,Patient ID\na.png,No Finding,1\nb.png,No Finding,2\n")
    dataset = ChestXray(tmp_path, image_size=24)
    np.testing.assert_array_equal(dataset.records[0]["image"], dataset.records[1]["image"])  # a.png, b.png


# ---------------------------------------------------------------- item store (issue 14, part 1)
def test_pixels_are_decoded_once_into_the_work_dir_and_rows_carry_the_labels(make_phantom, monkeypatch, tmp_path):
    import medgan.data.chest_xray as module

    monkeypatch.setenv("MEDGAN_WORKDIR", str(tmp_path / "work"))
    root = make_phantom("cxr")
    reads = []
    original = module.read_radiograph
    monkeypatch.setattr(module, "read_radiograph", lambda path, **kw: reads.append(path) or original(path, **kw))
    first = ChestXray(root, image_size=16, with_masks=True)
    assert len(reads) == len(first) and first.store.folder.is_relative_to(tmp_path / "work")
    second = ChestXray(root, image_size=16, with_masks=True)
    assert len(reads) == len(first) and second.store.folder == first.store.folder  # read back, not decoded again
    assert ChestXray(root, image_size=8).store.folder != first.store.folder  # another setting, another store
    # labels and metadata come from the rows; items match the decode chain
    i = 3
    item = second[i]
    np.testing.assert_array_equal(second.labels[i], item["label"].numpy())
    assert second.rows[i]["meta"] == item["meta"] and item["mask"].dtype == item["image"].dtype
    path = sorted((root / "images").iterdir())[0]  # the CSV's first row
    expected = resize(original(path, low_percentile=0.0, high_percentile=99.0, normalise_png=False), 16)[None] / 127.5 - 1
    np.testing.assert_allclose(second[0]["image"].numpy(), expected, atol=1e-6)


def test_parallel_decoding_writes_the_same_store(make_phantom, monkeypatch, tmp_path):
    root = make_phantom("cxr")
    contents = []
    for workers in (0, 2):
        monkeypatch.setenv("MEDGAN_WORKDIR", str(tmp_path / f"work-{workers}"))
        contents.append(ChestXray(root, image_size=16, with_masks=True, num_workers=workers).store.content)
    assert contents[0] == contents[1]


def test_the_chestxray14_labels_file_is_found_by_its_release_name(tmp_path):
    from medgan.data.chest_xray import find_labels_csv
    (tmp_path / "Data_Entry_2017_v2020.csv").write_text("x\n")
    assert find_labels_csv(tmp_path, "Data_Entry.csv").name == "Data_Entry_2017_v2020.csv"
    (tmp_path / "Data_Entry_2017.csv").write_text("x\n")
    with pytest.raises(DataError, match="are all present; set data.labels_csv"):
        find_labels_csv(tmp_path, "Data_Entry.csv")
    assert find_labels_csv(tmp_path, "Data_Entry_2017.csv").name == "Data_Entry_2017.csv"
