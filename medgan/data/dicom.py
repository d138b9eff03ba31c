"""DICOM reading (and writing, for phantoms and test fixtures) with pydicom.

Files are recognised as DICOM by their content (the "DICM" preamble, or a forced parse that
yields a dataset with pixel data), never by their name: ``*.dcm``, ``*.dicom``, ``*.IMA`` and
suffix-less PACS exports are all read; a DICOMDIR or a non-image file is skipped and counted.
Series are found by the Modality tag, never by folder names; slices are sorted along the slice
normal from ImagePositionPatient/ImageOrientationPatient, true duplicates (same position and same
SOPInstanceUID or same pixels) dropped and counted, a different image at one position refused, and
the spacing (slice gaps and PixelSpacing of every slice) checked. Enhanced multi-frame CT/MR/PT
files are expanded frame by frame from their functional groups. Pixel values go through the
modality LUT (Rescale Slope/Intercept in float64, or a Modality LUT Sequence on the stored
integers). PET values (Bq/ml) become SUVbw from the tags of each series separately.

Compressed transfer syntaxes that the installed packages cannot decode raise
:class:`MissingDecoderError` naming the package (``pip install medgan[dicom]``).
Identifiers: only :func:`medgan.data.base.subject_key` of the PatientID ever leaves this module.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DA, DT, TM
from tqdm.auto import tqdm

from medgan.data.base import BadInputLog, DataError, check_finite, subject_key

logger = logging.getLogger("medgan.data")

SOP_CLASS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",      # CT Image Storage
    "PT": "1.2.840.10008.5.1.4.1.1.128",    # Positron Emission Tomography Image Storage
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",    # Digital X-Ray Image Storage - For Presentation
    "CR": "1.2.840.10008.5.1.4.1.1.1",      # Computed Radiography Image Storage
}

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # the SOP class of a DICOMDIR
PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
INSTALL_HINT = "pip install medgan[dicom]"
# magic numbers of formats that sit beside DICOM files in exports (never force-parsed)
OTHER_FORMAT_MAGIC = (b"\x1f\x8b", b"\x89PNG", b"\xff\xd8\xff", b"PK\x03\x04", b"%PDF", b"\x93NUMPY", b"GIF8",
                      b"\x5c\x01\x00\x00", b"\x1c\x02\x00\x00", b"II*\x00", b"MM\x00*")  # + NIfTI-1/2, TIFF


class UnsupportedDataError(DataError):
    """Valid data medgan cannot use (a photometric, a SOP class, a layout); the message says which."""


class MissingDecoderError(UnsupportedDataError):
    """Compressed pixel data whose decoder package is not installed; the message names it."""


class TruncatedFileError(DataError):
    """A file cut short (header or pixel data); the message says where it ends."""


class ConflictingSliceError(DataError):
    """Two different images at one slice position of a series; the message names both files."""


# ----------------------------------------------------------------------------- recognising files
def _looks_like_text(head: bytes) -> bool:
    return bool(head) and all(32 <= b < 127 or b in (9, 10, 13) for b in head)


def is_dicom_candidate(path: Path) -> bool:
    """Whether ``path`` is read as DICOM, decided by content, not by name.

    True for files with the "DICM" preamble, for ``*.dcm`` files of any content (so a broken
    slice is reported, not silently ignored), and for files without a preamble that pydicom
    parses (``force=True``) into a dataset carrying Modality or pixel data. Text files (a
    LICENSE, a README), images, archives and hidden files are not candidates.
    """
    if not path.is_file() or path.name.startswith("."):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return path.suffix.lower() == ".dcm"  # reported as unreadable by the reader
    if head[128:132] == b"DICM" or path.suffix.lower() == ".dcm":
        return True
    if len(head) < 8 or head.startswith(OTHER_FORMAT_MAGIC) or _looks_like_text(head):
        return False
    try:
        ds = pydicom.dcmread(path, force=True, defer_size=256)
        return "Modality" in ds or any(k in ds for k in PIXEL_DATA_KEYWORDS)
    except Exception:  # noqa: BLE001 - any parse failure means "not DICOM"
        return False


def walk_files(root: str | os.PathLike, *, log: BadInputLog | None = None) -> list[Path]:
    """Every regular file under ``root``, sorted (hidden files and folders excluded).

    Unlike ``Path.rglob`` (which hides a ``PermissionError``), an unreadable folder is bad input:
    a :class:`DataError` naming the folder, or (``log.skip_bad``) logged and counted.
    """
    log = log or BadInputLog(name="dicom")
    errors: list[OSError] = []
    out = []
    for folder, dirs, names in os.walk(root, onerror=errors.append):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(Path(folder) / n for n in names if not n.startswith("."))
    for exc in errors:
        log.problem(Path(exc.filename or root), f"folder unreadable ({type(exc).__name__}: {exc.strerror})")
    return sorted(p for p in out if p.is_file())


def _is_dicomdir(ds: Dataset, path: Path) -> bool:
    sop = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    return sop == MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in ds or path.name.upper() == "DICOMDIR"


def _check_not_truncated(ds: Dataset, path: Path) -> None:
    """A file with a preamble but no dataset, or an image SOP class without pixel data, is cut short."""
    if any(k in ds for k in PIXEL_DATA_KEYWORDS) or _is_dicomdir(ds, path):
        return
    meta = getattr(ds, "file_meta", None)
    sop = str(getattr(meta, "MediaStorageSOPClassUID", "") or getattr(ds, "SOPClassUID", "") or "")
    sop_name = getattr(pydicom.uid.UID(sop), "name", sop) if sop else ""
    size = path.stat().st_size
    if len(ds) == 0:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception:  # noqa: BLE001 - the header itself does not parse
            header = Dataset()
        if len(header):  # the header parses up to PixelData, the whole file does not
            raise TruncatedFileError(f"{path}: PixelData truncated or corrupt: the header parses, the file "
                                     f"({size} bytes) does not parse to its end")
        raise TruncatedFileError(f"{path}: truncated DICOM header: the dataset ends after {size} bytes, "
                                 f"before any tag (Modality, PixelData missing)")
    if "Image" in sop_name:  # an image SOP class always has pixel data: the file stops before it
        last = ds[list(ds.keys())[-1]].keyword or str(list(ds.keys())[-1])
        missing = "PixelData never reached" if "Modality" in ds else "Modality and PixelData never reached"
        raise TruncatedFileError(f"{path}: truncated DICOM header ({size} bytes, last tag read {last}; {missing})")


def read_dicom(path: str | os.PathLike, *, stop_before_pixels: bool = False) -> Dataset:
    """Read one DICOM file (with or without the "DICM" preamble).

    Raises :class:`TruncatedFileError` for a header cut short and :class:`DataError` for files
    that are not DICOM, unreadable or empty; every message names the file.
    """
    path = Path(path)
    try:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:  # no preamble: accept it if a forced parse yields DICOM tags
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
            if "Modality" not in ds and not any(k in ds for k in PIXEL_DATA_KEYWORDS) and "SOPClassUID" not in ds:
                raise DataError(f"{path}: unreadable: not DICOM (no DICM preamble, and no DICOM tags parse)") from None
    except DataError:
        raise
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
        if path.is_file() and path.stat().st_size == 0:
            raise DataError(f"{path}: empty file (0 bytes), not DICOM") from exc
        raise DataError(f"{path}: unreadable DICOM ({type(exc).__name__}: {exc})") from exc
    if not stop_before_pixels:
        _check_not_truncated(ds, path)
    elif len(ds) == 0:
        raise TruncatedFileError(f"{path}: truncated DICOM header: no tag after the file meta "
                                 f"({path.stat().st_size} bytes; Modality missing)")
    return ds


# ----------------------------------------------------------------------------- pixels
def _transfer_syntax(ds: Dataset):
    meta = getattr(ds, "file_meta", None)
    return getattr(meta, "TransferSyntaxUID", None)


def _decoder_package(uid) -> str:
    """The pip package that decodes transfer syntax ``uid`` (the plugin of pylibjpeg)."""
    name = str(getattr(uid, "name", uid))
    if "2000" in name or "HTJ2K" in name or "High-Throughput" in name:
        return "pylibjpeg-openjpeg"
    if "RLE" in name:
        return "pylibjpeg-rle"
    return "pylibjpeg-libjpeg"  # JPEG baseline/extended/lossless, JPEG-LS


def _missing_decoder(uid, path, detail: str = "") -> MissingDecoderError:
    name = getattr(uid, "name", str(uid))
    package = _decoder_package(uid)
    return MissingDecoderError(f"{path}: TransferSyntaxUID {name} ({uid}): {name} needs {package} "
                               f"(with pylibjpeg): {INSTALL_HINT}{detail}")


def stored_pixels(ds: Dataset, path: str | os.PathLike) -> np.ndarray:
    """The stored pixel array (integers as stored; (H, W) or (frames, H, W)).

    A compressed transfer syntax without an installed decoder raises :class:`MissingDecoderError`
    naming the package; pixel data cut short raises :class:`TruncatedFileError`.
    """
    uid = _transfer_syntax(ds)
    compressed = bool(uid is not None and getattr(uid, "is_compressed", False))
    if compressed:
        try:
            decoder = get_decoder(uid)
        except NotImplementedError as exc:
            raise UnsupportedDataError(f"{path}: TransferSyntaxUID {uid}: no pydicom decoder ({exc})") from exc
        if not decoder.is_available:
            raise _missing_decoder(uid, path)
    if not any(k in ds for k in PIXEL_DATA_KEYWORDS):
        raise DataError(f"{path}: PixelData missing (no image in this file)")
    try:
        return ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom raises several types for short/corrupt data
        text = f"{type(exc).__name__}: {exc}"
        if "less than expected" in str(exc) or "truncat" in str(exc).lower() or isinstance(exc, EOFError):
            raise TruncatedFileError(f"{path}: PixelData truncated ({text})") from exc
        if compressed and "pylibjpeg" not in decoder.available_plugins:
            # e.g. 12-bit JPEG Extended: Pillow is installed but cannot decode it
            raise _missing_decoder(uid, path, f" (the installed {sorted(decoder.available_plugins)} failed: {text})") from exc
        if compressed:
            raise DataError(f"{path}: PixelData: {getattr(uid, 'name', uid)} data not decodable by "
                            f"{sorted(decoder.available_plugins)} (corrupt or non-conformant: {text})") from exc
        raise DataError(f"{path}: PixelData unreadable or truncated ({text})") from exc


def _modality_lut(stored: np.ndarray, ds: Dataset, path) -> np.ndarray:
    try:  # the stored integers: a Modality LUT Sequence indexes with them
        return apply_modality_lut(stored, ds)
    except (IndexError, ValueError, TypeError, AttributeError, KeyError) as exc:
        field_name = "ModalityLUTSequence" if "ModalityLUTSequence" in ds else "RescaleSlope/RescaleIntercept"
        raise DataError(f"{path}: {field_name}: cannot apply the modality LUT ({type(exc).__name__}: {exc})") from exc


def pixel_values(ds: Dataset, path: str | os.PathLike) -> np.ndarray:
    """Stored pixels through the modality LUT as float32, (H, W) (or (frames, H, W)).

    Rescale Slope/Intercept are applied in float64 (so a uint16 stored value never wraps when a
    negative intercept is added); a Modality LUT Sequence is applied to the stored integers.
    For an enhanced multi-frame file use :func:`enhanced_frames`.
    """
    values = _modality_lut(stored_pixels(ds, path), ds, path).astype(np.float32)
    check_finite(values, path, "PixelData")
    return values


def to_hu(ds: Dataset, path: str | os.PathLike = "<dataset>") -> np.ndarray:
    """CT pixels in Hounsfield units, float32 (H, W): stored * RescaleSlope + RescaleIntercept."""
    return pixel_values(ds, path)


def voi_values(ds: Dataset, path: str | os.PathLike, *, index: int = 0) -> np.ndarray:
    """Display values, float32 (H, W): modality LUT, then the VOI LUT Sequence or the window
    (WindowCenter/WindowWidth, item ``index``) exactly as pydicom's ``apply_voi_lut``."""
    stored = stored_pixels(ds, path)
    try:
        values = apply_voi_lut(_modality_lut(stored, ds, path), ds, index=index)
    except (IndexError, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise DataError(f"{path}: VOILUTSequence/WindowCenter: cannot apply the VOI LUT "
                        f"({type(exc).__name__}: {exc})") from exc
    values = np.asarray(values, np.float32)
    check_finite(values, path, "PixelData")
    return values


def _group(ds: Dataset, frame: int, sequence: str):
    """Item of functional-group ``sequence`` for ``frame``: per-frame first, then shared."""
    per_frame, shared = ds.get("PerFrameFunctionalGroupsSequence"), ds.get("SharedFunctionalGroupsSequence")
    for item in (per_frame[frame] if per_frame and frame < len(per_frame) else None, shared[0] if shared else None):
        if item is not None and sequence in item and item[sequence].value:
            return item[sequence].value[0]
    return None


def is_enhanced(ds: Dataset) -> bool:
    """True for an enhanced (functional-group) multi-frame image such as Enhanced CT Image Storage."""
    return "PerFrameFunctionalGroupsSequence" in ds


def enhanced_frames(ds: Dataset, path: str | os.PathLike) -> list[tuple[Dataset, np.ndarray]]:
    """Split an enhanced multi-frame file into per-frame (header, values float32 (H, W)).

    Each header carries the frame's ImagePositionPatient (PlanePositionSequence),
    ImageOrientationPatient (PlaneOrientationSequence), PixelSpacing/SliceThickness
    (PixelMeasuresSequence) and Rescale Slope/Intercept (PixelValueTransformationSequence), per
    frame or shared; a frame without a position raises :class:`DataError` naming the sequence.
    """
    stored = stored_pixels(ds, path)
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if stored.ndim == 2:
        stored = stored[None]
    if stored.ndim != 3 or stored.shape[0] != n_frames:
        raise UnsupportedDataError(f"{path}: NumberOfFrames={n_frames} but pixel array has shape {stored.shape} "
                                   f"(colour or odd enhanced layouts are not supported)")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) != n_frames:
        raise DataError(f"{path}: PerFrameFunctionalGroupsSequence has {len(per_frame)} items for "
                        f"NumberOfFrames={n_frames}")
    out = []
    for k in range(n_frames):
        header = Dataset()
        for keyword in ("Modality", "PatientID", "SeriesInstanceUID", "SOPInstanceUID", "BitsStored",
                        "PixelRepresentation", "PhotometricInterpretation", "Units", "DecayCorrection",
                        "PatientWeight", "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime",
                        "RadiopharmaceuticalInformationSequence"):
            if keyword in ds:
                setattr(header, keyword, ds[keyword].value)
        if hasattr(ds, "file_meta"):
            header.file_meta = ds.file_meta
        header.InstanceNumber = k + 1
        position = _group(ds, k, "PlanePositionSequence")
        if position is None or "ImagePositionPatient" not in position:
            raise DataError(f"{path}: frame {k + 1}: PlanePositionSequence/ImagePositionPatient missing "
                            f"(enhanced multi-frame file; cannot sort frames)")
        header.ImagePositionPatient = position.ImagePositionPatient
        orientation = _group(ds, k, "PlaneOrientationSequence")
        if orientation is not None and "ImageOrientationPatient" in orientation:
            header.ImageOrientationPatient = orientation.ImageOrientationPatient
        measures = _group(ds, k, "PixelMeasuresSequence")
        for keyword in ("PixelSpacing", "SliceThickness"):
            if measures is not None and keyword in measures:
                setattr(header, keyword, measures[keyword].value)
        transform = _group(ds, k, "PixelValueTransformationSequence")
        if transform is not None and "RescaleSlope" in transform:
            header.RescaleSlope = transform.RescaleSlope
            header.RescaleIntercept = transform.get("RescaleIntercept", 0.0)
        values = _modality_lut(stored[k], header, f"{path} (frame {k + 1})").astype(np.float32)
        check_finite(values, f"{path} (frame {k + 1})", "PixelData")
        out.append((header, values))
    return out


