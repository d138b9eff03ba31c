"""DICOM reading (and writing, for phantoms and test fixtures) with pydicom.

Series are found by the Modality tag, never by folder names; slices are sorted along the slice
normal from ImagePositionPatient/ImageOrientationPatient, exact duplicates dropped, and the
spacing checked. Pixel values go through the modality LUT (RescaleSlope/Intercept) in floating
point: a uint16 stored value is cast to float *before* the intercept is added, so negative HU
survive. PET values (Bq/ml) become SUVbw from the tags of each series separately.
Identifiers: only :func:`medgan.data.base.subject_key` of the PatientID ever leaves this module.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medgan.data.base import BadInputLog, DataError, check_finite, subject_key

SOP_CLASS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",      # CT Image Storage
    "PT": "1.2.840.10008.5.1.4.1.1.128",    # Positron Emission Tomography Image Storage
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",    # Digital X-Ray Image Storage - For Presentation
    "CR": "1.2.840.10008.5.1.4.1.1.1",      # Computed Radiography Image Storage
}


def is_dicom_candidate(path: Path) -> bool:
    """Files treated as DICOM: every ``*.dcm`` (so a broken one is reported), and files without
    a suffix (PACS exports) only when they carry the "DICM" preamble marker (so a LICENSE or
    README beside a TCIA download is not mistaken for a broken slice)."""
    if not path.is_file() or path.name.startswith("."):
        return False
    if path.suffix.lower() == ".dcm":
        return True
    if path.suffix == "" or path.suffix.replace(".", "").isdigit():  # "IM0001", "1.2.840...5"
        try:
            with open(path, "rb") as f:
                return f.read(132)[128:132] == b"DICM"
        except OSError:
            return False
    return False


def read_dicom(path: str | os.PathLike, *, stop_before_pixels: bool = False) -> Dataset:
    """Read one DICOM file; unreadable, non-DICOM or empty files raise :class:`DataError`."""
    path = Path(path)
    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: unreadable or truncated DICOM ({type(exc).__name__}: {exc})") from exc


def pixel_values(ds: Dataset, path: str | os.PathLike) -> np.ndarray:
    """Stored pixels through the modality LUT as float32 (H, W); truncated data -> DataError."""
    try:
        stored = ds.pixel_array
    except Exception as exc:  # pydicom raises several types for short/corrupt PixelData
        raise DataError(f"{path}: PixelData unreadable or truncated ({type(exc).__name__}: {exc})") from exc
    # float before slope/intercept: apply_modality_lut works in float64 when rescale tags exist
    values = apply_modality_lut(stored.astype(np.float64), ds).astype(np.float32)
    check_finite(values, path, "PixelData")
    return values


def to_hu(ds: Dataset, path: str | os.PathLike = "<dataset>") -> np.ndarray:
    """CT pixels in Hounsfield units, float32 (H, W): stored * RescaleSlope + RescaleIntercept."""
    return pixel_values(ds, path)


def _parse_time(value: str, path, field_name: str) -> dt.time:
    text = str(value).strip()
    try:
        hours, minutes = int(text[0:2]), int(text[2:4]) if len(text) >= 4 else 0
        seconds = float(text[4:]) if len(text) > 4 else 0.0
        whole = int(seconds)
        return dt.time(hours, minutes, whole, int(round((seconds - whole) * 1e6)) % 1000000)
    except (ValueError, IndexError) as exc:
        raise DataError(f"{path}: {field_name} is not a DICOM time ({value!r})") from exc


def _parse_datetime(date: str | None, time: str, path, field_name: str) -> dt.datetime:
    t = _parse_time(time, path, field_name)
    if date:
        try:
            d = dt.datetime.strptime(str(date)[:8], "%Y%m%d").date()
        except ValueError as exc:
            raise DataError(f"{path}: date for {field_name} is not YYYYMMDD ({date!r})") from exc
    else:
        d = dt.date(2000, 1, 1)
    return dt.datetime.combine(d, t)


def suv_factor_from_values(*, dose_bq: float, half_life_s: float, weight_kg: float,
                           injection_time: dt.datetime, scan_time: dt.datetime) -> float:
    """Factor turning activity concentration (Bq/ml) into SUVbw (g/ml).

    SUVbw = C[Bq/ml] * weight[g] / (dose[Bq] * 2^(-(t_scan - t_inj) / T_half)); the dose is
    decayed from injection to the time the image values are decay-corrected to.
    """
    elapsed_s = (scan_time - injection_time).total_seconds()
    if elapsed_s < 0:  # crossed midnight without dates
        elapsed_s += 24 * 3600
    decayed_dose = dose_bq * 2.0 ** (-elapsed_s / half_life_s)
    return weight_kg * 1000.0 / decayed_dose


def suv_factor(ds: Dataset, path: str | os.PathLike = "<dataset>") -> float:
    """SUVbw factor for a PET slice from its own tags (Units BQML or GML).

    Uses RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose (Bq),
    .RadionuclideHalfLife (s), .RadiopharmaceuticalStartDateTime or StartTime, PatientWeight (kg),
    and DecayCorrection: START decays the dose to SeriesDate/SeriesTime, ADMIN needs no decay.
    Missing or non-positive fields raise :class:`DataError` naming the field.
    """
    units = str(getattr(ds, "Units", "BQML")).upper()
    if units == "GML":
        return 1.0
    if units != "BQML":
        raise DataError(f"{path}: Units={units!r} cannot be converted to SUV (need BQML or GML)")
    seq = getattr(ds, "RadiopharmaceuticalInformationSequence", None)
    if not seq:
        raise DataError(f"{path}: RadiopharmaceuticalInformationSequence missing (needed for SUV)")
    info = seq[0]
    values = {}
    for name, source in (("RadionuclideTotalDose", info), ("RadionuclideHalfLife", info),
                         ("PatientWeight", ds)):
        value = getattr(source, name, None)
        if value in (None, "") or not np.isfinite(float(value)) or float(value) <= 0:
            raise DataError(f"{path}: {name} missing or not positive ({value!r}); needed for SUV")
        values[name] = float(value)
    decay = str(getattr(ds, "DecayCorrection", "START")).upper()
    if decay == "ADMIN":
        return values["PatientWeight"] * 1000.0 / values["RadionuclideTotalDose"]
    if decay != "START":
        raise DataError(f"{path}: DecayCorrection={decay!r} not supported (START or ADMIN)")
    start_dt = getattr(info, "RadiopharmaceuticalStartDateTime", None)
    if start_dt:
        text = str(start_dt)
        injection = _parse_datetime(text[:8], text[8:], path, "RadiopharmaceuticalStartDateTime")
        date_known = True
    else:
        start = getattr(info, "RadiopharmaceuticalStartTime", None)
        if not start:
            raise DataError(f"{path}: RadiopharmaceuticalStartTime missing; needed for SUV decay")
        injection = _parse_datetime(None, start, path, "RadiopharmaceuticalStartTime")
        date_known = False
    series_time = getattr(ds, "SeriesTime", None) or getattr(ds, "AcquisitionTime", None)
    if not series_time:
        raise DataError(f"{path}: SeriesTime missing; needed for SUV decay")
    series_date = getattr(ds, "SeriesDate", None) if date_known else None
    if not series_date:  # compare clock times only (a midnight crossing is handled below)
        date_known = False
    scan = _parse_datetime(series_date, series_time, path, "SeriesTime")
    if not date_known:
        injection = injection.replace(year=scan.year, month=scan.month, day=scan.day)
    return suv_factor_from_values(dose_bq=values["RadionuclideTotalDose"],
                                  half_life_s=values["RadionuclideHalfLife"],
                                  weight_kg=values["PatientWeight"],
                                  injection_time=injection, scan_time=scan)


@dataclass
class SeriesFiles:
    """One DICOM series found on disk: its files, modality and the subject's pseudonym."""
    series_uid: str
    modality: str
    subject: str
    files: list[Path]
    folder: Path
    acquisition_time: str = ""


