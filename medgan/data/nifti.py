"""NIfTI volumes with nibabel, as (Z, Y, X) float32 arrays in one orientation, with their geometry.

Every volume is brought to nibabel's closest canonical orientation (RAS+: the X index runs to the
patient's right, Y to anterior, Z to superior) before anything else, so a file stored z-reversed
or x-flipped gives the same array as its plain twin. Slice positions are world coordinates from
the affine, measured along the slice normal exactly as :func:`medgan.data.dicom.load_series`
measures ImagePositionPatient (cross product of the in-plane axes; the sign of that normal's
superior component is the same in RAS and DICOM's LPS), so NIfTI and DICOM positions compare.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from medgan import atomic
from medgan.data.base import DataError, check_finite


@dataclass
class NiftiVolume:
    """A decoded NIfTI: ``array`` (Z, Y, X) float32 (scl_slope/inter applied) in RAS+ order;
    ``spacing_mm`` (z, y, x); ``positions_mm`` (Z,) world position of each slice along the slice
    normal, ascending; ``affine`` the 4x4 canonical voxel (x, y, z) -> RAS mm matrix."""
    array: np.ndarray
    spacing_mm: tuple[float, float, float]
    positions_mm: np.ndarray
    affine: np.ndarray
    path: Path


def load_nifti(path: str | os.PathLike) -> NiftiVolume:
    """Read a 3D NIfTI in canonical (RAS+) orientation with its world slice positions.

    Unreadable files, non-3D data, NaN/Inf voxels and a singular or non-finite affine raise
    :class:`DataError` naming the file and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: NIfTI file not found")
    try:
        image = nib.load(str(path))
        affine = np.asarray(image.affine, dtype=np.float64)
    except Exception as exc:  # nibabel raises many types for truncated/corrupt files
        raise DataError(f"{path}: unreadable or truncated NIfTI ({type(exc).__name__}: {exc})") from exc
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise DataError(f"{path}: affine (sform/qform) is singular or not finite, so the voxel geometry is unknown")
    if len(image.shape) == 4 and image.shape[3] == 1:
        image = image.slicer[..., 0]
    if len(image.shape) != 3:
        raise DataError(f"{path}: expected a 3D volume, header dim gives shape {tuple(image.shape)}")
    try:
        image = nib.as_closest_canonical(image)
        data = np.asarray(image.get_fdata(dtype=np.float32))
    except Exception as exc:
        raise DataError(f"{path}: unreadable or truncated NIfTI voxel data ({type(exc).__name__}: {exc})") from exc
    check_finite(data, path, "voxel data")
    affine = np.asarray(image.affine, dtype=np.float64)
    axes = affine[:3, :3]
    normal = np.cross(axes[:, 0], axes[:, 1])
    normal /= np.linalg.norm(normal)
    origins = axes @ np.stack([np.zeros(data.shape[2]), np.zeros(data.shape[2]), np.arange(data.shape[2])]) \
        + affine[:3, 3:4]
    positions = normal @ origins
    spacing = (float(normal @ axes[:, 2]), float(np.linalg.norm(axes[:, 1])), float(np.linalg.norm(axes[:, 0])))
    if not spacing[0] > 0:  # canonical order puts the most superior axis last, so this is a broken affine
        raise DataError(f"{path}: affine gives a slice axis in the image plane (no slice spacing)")
    return NiftiVolume(array=np.ascontiguousarray(data.transpose(2, 1, 0)), spacing_mm=spacing,
                       positions_mm=positions, affine=affine, path=path)


def nifti_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The voxel grid of a NIfTI as stored (x, y, z[, t]), from its header only (no voxel data read)."""
    try:
        return tuple(int(n) for n in nib.load(str(path)).header.get_data_shape())
    except Exception as exc:  # nibabel raises many types for truncated/corrupt files
        raise DataError(f"{path}: unreadable NIfTI header ({type(exc).__name__}: {exc})") from exc


def read_nifti(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read a 3D NIfTI: (array (Z, Y, X) float32 in canonical RAS+ order, spacing_mm (z, y, x)).
    See :func:`load_nifti` for the geometry and the errors."""
    volume = load_nifti(path)
    return volume.array, volume.spacing_mm


def write_nifti(path: str | os.PathLike, array: np.ndarray, spacing_mm: tuple[float, float, float],
                *, origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Path:
    """Write (Z, Y, X) ``array`` as float32 NIfTI (gzip when the name ends .gz), atomically.

    The affine is RAS+ (diagonal spacing, ``origin_mm`` = world (x, y, z) of voxel 0), so
    :func:`read_nifti` gives ``array`` back unchanged.
    """
    path = Path(path)
    data = np.asarray(array, dtype=np.float32).transpose(2, 1, 0)
    affine = np.diag([spacing_mm[2], spacing_mm[1], spacing_mm[0], 1.0])
    affine[:3, 3] = origin_mm
    image = nib.Nifti1Image(data, affine)
    image.header.set_zooms((spacing_mm[2], spacing_mm[1], spacing_mm[0]))
    payload = image.to_bytes()
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=1, mtime=0)
    return atomic.write_bytes(path, payload)