# ----------------------------------------------------------------------------- SUV
def _tag(ds: Dataset, keyword: str, path):
    """Tag value, with a DataError naming the tag if pydicom cannot even convert it."""
    try:
        return getattr(ds, keyword, None)
    except (ValueError, TypeError, OverflowError) as exc:
        raise DataError(f"{path}: {keyword} is not a valid value ({exc})") from exc


def _positive(source: Dataset, keyword: str, path) -> float:
    value = _tag(source, keyword, path)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{path}: {keyword} missing or not a number ({value!r}); needed for SUV") from None
    if not np.isfinite(number) or number <= 0:
        raise DataError(f"{path}: {keyword} missing or not positive ({value!r}); needed for SUV")
    return number


# pydicom's DT accepts a valid prefix ("2020010X1200" -> 2020-01-01); PS3.5 Table 6.2-1 is stricter
_DT_PATTERN = re.compile(r"\d{4}(\d{2}){0,5}(\.\d{1,6})?([+-]\d{4})?")


def _parse(kind, value, path, keyword: str):
    if kind is DT and not _DT_PATTERN.fullmatch(str(value).strip()):
        raise DataError(f"{path}: {keyword} is not a DICOM DT ({value!r})")
    try:
        parsed = kind(str(value).strip())
    except (ValueError, TypeError, OverflowError) as exc:
        raise DataError(f"{path}: {keyword} is not a DICOM {kind.__name__} ({value!r})") from exc
    if parsed is None:
        raise DataError(f"{path}: {keyword} is empty")
    if not isinstance(parsed, (dt.date, dt.time)):  # pydicom returns the raw text when it cannot parse
        raise DataError(f"{path}: {keyword} is not a DICOM {kind.__name__} ({value!r})")
    return parsed