@dataclass
class Volume:
    """A decoded series: ``array`` (Z, Y, X) float32 in HU / SUVbw / LUT values."""
    array: np.ndarray
    spacing_mm: tuple[float, float, float]
    positions_mm: np.ndarray
    subject: str
    modality: str
    series_uid: str
    n_duplicates_dropped: int = 0
    extra: dict = field(default_factory=dict)


def _patient_key(ds: Dataset, path: Path, salt: str | None) -> str:
    pid = getattr(ds, "PatientID", None)
    if pid in (None, ""):
        raise DataError(f"{path}: PatientID missing (needed for the pseudonymous subject key)")
    return subject_key(str(pid), salt=salt)


def find_series(root: str | os.PathLike, *, modality: str | Sequence[str], salt: str | None = None,
                log: BadInputLog | None = None) -> list[SeriesFiles]:
    """All series of ``modality`` under ``root`` (recursive), grouped by SeriesInstanceUID.

    Files that are not readable DICOM are bad input (error, or skip with ``log.skip_bad``).
    A folder holding files of two different series of the wanted modality is an error
    ("mixed series"). Returns series sorted by subject key then folder.
    """
    root = Path(root)
    log = log or BadInputLog(name="dicom")
    modalities = {modality} if isinstance(modality, str) else set(modality)
    if not root.is_dir():
        raise DataError(f"{root}: DICOM folder not found")
    groups: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    for path in sorted(p for p in root.rglob("*") if is_dicom_candidate(p)):
        try:
            ds = read_dicom(path, stop_before_pixels=True)
            if "Modality" not in ds:
                raise DataError(f"{path}: Modality tag missing")
        except DataError as exc:
            log.reject(exc, path)
            continue
        if str(ds.Modality) not in modalities:
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "")) or f"folder:{path.parent}"
        groups[uid].append((path, ds))
    series: list[SeriesFiles] = []
    folder_owner: dict[Path, str] = {}
    for uid, members in groups.items():
        folders = {p.parent for p, _ in members}
        for folder in folders:
            if folder in folder_owner and folder_owner[folder] != uid:
                raise DataError(f"{folder}: mixed series in one folder (two SeriesInstanceUID values "
                                f"for Modality {sorted(modalities)})")
            folder_owner[folder] = uid
        first_path, first = members[0]
        keys = {_patient_key(ds, p, salt) for p, ds in members}
        if len(keys) > 1:
            raise DataError(f"{first_path.parent}: one SeriesInstanceUID spans several PatientID values")
        series.append(SeriesFiles(series_uid=uid, modality=str(first.Modality), subject=keys.pop(),
                                  files=[p for p, _ in members], folder=first_path.parent,
                                  acquisition_time=str(getattr(first, "SeriesTime", ""))))
    return sorted(series, key=lambda s: (s.subject, str(s.folder)))


