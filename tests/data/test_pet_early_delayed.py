"""PET early/delayed pairing by world geometry (NIfTI as DICOM), and a content-keyed decode cache."""

import os
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medgan.data.base import DataError
from medgan.data.nifti import load_nifti
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
    reference = PETEarlyDelayed(reference_root, cache=False)
    reordered = PETEarlyDelayed(root, cache=False)
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
        PETEarlyDelayed(root, cache=False)
    dataset = PETEarlyDelayed(root, cache=False, skip_bad=True)
    assert dataset.bad_input.count == 1 and len(dataset.subjects) == len(_patients(root)) - 1


def test_dicom_delayed_series_shifted_names_both_series(phantom_copy):
    root = phantom_copy("pet")
    patient = _patients(root)[0]
    for path in (patient / "delayed").rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) + 30.0]
        ds.save_as(path)
    with pytest.raises(DataError, match=r"30.0 mm apart.* between (s-[0-9a-f]+)/early.* and \1/delayed"):
        PETEarlyDelayed(root, cache=False)


def _same_size_same_mtime_rewrite(path, new_bytes):
    stat = path.stat()
    assert len(new_bytes) == stat.st_size
    path.write_bytes(new_bytes)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns


def test_cache_is_keyed_on_content_not_size_and_mtime_nifti(phantom_copy):
    root = phantom_copy("pet", file_format="nifti")
    patient = _patients(root)[0]
    gz = patient / "delayed" / "PET.nii.gz"
    plain = gz.with_suffix("")  # uncompressed, so a rewrite with other pixels keeps the size
    image = nib.load(str(gz))
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), image.affine, image.header.copy()), str(plain))
    gz.unlink()
    first = PETEarlyDelayed(root)  # fills the cache
    subject = first.records[0]["subject"]
    raw = bytearray(plain.read_bytes())
    offset = nib.load(str(plain)).dataobj.offset  # where the voxels start (vox_offset 0 means 352)
    voxels = np.frombuffer(bytes(raw[offset:]), dtype=image.get_data_dtype()).copy()
    voxels[:] = voxels[::-1]  # other pixels, same bytes count
    raw[offset:] = voxels.tobytes()
    _same_size_same_mtime_rewrite(plain, bytes(raw))
    again = PETEarlyDelayed(root)
    fresh = PETEarlyDelayed(root, cache=False)
    old = np.stack([r["target"] for r in first.records if r["subject"] == subject])
    new = np.stack([r["target"] for r in again.records if r["subject"] == subject])
    want = np.stack([r["target"] for r in fresh.records if r["subject"] == subject])
    assert not np.array_equal(new, old) and np.array_equal(new, want)


def test_cache_is_keyed_on_content_dicom(phantom_copy):
    root = phantom_copy("pet")
    patient = _patients(root)[0]
    first = PETEarlyDelayed(root)
    victim = sorted((patient / "delayed").rglob("*.dcm"))[len(first.records) // 8]
    ds = pydicom.dcmread(victim)
    ds.PixelData = ds.pixel_array[::-1].copy().tobytes()  # same size, other pixels
    tmp = victim.with_name("rewritten.tmp")
    ds.save_as(tmp)
    new_bytes = tmp.read_bytes()
    tmp.unlink()
    _same_size_same_mtime_rewrite(victim, new_bytes)
    again, fresh = PETEarlyDelayed(root), PETEarlyDelayed(root, cache=False)
    assert again.fingerprint() == fresh.fingerprint() != first.fingerprint()


def test_damaged_cache_entry_is_decoded_again(phantom_copy):
    from medgan.config import dataset_work_dir
    root = phantom_copy("pet", file_format="nifti")
    first = PETEarlyDelayed(root)
    entries = sorted((dataset_work_dir(root) / "cache").glob("pet-*.npz"))
    assert entries
    for entry in entries:
        entry.write_bytes(b"not an npz")
    assert PETEarlyDelayed(root).fingerprint() == first.fingerprint()


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
            PETEarlyDelayed(root, cache=False)
    dataset = PETEarlyDelayed(root, cache=False, skip_bad=True)
    assert dataset.bad_input.count == 1 and len(dataset.subjects) == len(_patients(root)) - 1


def test_a_patient_with_one_phase_in_each_format_is_refused(phantom_copy):
    """NIfTI comes back in RAS+, DICOM in its stored order: a mixed pair could be mirrored in-plane."""
    root = phantom_copy("pet", file_format="dicom")
    nifti_root = phantom_copy("pet", file_format="nifti")
    patient = _patients(root)[0]
    shutil.rmtree(patient / "delayed")
    shutil.copytree(nifti_root / patient.name / "delayed", patient / "delayed")
    with pytest.raises(DataError, match=r"early is DICOM .* and delayed is NIfTI .*one format"):
        PETEarlyDelayed(root, cache=False)
    dataset = PETEarlyDelayed(root, cache=False, skip_bad=True)
    assert dataset.bad_input.count == 1 and len(dataset.subjects) == len(_patients(root)) - 1
