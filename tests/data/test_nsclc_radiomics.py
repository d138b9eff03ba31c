"""NSCLC-Radiomics: the clinical CSV as sites write it (numeric IDs, duplicates, empty, Latin-1),
CSV <-> image consistency in both directions, and the item store (decoded once, keyed on the files
and settings, rows without pixels, the same items from workers, skips counted on every load)."""

import csv
import io
import os
import shutil

import numpy as np
import pydicom
import pytest
from torch.utils.data import DataLoader

from medgan.config import dataset_work_dir
from medgan.data.base import DataError, subject_key, subjects_of
from medgan.data.dicom import deterministic_uid
from medgan.data.item_store import ItemStore
from medgan.data import nsclc_radiomics
from medgan.data.nsclc_radiomics import CLINICAL_CSV, NSCLCRadiomics
from medgan.data.phantoms import chest_ct

SMALL = {"crop_size": None, "image_size": 32}
SMOKE_SLICES = chest_ct.SMOKE["n_slices"]
SALT = "test-salt"


def _rows(root):
    with open(root / CLINICAL_CSV, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write_rows(root, rows, *, encoding="utf-8"):
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (root / CLINICAL_CSV).write_bytes(out.getvalue().encode(encoding))


def _patient_folders(root):
    return sorted((root / "NSCLC-Radiomics").iterdir())


def test_all_numeric_ids_with_leading_zeros_match(phantom_copy):
    root = phantom_copy("chest_ct")
    rows = _rows(root)
    mapping = {row["PatientID"]: f"{i + 1:05d}" for i, row in enumerate(rows)}  # "00001", ... like an MRN
    for folder in _patient_folders(root):
        for path in folder.rglob("*.dcm"):
            ds = pydicom.dcmread(path)
            ds.PatientID = mapping[str(ds.PatientID)]
            ds.save_as(path)
    labels = {}
    for row in rows:
        row["PatientID"] = mapping[row["PatientID"]]
        labels[subject_key(row["PatientID"], salt=SALT)] = int(row["deadstatus.event"])
    _write_rows(root, rows)
    dataset = NSCLCRadiomics(root, salt=SALT, **SMALL)
    assert dataset.bad_input.count == 0 and dataset.subjects == sorted(labels)
    assert all(r["label"] == labels[r["subject"]] for r in dataset.records)


def test_duplicate_patient_rows(phantom_copy):
    root = phantom_copy("chest_ct")
    reference = NSCLCRadiomics(root, **SMALL)
    rows = _rows(root)
    _write_rows(root, rows + [dict(rows[1])])  # the same row twice: unambiguous, kept once and counted
    dataset = NSCLCRadiomics(root, **SMALL)
    assert dataset.fingerprint() == reference.fingerprint()
    assert dataset.bad_input.count == 1 and "rows [3, 8]" in dataset.bad_input.skipped[0][1]
    contradicting = dict(rows[1], **{"deadstatus.event": str(1 - int(rows[1]["deadstatus.event"]))})
    _write_rows(root, rows + [contradicting])
    with pytest.raises(DataError, match=rf"{CLINICAL_CSV}: PatientID: rows \[3, 8\] are one patient \(s-[0-9a-f]+\) "
                                        r"with different values"):
        NSCLCRadiomics(root, **SMALL)
    dataset = NSCLCRadiomics(root, skip_bad=True, **SMALL)
    assert dataset.bad_input.count == 1 and len(dataset.subjects) == len(rows) - 1  # counted once, not twice


def test_empty_unparsable_and_latin1_csv_name_the_file(phantom_copy):
    root = phantom_copy("chest_ct")
    rows = _rows(root)
    (root / CLINICAL_CSV).write_bytes(b"")
    with pytest.raises(DataError, match=rf"{CLINICAL_CSV}: clinical CSV is empty \(0 bytes\)"):
        NSCLCRadiomics(root, **SMALL)
    (root / CLINICAL_CSV).write_text('PatientID,Histology,deadstatus.event\n"LUNG1-001,adeno,1\n')
    with pytest.raises(DataError, match=rf"{CLINICAL_CSV}: not a readable CSV"):
        NSCLCRadiomics(root, **SMALL)
    rows[0]["Histology"] = "adénocarcinome"
    _write_rows(root, rows, encoding="latin-1")
    with pytest.raises(UnicodeDecodeError):
        (root / CLINICAL_CSV).read_text(encoding="utf-8")
    dataset = NSCLCRadiomics(root, histologies=["Adénocarcinome"], **SMALL)
    assert len(dataset.subjects) == 1 and {r["meta"]["histology"] for r in dataset.records} == {"adénocarcinome"}
    with pytest.raises(DataError, match=rf"{CLINICAL_CSV}: not decodable as 'utf-8'"):
        NSCLCRadiomics(root, clinical_encoding="utf-8", **SMALL)


def test_clinical_patient_without_a_folder_is_counted(phantom_copy):
    root = phantom_copy("chest_ct")
    shutil.rmtree(_patient_folders(root)[2])  # LUNG1-003, row 4 of the CSV
    with pytest.raises(DataError, match=rf"{CLINICAL_CSV}: PatientID on row 4 \(s-[0-9a-f]+\) has no CT series"):
        NSCLCRadiomics(root, **SMALL)
    dataset = NSCLCRadiomics(root, skip_bad=True, **SMALL)
    assert dataset.bad_input.count == 1 and len(dataset.subjects) == len(_rows(root)) - 1
    assert "row 4" in dataset.bad_input.skipped[0][1]


def test_unreadable_patient_folder_is_named_and_counted(phantom_copy, monkeypatch):
    root = phantom_copy("chest_ct")
    hidden = _patient_folders(root)[3]
    real_scandir = os.scandir

    def scandir(path="."):  # a folder without read permission (the tests run as root, so simulate it)
        if isinstance(path, (str, os.PathLike)) and os.fspath(path) == os.fspath(hidden):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)
    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(DataError, match=r"s-[0-9a-f]+: folder unreadable \(PermissionError"):
        NSCLCRadiomics(root, **SMALL)
    dataset = NSCLCRadiomics(root, skip_bad=True, **SMALL)
    reasons = [reason for _, reason in dataset.bad_input.skipped]
    assert len(reasons) == 2 and "folder unreadable" in reasons[0] and "row 5" in reasons[1]
    assert len(dataset.subjects) == len(_rows(root)) - 1