def _injection_time(info: Dataset, path) -> tuple[dt.datetime | dt.time, str]:
    """Injection as a naive datetime (RadiopharmaceuticalStartDateTime) or a clock time
    (RadiopharmaceuticalStartTime, no date), and the tag it came from."""
    start_dt = _tag(info, "RadiopharmaceuticalStartDateTime", path)
    if start_dt not in (None, ""):
        parsed = _parse(DT, start_dt, path, "RadiopharmaceuticalStartDateTime")
        if len(str(start_dt).strip().split("+")[0].split("-")[0]) >= 10:  # YYYYMMDDHH at least
            return parsed.replace(tzinfo=None), "RadiopharmaceuticalStartDateTime"
        start = _tag(info, "RadiopharmaceuticalStartTime", path)  # a date only: take the clock time
        if start in (None, ""):
            raise DataError(f"{path}: RadiopharmaceuticalStartDateTime {start_dt!r} has no time of day "
                            f"and RadiopharmaceuticalStartTime is missing")
        clock = _parse(TM, start, path, "RadiopharmaceuticalStartTime").replace(tzinfo=None)
        return (dt.datetime.combine(parsed.date(), clock),
                "RadiopharmaceuticalStartDateTime/RadiopharmaceuticalStartTime")
    start = _tag(info, "RadiopharmaceuticalStartTime", path)
    if start in (None, ""):
        raise DataError(f"{path}: RadiopharmaceuticalStartDateTime and RadiopharmaceuticalStartTime missing; "
                        f"needed for SUV decay")
    return _parse(TM, start, path, "RadiopharmaceuticalStartTime"), "RadiopharmaceuticalStartTime"