def _slice_normal(ds: Dataset) -> np.ndarray:
    orientation = getattr(ds, "ImageOrientationPatient", None)
    if orientation is None:
        return np.array([0.0, 0.0, 1.0])
    row, col = np.array(orientation[:3], float), np.array(orientation[3:], float)
    return np.cross(row, col)


def load_series(files: Iterable[str | os.PathLike], *, salt: str | None = None,
                spacing_tolerance: float = 0.05, log: BadInputLog | None = None,
                apply_suv: bool = True) -> Volume:
    """Decode one series into a :class:`Volume` (Z, Y, X) sorted by position along the normal.

    * exact duplicate positions are dropped (the first by InstanceNumber kept) and counted;
    * slice spacing differing from the median by more than ``spacing_tolerance`` (relative) is
      an error naming the first offending file ("inconsistent slice spacing");
    * CT -> HU, PT -> SUVbw (``apply_suv``), other modalities -> modality-LUT values;
    * NaN/Inf values and mismatched matrix sizes are errors naming the file.
    """
    files = [Path(f) for f in files]
    if not files:
        raise DataError("load_series: no files given")
    log = log or BadInputLog(name="dicom")
    slices = []
    for path in files:
        try:
            ds = read_dicom(path)
            if "ImagePositionPatient" not in ds:
                raise DataError(f"{path}: ImagePositionPatient missing (cannot sort slices)")
            values = pixel_values(ds, path)
            if str(ds.Modality) == "PT" and apply_suv:
                values = values * np.float32(suv_factor(ds, path))
        except DataError as exc:
            log.reject(exc, path)
            continue
        position = float(np.dot(_slice_normal(ds), np.array(ds.ImagePositionPatient, float)))
        slices.append((position, int(getattr(ds, "InstanceNumber", 0) or 0), path, ds, values))
    if not slices:
        raise DataError(f"{files[0].parent}: no readable slices in the series")
    slices.sort(key=lambda s: (s[0], s[1]))
    kept, dropped = [slices[0]], 0
    for item in slices[1:]:
        if abs(item[0] - kept[-1][0]) < 1e-3:
            dropped += 1
            continue
        kept.append(item)
    shapes = {s[4].shape for s in kept}
    if len(shapes) > 1:
        odd = next(s for s in kept if s[4].shape != kept[0][4].shape)
        raise DataError(f"{odd[2]}: Rows/Columns {odd[4].shape} differ from the series ({kept[0][4].shape})")
    positions = np.array([s[0] for s in kept])
    first = kept[0][3]
    if len(kept) > 1:
        gaps = np.diff(positions)
        median = float(np.median(gaps))
        bad = np.flatnonzero(np.abs(gaps - median) > spacing_tolerance * median)
        if bad.size:
            odd = kept[int(bad[0]) + 1][2]
            raise DataError(f"{odd}: inconsistent slice spacing (ImagePositionPatient gap "
                            f"{gaps[bad[0]]:.3f} mm vs median {median:.3f} mm)")
        spacing_z = median
    else:
        spacing_z = float(getattr(first, "SliceThickness", 1.0) or 1.0)
    pixel_spacing = [float(v) for v in getattr(first, "PixelSpacing", [1.0, 1.0])]
    return Volume(array=np.stack([s[4] for s in kept]).astype(np.float32),
                  spacing_mm=(spacing_z, pixel_spacing[0], pixel_spacing[1]),
                  positions_mm=positions, subject=_patient_key(first, kept[0][2], salt),
                  modality=str(first.Modality), series_uid=str(getattr(first, "SeriesInstanceUID", "")),
                  n_duplicates_dropped=dropped)


