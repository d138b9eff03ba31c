"""PET early/delayed pairing by world geometry (NIfTI as DICOM), and the item store the patients are decoded into."""

import os
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medgan.data import pet_early_delayed as pet_module
from medgan.data.base import DataError
from medgan.data.nifti import load_nifti, read_nifti, write_nifti
from medgan.data.pet_early_delayed import PETEarlyDelayed


def _patients(root):
    return sorted(p for p in root.iterdir() if p.name.startswith("PET"))


def _restore(path, data_xyz, affine, like):
    """Rewrite ``path`` with new voxel data/affine, keeping the original header's scaling."""
    header = nib.load(str(like)).header.copy()
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data_xyz), affine, header), str(path))


def _items(dataset, subject):
    return [(r["meta"]["z_mm"], r["image"], r["target"]) for r in dataset.records if r["subject"] == subject]


@pytest.mark.parametrize("flip_axes", [(2,), (0, 2)], ids=["z-reversed", "x-and-z-reversed"])
def test_delayed_stored_reversed_pairs_with_the_right_early_slices(phantom_copy, flip_axes):
    reference_root = phantom_copy("pet", file_format="nifti")
    root = phantom_copy("pet", file_format="nifti")
    patient = _patients(root)[0]
    path = patient / "delayed" / "PET.nii.gz"
    image = nib.load(str(path))
    original = np.asarray(image.dataobj).copy()
    data, affine = original, image.affine.copy()
    for axis in flip_axes:
        data = np.flip(data, axis)
        affine[:3, 3] += affine[:3, axis] * (data.shape[axis] - 1)
        affine[:3, axis] *= -1
    _restore(path, data, affine, like=path)
    assert not np.array_equal(np.asarray(nib.load(str(path)).dataobj), original)  # stored differently
    reference = PETEarlyDelayed(reference_root)
    reordered = PETEarlyDelayed(root)
    subject = reference.records[0]["subject"]
    expected, got = _items(reference, subject), _items(reordered, subject)
    assert len(expected) == len(got) > 1
    for (z_ref, early_ref, delayed_ref), (z, early, delayed) in zip(expected, got):
        assert z == z_ref and np.array_equal(early, early_ref) and np.array_equal(delayed, delayed_ref)


def test_delayed_origin_30mm_higher_is_refused_naming_both_files(phantom_copy):
    root = phantom_copy("pet", file_format="nifti")
    patient = _patients(root)[0]
    path = patient / "delayed" / "PET.nii.gz"
    image = nib.load(str(path))
    affine = image.affine.copy()
    affine[2, 3] += 30.0
    _restore(path, np.asarray(image.dataobj), affine, like=path)
    assert np.allclose(load_nifti(path).positions_mm - load_nifti(patient / "early" / "PET.nii.gz").positions_mm, 30)
    # paths in messages are relative to the data root, the patient folder replaced by its subject key
    pattern = (r"(s-[0-9a-f]+): early and delayed slice positions/spacing differ .*30.0 mm apart.* between "
               r"\1/early/PET.nii.gz and \1/delayed/PET.nii.gz")
    with pytest.raises(DataError, match=pattern):
        PETEarlyDelayed(root)
    dataset = PETEarlyDelayed(root, skip_bad=True)
    assert dataset.bad_input.count == 1 and len(dataset.subjects) == len(_patients(root)) - 1


def test_dicom_delayed_series_shifted_names_both_series(phantom_copy):
    root = phantom_copy("pet")
    patient = _patients(root)[0]
    for path in (patient / "delayed").rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) + 30.0]
        ds.save_as(path)
    with pytest.raises(DataError, match=r"30.0 mm apart.* between (s-[0-9a-f]+)/early.* and \1/delayed"):
        PETEarlyDelayed(root)


def test_store_is_reused_and_rebuilt_when_a_file_changes(phantom_copy, monkeypatch):
    root = phantom_copy("pet", file_format="nifti")
    patient = _patients(root)[0]
    first = PETEarlyDelayed(root)

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again although no file changed")
    with monkeypatch.context() as patch:
        patch.setattr(pet_module, "read_phase", refuse)
        again = PETEarlyDelayed(root)  # the store is read back: nothing decoded
        assert again.fingerprint() == first.fingerprint()
        assert [r["meta"] for r in again.rows] == [r["meta"] for r in first.rows]
        # the other split reads the same store
        PETEarlyDelayed(root, split="test")
    subject = first.rows[0]["subject"]
    path = patient / "delayed" / "PET.nii.gz"
    values, spacing = read_nifti(path)
    write_nifti(path, values[:, ::-1].copy(), spacing)  # other pixels: a new size or modification time
    changed = PETEarlyDelayed(root)
    assert changed.fingerprint() != first.fingerprint()
    old = np.stack([r["target"] for r in first.records if r["subject"] == subject])
    new = np.stack([r["target"] for r in changed.records if r["subject"] == subject])
    assert not np.array_equal(new, old)
    # nothing of the store is written inside the data root
    assert not [p for p in root.rglob("*") if "items" in p.parts or p.suffix == ".bin"]


