"""Folders of image files in the formats medgan reads and writes: PNG, DICOM and NIfTI.

A model works on values in [-1, 1]; files hold physical values. :class:`Intensity` maps one to the
other from an exported model's ``model.json`` (``intensity``): a CT window in HU, a PET SUV range,
or 8-bit display levels (radiographs, the brain PNGs, cell-painting channels).

- PNG: 8-bit levels ``(v + 1) * 127.5``; 1 channel is grayscale, 3 are RGB, other counts are one
  PNG per channel (``<name>_w1.png`` ..., the RxRx19a naming).
- DICOM: one single-frame file per image, stored as 16-bit integers with RescaleSlope/Intercept
  giving the physical values (HU for CT). Written files are marked synthetic: fresh UIDs,
  ImageType ``DERIVED\\SECONDARY``, a synthetic PatientID and a SeriesDescription naming the model.
  No header of any real file is ever copied.
- NIfTI: one file per image (a single-slice volume) or, read, every slice of a volume.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.uid import generate_uid

from medgan.data.base import DataError
from medgan.data.dicom import is_dicom_candidate, pixel_values, read_dicom, suv_factor, write_slice
from medgan.data.nifti import load_nifti, write_nifti
from medgan.data.png_folders import read_png, write_png

FORMATS = ("png", "dicom", "nifti")
SUFFIX = {"png": ".png", "dicom": ".dcm", "nifti": ".nii.gz"}
STORED_LEVELS = 4095  # 12-bit stored values for DICOM: finer than 8 bits, any viewer reads them


@dataclass(frozen=True)
class Intensity:
    """``physical = low + (v + 1) / 2 * (high - low)`` for model values v in [-1, 1]."""

    low: float = 0.0
    high: float = 255.0
    unit: str = "8-bit level"
    modality: str = "OT"

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "Intensity":
        """From a model's ``model.json``: a CT window, a PET SUV range, else 8-bit levels."""
        data = (spec.get("intensity") or {}).get("from data parameters") or {}
        if "window_center_hu" in data and "window_width_hu" in data:
            c, w = float(data["window_center_hu"]), float(data["window_width_hu"])
            return cls(c - w / 2, c + w / 2, "HU", "CT")
        if "suv_max" in data:
            return cls(0.0, float(data["suv_max"]), "SUV", "PT")
        return cls()

    def to_physical(self, values: np.ndarray) -> np.ndarray:
        return self.low + (np.clip(values, -1, 1) + 1) / 2 * (self.high - self.low)

    def to_model(self, physical: np.ndarray) -> np.ndarray:
        return np.clip((np.asarray(physical, np.float32) - self.low) / (self.high - self.low) * 2 - 1, -1, 1)


def output_name(index: int, fmt: str) -> str:
    return f"synthetic-{index:06d}{SUFFIX[fmt]}"