# ----------------------------------------------------------------------------- writing
def deterministic_uid(*parts) -> str:
    """A DICOM UID derived from ``parts`` (phantoms are reproducible byte for byte)."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def write_slice(path: str | os.PathLike, stored: np.ndarray, *, modality: str, patient_id: str,
                series_uid: str, study_uid: str, instance_number: int = 1,
                position_mm: Sequence[float] = (0.0, 0.0, 0.0), pixel_spacing_mm: Sequence[float] = (1.0, 1.0),
                slice_thickness_mm: float = 1.0, rescale_slope: float | None = None,
                rescale_intercept: float | None = None, bits_stored: int | None = None,
                photometric: str = "MONOCHROME2", patient_name: str = "Anonymous",
                extra: dict | None = None) -> Path:
    """Write one single-frame DICOM slice (explicit VR little endian).

    ``stored`` is the integer stored-value array (H, W), uint16 or int16. ``extra`` sets further
    attributes (e.g. PET Units, RadiopharmaceuticalInformationSequence, PatientWeight).
    Used by the phantom generators and the test fixtures.
    """
    stored = np.asarray(stored)
    if stored.dtype not in (np.uint16, np.int16):
        raise ValueError(f"stored pixels must be uint16 or int16, got {stored.dtype}")
    sop_uid = deterministic_uid(series_uid, instance_number, Path(path).name)  # not the folder: reproducible
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASS.get(modality, SOP_CLASS["CT"])
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = sop_uid
    ds.Modality = modality
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.InstanceNumber = int(instance_number)
    ds.ImagePositionPatient = [float(v) for v in position_mm]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [float(v) for v in pixel_spacing_mm]
    ds.SliceThickness = float(slice_thickness_mm)
    ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = int(bits_stored or 16)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
    if rescale_slope is not None:
        ds.RescaleSlope = float(rescale_slope)
        ds.RescaleIntercept = float(rescale_intercept or 0.0)
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