def _scan_time(ds: Dataset, path) -> tuple[dt.datetime | dt.time, str]:
    """Reference time of the decay correction: SeriesDate/SeriesTime (AcquisitionDate/Time if
    absent) as a datetime when the date is known, otherwise a clock time."""
    for date_key, time_key in (("SeriesDate", "SeriesTime"), ("AcquisitionDate", "AcquisitionTime")):
        time_value = _tag(ds, time_key, path)
        if time_value in (None, ""):
            continue
        clock = _parse(TM, time_value, path, time_key)
        date_value = _tag(ds, date_key, path)
        if date_value in (None, ""):
            return clock, time_key
        day = _parse(DA, date_value, path, date_key)
        return dt.datetime.combine(day, clock.replace(tzinfo=None)), f"{date_key}/{time_key}"
    raise DataError(f"{path}: SeriesTime (and AcquisitionTime) missing; needed for SUV decay")


def suv_factor_from_values(*, dose_bq: float, half_life_s: float, weight_kg: float,
                           injection_time: dt.datetime, scan_time: dt.datetime,
                           dates_known: bool = True) -> float:
    """Factor turning activity concentration (Bq/ml) into SUVbw (g/ml).

    SUVbw = C[Bq/ml] * weight[g] / (dose[Bq] * 2^(-(t_scan - t_inj) / T_half)); the dose is
    decayed from injection to the time the image values are decay-corrected to.
    With ``dates_known`` an injection after the scan raises :class:`DataError`; without dates
    (clock times only) a negative interval is taken to cross midnight (+24 h).
    """
    elapsed_s = (scan_time - injection_time).total_seconds()
    if elapsed_s < 0:
        if dates_known:
            raise DataError(f"injection time {injection_time} is after the scan time {scan_time}")
        elapsed_s += 24 * 3600  # clock times only: injection the evening before
    decayed_dose = dose_bq * 2.0 ** (-elapsed_s / half_life_s)
    return weight_kg * 1000.0 / decayed_dose


