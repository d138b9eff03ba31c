"""NIfTI volumes with nibabel, as (Z, Y, X) float32 arrays plus voxel spacing in mm."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from medgan import atomic
from medgan.data.base import DataError, check_finite


def read_nifti(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read a 3D NIfTI: returns (array (Z, Y, X) float32 with scl_slope/inter applied,
    spacing_mm (z, y, x)). Unreadable files, non-3D data and NaN/Inf raise :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: NIfTI file not found")
    try:
        image = nib.load(str(path))
        data = np.asarray(image.get_fdata(dtype=np.float32))
    except Exception as exc:  # nibabel raises many types for truncated/corrupt files
        raise DataError(f"{path}: unreadable or truncated NIfTI ({type(exc).__name__}: {exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{path}: expected a 3D volume, header dim gives shape {data.shape}")
    check_finite(data, path, "voxel data")
    zooms = image.header.get_zooms()[:3]
    return np.ascontiguousarray(data.transpose(2, 1, 0)), (float(zooms[2]), float(zooms[1]), float(zooms[0]))


def write_nifti(path: str | os.PathLike, array: np.ndarray, spacing_mm: tuple[float, float, float]) -> Path:
    """Write (Z, Y, X) ``array`` as float32 NIfTI (gzip when the name ends .gz), atomically."""
    path = Path(path)
    data = np.asarray(array, dtype=np.float32).transpose(2, 1, 0)
    affine = np.diag([spacing_mm[2], spacing_mm[1], spacing_mm[0], 1.0])
    image = nib.Nifti1Image(data, affine)
    image.header.set_zooms((spacing_mm[2], spacing_mm[1], spacing_mm[0]))
    payload = image.to_bytes()
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=1, mtime=0)
    return atomic.write_bytes(path, payload)