def test_workers_decode_with_the_salt_in_effect(phantom_copy):
    """A DICOM PatientID is keyed in the worker process with the data root's salt, as in this process."""
    in_process = PETEarlyDelayed(phantom_copy("pet"), salt="site-salt-a")
    workers = PETEarlyDelayed(phantom_copy("pet"), salt="site-salt-a", num_workers=2)
    other_salt = PETEarlyDelayed(phantom_copy("pet"), salt="site-salt-b")
    assert [r["subject"] for r in workers.rows] == [r["subject"] for r in in_process.rows]
    assert workers.fingerprint() == in_process.fingerprint()
    assert set(in_process.subjects).isdisjoint(other_salt.subjects)
    patient_ids = {p.name for p in _patients(phantom_copy("pet"))}
    assert not patient_ids & set(in_process.subjects)


def test_split_is_by_patient_and_ordered_by_subject_then_z(phantom_copy):
    root = phantom_copy("pet")
    full = PETEarlyDelayed(root)
    train, test = PETEarlyDelayed(root, split="train"), PETEarlyDelayed(root, split="test")
    assert set(train.subjects).isdisjoint(test.subjects) and len(train) + len(test) == len(full)
    for ds in (full, train, test):
        keys = [(r["subject"], r["meta"]["z_mm"]) for r in ds.rows]
        assert keys == sorted(keys)


def test_skipped_patients_are_counted_again_when_the_store_is_reused(phantom_copy):
    root = phantom_copy("pet", file_format="nifti")
    (_patients(root)[0] / "delayed" / "PET.json").write_text("[]")
    first = PETEarlyDelayed(root, skip_bad=True)
    again = PETEarlyDelayed(root, skip_bad=True)
    assert first.bad_input.count == again.bad_input.count == 1
    assert again.bad_input.skipped == first.bad_input.skipped
    assert "expected a JSON object" in again.bad_input.skipped[0][1]
    with pytest.raises(DataError, match=r"delayed/PET.json: expected a JSON object"):
        PETEarlyDelayed(root)  # not skipping: the stored skip is an error again


def test_unreadable_phase_folder_is_named(phantom_copy, monkeypatch):
    root = phantom_copy("pet", file_format="nifti")
    patient = _patients(root)[1]
    hidden = patient / "delayed" / "extra"
    hidden.mkdir()
    real_scandir = os.scandir

    def scandir(path="."):  # what a folder without read permission does (the tests run as root)
        if os.fspath(path) == os.fspath(hidden):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)
    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(DataError, match=r"s-[0-9a-f]+/delayed/extra: folder unreadable \(PermissionError"):
        PETEarlyDelayed(root)
    dataset = PETEarlyDelayed(root, skip_bad=True)
    assert dataset.bad_input.count == 1 and "folder unreadable" in dataset.bad_input.skipped[0][1]


def test_sidecar_problems_are_data_errors_naming_the_field(phantom_copy):
    import json
    root = phantom_copy("pet", file_format="nifti")
    sidecar = _patients(root)[0] / "delayed" / "PET.json"
    meta = json.loads(sidecar.read_text())
    cases = [
        (json.dumps({**meta, "InjectionStart": meta["ScanStart"] + 7200.0}).encode(),
         r"InjectionStart .* is after (ScanStart|DecayCorrectionTime)"),
        (json.dumps({**meta, "RadionuclideHalfLife": "6586"}).encode(), r"RadionuclideHalfLife is not a valid number"),
        (json.dumps({**meta, "BodyWeight": True}).encode(), r"BodyWeight missing or invalid"),
        (json.dumps([meta]).encode(), r"expected a JSON object"),
        (json.dumps({**meta, "Note": "é"}, ensure_ascii=False).encode("latin-1"), r"not UTF-8 text"),
    ]
    for payload, message in cases:
        sidecar.write_bytes(payload)
        with pytest.raises(DataError, match=rf"delayed/PET.json: {message}"):
            PETEarlyDelayed(root)
    dataset = PETEarlyDelayed(root, skip_bad=True)
    assert dataset.bad_input.count == 1 and len(dataset.subjects) == len(_patients(root)) - 1


def test_a_patient_with_one_phase_in_each_format_is_refused(phantom_copy):
    """NIfTI comes back in RAS+, DICOM in its stored order: a mixed pair could be mirrored in-plane."""
    root = phantom_copy("pet", file_format="dicom")
    nifti_root = phantom_copy("pet", file_format="nifti")
    patient = _patients(root)[0]
    shutil.rmtree(patient / "delayed")
    shutil.copytree(nifti_root / patient.name / "delayed", patient / "delayed")
    with pytest.raises(DataError, match=r"early is DICOM .* and delayed is NIfTI .*one format"):
        PETEarlyDelayed(root)
    dataset = PETEarlyDelayed(root, skip_bad=True)
    assert dataset.bad_input.count == 1 and len(dataset.subjects) == len(_patients(root)) - 1