def suv_factor(ds: Dataset, path: str | os.PathLike = "<dataset>") -> float:
    """SUVbw factor for a PET slice from its own tags.

    * ``Units`` (0054,1001) is required: BQML is converted, GML is already SUVbw (factor 1);
      a missing Units is an error, never assumed to be BQML.
    * RadiopharmaceuticalInformationSequence[0]: RadionuclideTotalDose (Bq), RadionuclideHalfLife
      (s), and RadiopharmaceuticalStartDateTime (or RadiopharmaceuticalStartTime, a clock time).
    * PatientWeight (kg), positive.
    * DecayCorrection START decays the dose to SeriesDate/SeriesTime (AcquisitionDate/Time when
      absent); ADMIN needs no decay.

    Times are parsed with pydicom's DA/TM/DT. When both the injection and the scan carry a date,
    the full date-times are used and an injection after the scan is a :class:`DataError` naming
    both tags. Only when a date is missing on either side are clock times compared, and then a
    negative interval is taken as an injection the evening before (+24 h). Every problem raises
    :class:`DataError` naming the file and the tag.
    """
    units = _tag(ds, "Units", path)
    if units in (None, ""):
        raise DataError(f"{path}: Units (0054,1001) missing; needed to know whether values are BQML or GML "
                        f"(not assumed)")
    units = str(units).strip().upper()
    if units == "GML":
        return 1.0
    if units != "BQML":
        raise DataError(f"{path}: Units={units!r} cannot be converted to SUV (need BQML or GML)")
    seq = _tag(ds, "RadiopharmaceuticalInformationSequence", path)
    if not seq:
        raise DataError(f"{path}: RadiopharmaceuticalInformationSequence missing (needed for SUV)")
    info = seq[0]
    dose = _positive(info, "RadionuclideTotalDose", path)
    half_life = _positive(info, "RadionuclideHalfLife", path)
    weight = _positive(ds, "PatientWeight", path)
    decay = str(_tag(ds, "DecayCorrection", path) or "START").strip().upper()
    if decay == "ADMIN":
        return weight * 1000.0 / dose
    if decay != "START":
        raise DataError(f"{path}: DecayCorrection={decay!r} not supported (START or ADMIN)")
    injection, injection_tag = _injection_time(info, path)
    scan, scan_tag = _scan_time(ds, path)
    dates_known = isinstance(injection, dt.datetime) and isinstance(scan, dt.datetime)
    if not dates_known:  # compare clock times on one arbitrary day
        day = dt.date(2000, 1, 1)
        injection = dt.datetime.combine(day, (injection.time() if isinstance(injection, dt.datetime) else injection)
                                        .replace(tzinfo=None))
        scan = dt.datetime.combine(day, (scan.time() if isinstance(scan, dt.datetime) else scan).replace(tzinfo=None))
    elif scan < injection:
        raise DataError(f"{path}: {injection_tag} ({injection}) is after {scan_tag} ({scan}): "
                        f"injection after the scan; cannot decay-correct for SUV")
    return suv_factor_from_values(dose_bq=dose, half_life_s=half_life, weight_kg=weight,
                                  injection_time=injection, scan_time=scan, dates_known=dates_known)