def list_image_files(folder: str | os.PathLike, fmt: str | None = None) -> tuple[str, list[Path]]:
    """``(format, files)`` of a folder (searched recursively; format guessed when not given).

    Per-channel PNGs (``*_w1.png`` ...) count once, by their first channel.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    by_format = {"png": [p for p in files if p.suffix.lower() == ".png"],
                 "nifti": [p for p in files if p.name.endswith((".nii", ".nii.gz"))],
                 "dicom": [p for p in files if p.suffix.lower() == ".dcm" or (not p.suffix and is_dicom_candidate(p))]}
    by_format["png"] = [p for p in by_format["png"] if not channel_of(p) or channel_of(p) == 1]
    if fmt is None:
        found = [f for f in FORMATS if by_format[f]]
        if not found:
            raise DataError(f"{folder}: no PNG, DICOM or NIfTI images found")
        if len(found) > 1:
            raise DataError(f"{folder}: holds {' and '.join(found)} files; give the format (--format)")
        fmt = found[0]
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    if not by_format[fmt]:
        raise DataError(f"{folder}: no {fmt} images found")
    return fmt, by_format[fmt]


def channel_of(path: Path) -> int | None:
    """The channel number of an RxRx19a-style per-channel PNG (``*_w3.png`` -> 3), else None."""
    stem = path.name[: -len(".png")]
    if len(stem) > 3 and stem[-3:-1] == "_w" and stem[-1].isdigit():
        return int(stem[-1])
    return None


def read_image_file(path: Path, fmt: str, intensity: Intensity) -> np.ndarray:
    """One file as model values: (C, H, W) for PNG/DICOM, (Z, 1, H, W) slices for NIfTI."""
    if fmt == "png":
        channel = channel_of(path)
        if channel is None:
            levels = read_png(path, grayscale=False)
            levels = levels[None] if levels.ndim == 2 else np.moveaxis(levels, -1, 0)
        else:
            stem = path.name[: -len("_w1.png")]
            channels = sorted(path.parent.glob(f"{stem}_w[0-9].png"))
            levels = np.stack([read_png(p) for p in channels])
        return levels.astype(np.float32) / 127.5 - 1.0
    if fmt == "dicom":
        ds = read_dicom(path)
        values = pixel_values(ds, path)
        if getattr(ds, "Modality", "") == "PT" and str(getattr(ds, "Units", "")).upper() == "BQML":
            values = values * suv_factor(ds, path)  # a PET model works in SUV
        return intensity.to_model(values)[None]
    volume = load_nifti(path).array  # (Z, Y, X) physical values
    return intensity.to_model(volume)[:, None]


def write_image_file(path: Path, image: np.ndarray, fmt: str, intensity: Intensity, *,
                     description: str = "", series_uid: str = "", study_uid: str = "", index: int = 0,
                     spacing_mm: Sequence[float] = (1.0, 1.0, 1.0)) -> list[Path]:
    """Write one model image (C, H, W) in [-1, 1] (atomically); returns the file(s) written."""
    image = np.asarray(image, np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "png":
        levels = np.round((np.clip(image, -1, 1) + 1) * 127.5).astype(np.uint8)
        if levels.shape[0] in (1, 3):
            return [write_png(path, levels[0] if levels.shape[0] == 1 else np.moveaxis(levels, 0, -1))]
        stem = path.name[: -len(".png")]
        # the first channel last: its file existing means the whole image is there (resume checks it)
        written = [write_png(path.with_name(f"{stem}_w{c + 1}.png"), levels[c]) for c in reversed(range(len(levels)))]
        return written[::-1]
    if image.shape[0] != 1:
        raise ValueError(f"{fmt} files hold one channel; this model makes {image.shape[0]} (use --format png)")
    physical = intensity.to_physical(image[0])
    if fmt == "nifti":
        return [write_nifti(path, physical[None], tuple(float(v) for v in spacing_mm))]
    slope = (intensity.high - intensity.low) / STORED_LEVELS
    stored = np.round((physical - intensity.low) / slope).clip(0, STORED_LEVELS).astype(np.uint16)
    return [write_slice(path, stored, modality=intensity.modality, patient_id=SYNTHETIC_PATIENT,
                        patient_name="Synthetic^Image", series_uid=series_uid, study_uid=study_uid,
                        instance_number=index + 1, position_mm=(0.0, 0.0, float(index) * float(spacing_mm[0])),
                        pixel_spacing_mm=tuple(float(v) for v in spacing_mm[1:]), slice_thickness_mm=float(spacing_mm[0]),
                        rescale_slope=slope, rescale_intercept=intensity.low, bits_stored=12,
                        extra={"ImageType": ["DERIVED", "SECONDARY"], "SeriesDescription": description[:64],
                               "ImageComments": description, "BurnedInAnnotation": "NO"})]


SYNTHETIC_PATIENT = "SYNTHETIC"


def synthetic_uids(model_digest: str, seed: int) -> tuple[str, str]:
    """(study UID, series UID) of one generated set: fresh for each model and seed, the same on resume."""
    base = hashlib.sha256(f"{model_digest}:{seed}".encode()).hexdigest()
    return (generate_uid(entropy_srcs=[base, "study"]), generate_uid(entropy_srcs=[base, "series"]))