def test_series_without_clinical_row_is_counted(phantom_copy):
    root = phantom_copy("chest_ct")
    rows = _rows(root)
    _write_rows(root, rows[:2] + rows[3:])
    with pytest.raises(DataError, match=r"s-[0-9a-f]+/.*: patient has no row in the clinical CSV"):
        NSCLCRadiomics(root, **SMALL)
    dataset = NSCLCRadiomics(root, skip_bad=True, **SMALL)
    assert dataset.bad_input.count == 1 and len(dataset.subjects) == len(rows) - 1


def _count_decodes(monkeypatch):
    """Counts the series decoded (pixels read) in this process."""
    calls = []
    real = nsclc_radiomics.load_series

    def counting(files, **kwargs):
        calls.append(len(files))
        return real(files, **kwargs)
    monkeypatch.setattr(nsclc_radiomics, "load_series", counting)
    return calls


def test_store_is_built_once_and_keyed_on_files_and_settings(phantom_copy, monkeypatch):
    root = phantom_copy("chest_ct")
    calls = _count_decodes(monkeypatch)
    first = NSCLCRadiomics(root, **SMALL)
    assert len(calls) == len(first.subjects)  # one decode per series, at the first construction only
    calls.clear()
    again = NSCLCRadiomics(root, **SMALL)
    assert calls == [] and again.fingerprint() == first.fingerprint()
    assert [r["meta"] for r in again.rows] == [r["meta"] for r in first.rows]
    np.testing.assert_array_equal(again.records[5]["image"], first.records[5]["image"])
    assert first.store.folder.parent == dataset_work_dir(root) / "items"  # the work folder, never the root
    # other settings: another store; a slice file rewritten (new size and time): the store is rebuilt
    other = NSCLCRadiomics(root, crop_size=None, image_size=16)
    assert other.records[0]["image"].shape == (1, 16, 16) and calls
    calls.clear()
    victim = sorted(_patient_folders(root)[0].rglob("*.dcm"))[2]
    ds = pydicom.dcmread(victim)
    ds.PixelData = (ds.pixel_array[::-1, ::-1] + np.uint16(7)).tobytes()
    ds.ImageComments = "re-exported"
    ds.save_as(victim)
    rebuilt = NSCLCRadiomics(root, **SMALL)
    assert calls and rebuilt.fingerprint() != first.fingerprint()