# ----------------------------------------------------------------------------- series
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
    """A decoded series: ``array`` (Z, Y, X) float32 in HU / SUVbw / LUT values.

    ``n_duplicates_dropped`` counts true duplicates (same position and same SOPInstanceUID or
    same pixels); ``extra["duplicates"]`` names them as (kept file, dropped file).
    """
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
                log: BadInputLog | None = None, ignored: list | None = None,
                progress: bool = False) -> list[SeriesFiles]:
    """All series of ``modality`` under ``root`` (recursive), grouped by SeriesInstanceUID.

    Files are recognised by content (:func:`is_dicom_candidate`), whatever their names. Files
    that are not DICOM images (a README, a DICOMDIR index, DICOM without Modality or pixel data)
    are skipped and counted: appended to ``ignored`` as ``(path, reason)`` when given, and their
    number logged once. Unreadable folders, like unreadable files, are bad input. Unreadable or truncated files are bad
    input (error, or skip with ``log.skip_bad``). A folder holding files of two different series
    of the wanted modality is an error ("mixed series"). Returns series sorted by subject key
    then folder. Only headers are read (no pixel data); ``progress`` shows a bar over the files.
    """
    root = Path(root)
    log = log or BadInputLog(name="dicom")
    ignored = ignored if ignored is not None else []
    modalities = {modality} if isinstance(modality, str) else set(modality)
    if not root.is_dir():
        raise DataError(f"{root}: DICOM folder not found")
    groups: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    n_ignored_before = len(ignored)
    for path in tqdm(walk_files(root, log=log), desc="DICOM headers", unit="file", disable=not progress,
                     leave=False):
        if not is_dicom_candidate(path):
            ignored.append((path, "not a DICOM image (no DICM preamble, and no Modality or pixel data parse)"))
            continue
        try:
            ds = read_dicom(path, stop_before_pixels=True)
            if _is_dicomdir(ds, path):
                ignored.append((path, "DICOMDIR (an index of the files, not an image)"))
                continue
            if "Modality" not in ds:
                if any(k in ds for k in PIXEL_DATA_KEYWORDS) or "PixelData" in read_dicom(path):
                    raise DataError(f"{path}: Modality tag missing (image without a modality)")
                ignored.append((path, "DICOM without Modality or pixel data"))
                continue
        except DataError as exc:
            log.reject(exc, path)
            continue
        if str(ds.Modality) not in modalities:
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "")) or f"folder:{path.parent}"
        groups[uid].append((path, ds))
    if len(ignored) > n_ignored_before:
        logger.info("dicom: %d file(s) under %s skipped as not DICOM images (DICOMDIR, no pixel data, other files)",
                    len(ignored) - n_ignored_before, root)
    series: list[SeriesFiles] = []
    folder_owner: dict[Path, str] = {}
    for uid, members in groups.items():
        folders = {p.parent for p, _ in members}
        for folder in folders:
            if folder in folder_owner and folder_owner[folder] != uid:
                raise DataError(f"{folder}: mixed series in one folder (two SeriesInstanceUID values "
                                f"for Modality {sorted(modalities)})")
            folder_owner[folder] = uid
        keyed = []
        for p, ds in members:
            try:
                keyed.append((p, ds, _patient_key(ds, p, salt)))
            except DataError as exc:
                log.reject(exc, p)
        if not keyed:
            continue
        members = [(p, ds) for p, ds, _ in keyed]
        first_path, first = members[0]
        keys = {key for _, _, key in keyed}
        if len(keys) > 1:
            raise DataError(f"{first_path.parent}: one SeriesInstanceUID spans several PatientID values")
        series.append(SeriesFiles(series_uid=uid, modality=str(first.Modality), subject=keys.pop(),
                                  files=[p for p, _ in members], folder=first_path.parent,
                                  acquisition_time=str(getattr(first, "SeriesTime", ""))))
    return sorted(series, key=lambda s: (s.subject, str(s.folder)))


