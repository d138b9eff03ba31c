"""NIfTI geometry: one (canonical RAS+) orientation whatever the storage order, and world slice
positions from the affine measured exactly as the DICOM path measures ImagePositionPatient."""

import nibabel as nib
import numpy as np
import pytest

from medgan.data.base import DataError
from medgan.data.dicom import load_series, write_slice
from medgan.data.nifti import load_nifti, nifti_shape, read_nifti, write_nifti

SPACING = (2.5, 1.0, 1.5)  # z, y, x in mm
ORIGIN = (-10.0, 4.0, 30.0)  # world x, y, z of voxel 0


@pytest.fixture
def volume():
    return np.random.default_rng(0).random((5, 4, 3)).astype(np.float32)  # (Z, Y, X), all voxels distinct


def _save(path, data_xyz, affine):
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data_xyz), affine), str(path))
    return path


def test_roundtrip_keeps_array_spacing_and_world_positions(tmp_path, volume):
    path = write_nifti(tmp_path / "a.nii.gz", volume, SPACING, origin_mm=ORIGIN)
    loaded = load_nifti(path)
    assert np.array_equal(loaded.array, volume) and loaded.spacing_mm == SPACING
    assert np.allclose(loaded.positions_mm, ORIGIN[2] + SPACING[0] * np.arange(5))
    array, spacing = read_nifti(path)
    assert np.array_equal(array, volume) and spacing == SPACING


@pytest.mark.parametrize("flip", ["z", "x", "y", "xz"])
def test_flipped_storage_gives_the_same_array_and_positions(tmp_path, volume, flip):
    plain = load_nifti(write_nifti(tmp_path / "plain.nii.gz", volume, SPACING, origin_mm=ORIGIN))
    data = volume.transpose(2, 1, 0)  # (x, y, z) as NIfTI stores it
    affine = plain.affine.copy()
    for axis, name in enumerate("xyz"):
        if name in flip:  # store the axis reversed; the affine says so
            data = np.flip(data, axis)
            affine[:3, 3] += affine[:3, axis] * (data.shape[axis] - 1)
            affine[:3, axis] *= -1
    flipped = load_nifti(_save(tmp_path / "flipped.nii.gz", data, affine))
    assert np.array_equal(flipped.array, volume)
    assert np.allclose(flipped.positions_mm, plain.positions_mm) and flipped.spacing_mm == pytest.approx(SPACING)


def test_permuted_axes_are_reordered(tmp_path, volume):
    """Slices stored along the first voxel axis (x and z swapped) still come back axial."""
    plain = load_nifti(write_nifti(tmp_path / "plain.nii.gz", volume, SPACING, origin_mm=ORIGIN))
    affine = plain.affine[:, [2, 1, 0, 3]]
    permuted = load_nifti(_save(tmp_path / "permuted.nii.gz", volume.transpose(2, 1, 0).transpose(2, 1, 0), affine))
    assert np.array_equal(permuted.array, volume) and np.allclose(permuted.positions_mm, plain.positions_mm)


def test_positions_follow_the_dicom_rule(tmp_path, volume):
    """The same geometry as a DICOM series (positions along the IOP normal) gives the same positions."""
    stored = (volume * 1000).astype(np.uint16)
    files = [write_slice(tmp_path / "dcm" / f"{k}.dcm", stored[k], modality="MR", patient_id="P", series_uid="1.2.3",
                         study_uid="1.2.4", instance_number=k + 1,
                         position_mm=(ORIGIN[0], ORIGIN[1], ORIGIN[2] + k * SPACING[0]),
                         pixel_spacing_mm=SPACING[1:], slice_thickness_mm=SPACING[0]) for k in (3, 0, 4, 1, 2)]
    dicom = load_series(files)
    nifti = load_nifti(write_nifti(tmp_path / "a.nii", volume, SPACING, origin_mm=ORIGIN))
    assert np.allclose(nifti.positions_mm, dicom.positions_mm)
    assert nifti.spacing_mm[0] == pytest.approx(dicom.spacing_mm[0])


def test_broken_geometry_and_shapes_are_named(tmp_path, volume):
    for name, srow_z in (("singular.nii", [0.0, 0.0, 0.0, 0.0]), ("nan.nii", [0.0, 0.0, np.nan, 0.0])):
        path = write_nifti(tmp_path / name, volume, SPACING)
        raw = bytearray(path.read_bytes())  # a header as a broken exporter writes it: sform only, and bad
        raw[252:256] = np.array([0, 1], "<i2").tobytes()  # qform_code 0, sform_code 1
        raw[312:328] = np.array(srow_z, "<f4").tobytes()
        path.write_bytes(bytes(raw))
        with pytest.raises(DataError, match=rf"{name}: affine \(sform/qform\) is singular or not finite"):
            load_nifti(path)
    path = _save(tmp_path / "four_d.nii.gz", np.zeros((3, 4, 5, 2), np.float32), np.eye(4))
    with pytest.raises(DataError, match=r"four_d.nii.gz: expected a 3D volume"):
        load_nifti(path)
    with pytest.raises(DataError, match=r"absent.nii.gz: NIfTI file not found"):
        load_nifti(tmp_path / "absent.nii.gz")


def test_shape_is_read_from_the_header_alone(tmp_path, volume):
    path = write_nifti(tmp_path / "a.nii.gz", volume, SPACING)
    assert nifti_shape(path) == (3, 4, 5)  # stored x, y, z
    raw = path.read_bytes()
    path.write_bytes(raw[:200])  # the header cut short
    with pytest.raises(DataError, match=r"a.nii.gz: unreadable NIfTI header"):
        nifti_shape(path)