def test_rows_give_labels_and_meta_without_reading_pixels(phantom_copy, monkeypatch):
    root = phantom_copy("chest_ct")
    labels = {subject_key(r["PatientID"]): int(r["deadstatus.event"]) for r in _rows(root)}
    dataset = NSCLCRadiomics(root, **SMALL)

    def no_pixels(*args, **kwargs):
        raise AssertionError("pixels read for a metadata loop")
    monkeypatch.setattr(ItemStore, "read_array", no_pixels)
    assert len(dataset.rows) == len(dataset) and subjects_of(dataset) == [r["subject"] for r in dataset.rows]
    assert all(r["label"] == labels[r["subject"]] for r in dataset.rows)
    assert {r["meta"]["n_slices"] for r in dataset.rows} == {SMOKE_SLICES}
    assert sorted({r["meta"]["slice_index"] for r in dataset.rows}) == list(range(SMOKE_SLICES))


def test_workers_decode_the_same_items(phantom_copy, tmp_path, monkeypatch):
    root = phantom_copy("chest_ct")
    serial = NSCLCRadiomics(root, **SMALL)
    monkeypatch.setenv("MEDGAN_WORKDIR", str(tmp_path / "other-work"))  # a fresh store, built by 2 workers
    parallel = NSCLCRadiomics(root, num_workers=2, **SMALL)
    assert parallel.store.folder != serial.store.folder
    assert parallel.fingerprint() == serial.fingerprint() and parallel.rows == serial.rows
    batch = next(iter(DataLoader(parallel, batch_size=4, num_workers=0)))
    assert batch["image"].shape == (4, 1, 32, 32) and -1 <= batch["image"].min() <= batch["image"].max() <= 1


def test_a_slice_skipped_inside_a_series_is_counted_on_every_load(phantom_copy):
    root = phantom_copy("chest_ct")
    # a second, different image at the position of the first slice: that slice is refused
    first_slice = sorted(_patient_folders(root)[1].rglob("*.dcm"))[0]
    ds = pydicom.dcmread(first_slice)
    ds.SOPInstanceUID = deterministic_uid("another image", first_slice.name)
    ds.PixelData = (ds.pixel_array + np.uint16(50)).tobytes()
    ds.save_as(first_slice.with_name("1-extra.dcm"))
    with pytest.raises(DataError, match="two images at one slice position"):
        NSCLCRadiomics(root, **SMALL)
    built = NSCLCRadiomics(root, skip_bad=True, **SMALL)
    reloaded = NSCLCRadiomics(root, skip_bad=True, **SMALL)  # from the store: the same count
    for dataset in (built, reloaded):
        assert dataset.bad_input.count == 1 and "two images at one slice position" in dataset.bad_input.skipped[0][1]
        assert len(dataset) == len(_rows(root)) * SMOKE_SLICES  # the series kept all its positions
        assert all(set(r) == {"label", "subject", "meta"} for r in dataset.rows)


def test_masks_and_tumour_slices_come_from_the_store(phantom_copy):
    root = phantom_copy("chest_ct")
    dataset = NSCLCRadiomics(root, with_masks=True, tumour_slices_only=True, **SMALL)
    record = dataset.records[0]
    assert record["mask"].shape == (1, 32, 32) and record["mask"].max() == 1
    assert all(dataset.records[i]["mask"].max() == 1 for i in range(len(dataset)))
    with pytest.raises(ValueError, match="with_masks"):
        NSCLCRadiomics(root, tumour_slices_only=True, **SMALL)