def _vector(ds: Dataset, keyword: str, length: int, path) -> np.ndarray | None:
    """A multi-valued numeric tag as floats, None when absent; wrong length/NaN -> DataError."""
    value = _tag(ds, keyword, path)
    if value is None:
        return None
    try:
        vector = np.array([float(v) for v in (value if isinstance(value, (list, tuple, pydicom.multival.MultiValue))
                                               else [value])], float)
    except (TypeError, ValueError):
        raise DataError(f"{path}: {keyword} is not numeric ({value!r})") from None
    if vector.shape != (length,) or not np.all(np.isfinite(vector)):
        raise DataError(f"{path}: {keyword} needs {length} finite numbers, got {value!r}")
    return vector


def _slice_normal(ds: Dataset, path="<dataset>") -> np.ndarray:
    orientation = _vector(ds, "ImageOrientationPatient", 6, path)
    if orientation is None:
        return np.array([0.0, 0.0, 1.0])
    normal = np.cross(orientation[:3], orientation[3:])
    if np.linalg.norm(normal) < 1e-3:
        raise DataError(f"{path}: ImageOrientationPatient row and column directions are parallel or zero")
    return normal / np.linalg.norm(normal)


def _instance_number(ds: Dataset, path) -> int:
    value = _tag(ds, "InstanceNumber", path)
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        raise DataError(f"{path}: InstanceNumber is not an integer ({value!r})") from None


def _frames_of(path: Path) -> list[tuple[Dataset, np.ndarray, str]]:
    """(header, modality-LUT values (H, W), SOPInstanceUID or frame id) for each frame of a file."""
    ds = read_dicom(path)
    if is_enhanced(ds):
        return [(header, values, f"{getattr(ds, 'SOPInstanceUID', path)}#{k + 1}")
                for k, (header, values) in enumerate(enhanced_frames(ds, path))]
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        raise UnsupportedDataError(f"{path}: NumberOfFrames={ds.NumberOfFrames} without "
                                   f"PerFrameFunctionalGroupsSequence: legacy multi-frame files are not supported")
    if "ImagePositionPatient" not in ds:
        raise DataError(f"{path}: ImagePositionPatient missing (cannot sort slices)")
    return [(ds, pixel_values(ds, path), str(getattr(ds, "SOPInstanceUID", "")))]


