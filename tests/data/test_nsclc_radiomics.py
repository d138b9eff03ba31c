"""NSCLC-Radiomics: the clinical CSV as sites write it (numeric IDs, duplicates, empty, Latin-1),
CSV <-> image consistency in both directions, and a decode cache keyed on content."""

import csv
import io
import os
import shutil

import numpy as np
import pydicom
import pytest

from medgan.data.base import DataError, subject_key
from medgan.data.nsclc_radiomics import CLINICAL_CSV, NSCLCRadiomics

SMALL = {"crop_size": None, "image_size": 32}
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
    dataset = NSCLCRadiomics(root, salt=SALT, cache=False, **SMALL)
    assert dataset.bad_input.count == 0 and dataset.subjects == sorted(labels)
    assert all(r["label"] == labels[r["subject"]] for r in dataset.records)


def test_duplicate_patient_rows(phantom_copy):
    root = phantom_copy("chest_ct")
    reference = NSCLCRadiomics(root, cache=False, **SMALL)
    rows = _rows(root)
    _write_rows(root, rows + [dict(rows[1])])  # the same row twice: unambiguous, kept once and counted
    dataset = NSCLCRadiomics(root, cache=False, **SMALL)
    assert dataset.fingerprint() == reference.fingerprint()
    assert dataset.bad_input.count == 1 and "rows [3, 8]" in dataset.bad_input.skipped[0][1]
    contradicting = dict(rows[1], **{"deadstatus.event": str(1 - int(rows[1]["deadstatus.event"]))})
    _write_rows(root, rows + [contradicting])
    with pytest.raises(DataError, match=rf"{CLINICAL_CSV}: PatientID: rows \[3, 8\] are one patient \(s-[0-9a-f]+\) "
                                        r"with different values"):
        NSCLCRadiomics(root, cache=False, **SMALL)
    dataset = NSCLCRadiomics(root, cache=False, skip_bad=True, **SMALL)
    assert dataset.bad_input.count == 1 and len(dataset.subjects) == len(rows) - 1  # counted once, not twice


def test_empty_unparsable_and_latin1_csv_name_the_file(phantom_copy):
    root = phantom_copy("chest_ct")
    rows = _rows(root)
    (root / CLINICAL_CSV).write_bytes(b"")
    with pytest.raises(DataError, match=rf"{CLINICAL_CSV}: clinical CSV is empty \(0 bytes\)"):
        NSCLCRadiomics(root, cache=False, **SMALL)
    (root / CLINICAL_CSV).write_text('PatientID,Histology,deadstatus.event\n"LUNG1-001,adeno,1\n')
    with pytest.raises(DataError, match=rf"{CLINICAL_CSV}: not a readable CSV"):
        NSCLCRadiomics(root, cache=False, **SMALL)
    rows[0]["Histology"] = "adénocarcinome"
    _write_rows(root, rows, encoding="latin-1")
    with pytest.raises(UnicodeDecodeError):
        (root / CLINICAL_CSV).read_text(encoding="utf-8")
    dataset = NSCLCRadiomics(root, cache=False, histologies=["Adénocarcinome"], **SMALL)
    assert len(dataset.subjects) == 1 and {r["meta"]["histology"] for r in dataset.records} == {"adénocarcinome"}
    with pytest.raises(DataError, match=rf"{CLINICAL_CSV}: not decodable as 'utf-8'"):
        NSCLCRadiomics(root, cache=False, clinical_encoding="utf-8", **SMALL)


def test_clinical_patient_without_a_folder_is_counted(phantom_copy):
    root = phantom_copy("chest_ct")
    shutil.rmtree(_patient_folders(root)[2])  # LUNG1-003, row 4 of the CSV
    with pytest.raises(DataError, match=rf"{CLINICAL_CSV}: PatientID on row 4 \(s-[0-9a-f]+\) has no CT series"):
        NSCLCRadiomics(root, cache=False, **SMALL)
    dataset = NSCLCRadiomics(root, cache=False, skip_bad=True, **SMALL)
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
        NSCLCRadiomics(root, cache=False, **SMALL)
    dataset = NSCLCRadiomics(root, cache=False, skip_bad=True, **SMALL)
    reasons = [reason for _, reason in dataset.bad_input.skipped]
    assert len(reasons) == 2 and "folder unreadable" in reasons[0] and "row 5" in reasons[1]
    assert len(dataset.subjects) == len(_rows(root)) - 1


def test_series_without_clinical_row_is_counted(phantom_copy):
    root = phantom_copy("chest_ct")
    rows = _rows(root)
    _write_rows(root, rows[:2] + rows[3:])
    with pytest.raises(DataError, match=r"s-[0-9a-f]+/.*: patient has no row in the clinical CSV"):
        NSCLCRadiomics(root, cache=False, **SMALL)
    dataset = NSCLCRadiomics(root, cache=False, skip_bad=True, **SMALL)
    assert dataset.bad_input.count == 1 and len(dataset.subjects) == len(rows) - 1


def test_cache_is_keyed_on_content_not_size_and_mtime(phantom_copy):
    root = phantom_copy("chest_ct")
    first = NSCLCRadiomics(root, **SMALL)  # fills the cache
    victim = sorted(_patient_folders(root)[0].rglob("*.dcm"))[2]
    stat = victim.stat()
    ds = pydicom.dcmread(victim)
    ds.PixelData = (ds.pixel_array[::-1, ::-1] + np.uint16(7)).tobytes()  # a re-export: other pixels, same size
    ds.save_as(victim)
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # copied with preserved times
    assert victim.stat().st_size == stat.st_size and victim.stat().st_mtime_ns == stat.st_mtime_ns
    again, fresh = NSCLCRadiomics(root, **SMALL), NSCLCRadiomics(root, cache=False, **SMALL)
    assert again.fingerprint() == fresh.fingerprint() != first.fingerprint()