def load_series(files: Iterable[str | os.PathLike], *, salt: str | None = None,
                spacing_tolerance: float = 0.05, log: BadInputLog | None = None,
                apply_suv: bool = True) -> Volume:
    """Decode one series into a :class:`Volume` (Z, Y, X) sorted by position along the normal.

    * true duplicates (same position and same SOPInstanceUID or identical pixels) are dropped,
      the first by InstanceNumber kept, counted in ``n_duplicates_dropped`` and logged; a
      *different* image at the same position is a :class:`ConflictingSliceError` naming both
      files (with ``log.skip_bad`` the later one is skipped and counted in the log);
    * slice spacing differing from the median by more than ``spacing_tolerance`` (relative) is
      an error naming the first offending file ("inconsistent slice spacing");
    * PixelSpacing is read from every slice: missing, or differing from the first slice, is an
      error naming the file; so is an ImageOrientationPatient differing from the first slice;
    * enhanced multi-frame files are expanded frame by frame (:func:`enhanced_frames`);
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
            frames = _frames_of(path)
            if apply_suv:
                frames = [(h, v * np.float32(suv_factor(h, path)) if str(getattr(h, "Modality", "")) == "PT" else v, u)
                          for h, v, u in frames]
        except DataError as exc:
            log.reject(exc, path)
            continue
        try:
            placed = [(float(np.dot(_slice_normal(h, path), _vector(h, "ImagePositionPatient", 3, path))),
                       _instance_number(h, path), path, h, v, u) for h, v, u in frames]
        except DataError as exc:
            log.reject(exc, path)
            continue
        slices.extend(placed)
    if not slices:
        raise DataError(f"{files[0].parent}: no readable slices in the series")
    slices.sort(key=lambda s: (s[0], s[1]))
    kept, duplicates = [slices[0]], []
    for item in slices[1:]:
        if abs(item[0] - kept[-1][0]) < 1e-3:
            previous = kept[-1]
            same_image = (item[5] and item[5] == previous[5]) or (
                item[4].shape == previous[4].shape and np.array_equal(item[4], previous[4]))
            if same_image:
                duplicates.append((previous[2], item[2]))
                continue
            try:
                raise ConflictingSliceError(
                    f"{item[2]}: ImagePositionPatient {item[0]:.3f} mm is also that of {previous[2]} with "
                    f"different pixels (SOPInstanceUID differs): two images at one slice position")
            except ConflictingSliceError as exc:
                log.reject(exc, item[2])
                continue
        kept.append(item)
    if duplicates:
        logger.info("dicom: %d duplicate slice file(s) dropped (same position and image), e.g. %s",
                    len(duplicates), duplicates[0][1])
    shapes = {s[4].shape for s in kept}
    if len(shapes) > 1:
        odd = next(s for s in kept if s[4].shape != kept[0][4].shape)
        raise DataError(f"{odd[2]}: Rows/Columns {odd[4].shape} differ from the series ({kept[0][4].shape})")
    first = kept[0][3]
    reference_spacing = _pixel_spacing(first, kept[0][2])
    reference_normal = _slice_normal(first, kept[0][2])
    for item in kept[1:]:
        spacing = _pixel_spacing(item[3], item[2])
        if not np.allclose(spacing, reference_spacing, rtol=1e-4, atol=1e-6):
            raise DataError(f"{item[2]}: PixelSpacing {spacing} differs from {reference_spacing} of {kept[0][2]}")
        if not np.allclose(_slice_normal(item[3], item[2]), reference_normal, atol=1e-4):
            raise DataError(f"{item[2]}: ImageOrientationPatient differs from that of {kept[0][2]}")
    positions = np.array([s[0] for s in kept])
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
        thickness = _tag(first, "SliceThickness", kept[0][2])
        try:
            spacing_z = float(thickness or 1.0)
        except (TypeError, ValueError):
            raise DataError(f"{kept[0][2]}: SliceThickness is not a number ({thickness!r})") from None
    return Volume(array=np.stack([s[4] for s in kept]).astype(np.float32),
                  spacing_mm=(spacing_z, reference_spacing[0], reference_spacing[1]),
                  positions_mm=positions, subject=_patient_key(first, kept[0][2], salt),
                  modality=str(first.Modality), series_uid=str(getattr(first, "SeriesInstanceUID", "")),
                  n_duplicates_dropped=len(duplicates), extra={"duplicates": duplicates})


def _pixel_spacing(ds: Dataset, path: Path) -> tuple[float, float]:
    value = _tag(ds, "PixelSpacing", path)
    try:
        row, col = (float(v) for v in value)
    except (TypeError, ValueError):
        raise DataError(f"{path}: PixelSpacing missing or invalid ({value!r}; needs 2 numbers)") from None
    if not (np.isfinite(row) and np.isfinite(col) and row > 0 and col > 0):
        raise DataError(f"{path}: PixelSpacing not positive ({value!r})")
    return row, col


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
