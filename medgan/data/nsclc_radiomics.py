"""NSCLC-Radiomics (TCIA Lung1) chest CT loader: 2D axial slices with the survival label.

Layout: ``<root>/NSCLC-Radiomics/LUNG1-XXX/<study>/<series>/*.dcm`` (folder names vary between
downloads, so the CT series is found by the Modality tag), and the clinical CSV
``NSCLC-Radiomics-Lung1.clinical-version3-Oct-2019.csv`` in ``root`` (or give ``clinical_csv``).
Each slice: HU -> window (centre/width, HU) -> [-1, 1] -> centre crop ``crop_size`` px ->
resize to ``image_size`` (area). Label: ``deadstatus.event`` (1 died, 0 alive).

Building a dataset reads only the CSV and the DICOM headers; the slices are decoded once per
series (:func:`decode_series`, in worker processes) into the item store in the work folder
(:mod:`medgan.data.item_store`), and read from there one item at a time, so memory does not grow
with the number of slices. Bad slices and series are skipped and counted, or raise, per ``skip_bad``.
"""

from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from pandas._libs.parsers import STR_NA_VALUES

from medgan.data.base import (BadInputLog, DataAccessError, DataError, ItemListDataset, data_problems,
                              filter_by_split, logger, reads_data_root, subject_key)
from medgan.data.dicom import find_series, load_series
from medgan.data.item_store import build_store
from medgan.data.nifti import read_nifti
from medgan.data.splits import split_path, subject_split
from medgan.data.transforms import center_crop, nearest_resize, resize, window_hu

CLINICAL_CSV = "NSCLC-Radiomics-Lung1.clinical-version3-Oct-2019.csv"
REQUIRED_COLUMNS = ("PatientID", "Histology", "deadstatus.event")


def read_clinical(path: str | os.PathLike, *, salt: str | None = None, encoding: str | None = None,
                  log: BadInputLog | None = None) -> pd.DataFrame:
    """The clinical CSV indexed by pseudonymous subject key (PatientID column dropped).

    PatientID is read as text (``"007"`` stays ``"007"``, as in the DICOM tag). ``encoding``
    None reads UTF-8 (with or without BOM) and falls back to Windows-1252/Latin-1, saying so in
    the log; give it to force one. An empty or unparsable file, a blank PatientID and contradictory
    duplicate rows of one patient raise :class:`DataError` naming the file and the field (with
    ``log.skip_bad`` a contradictory patient is skipped and counted instead); rows repeated
    identically are kept once and counted. Rows are named by line number, never by PatientID.
    """
    path = Path(path)
    log = log or BadInputLog(name="clinical CSV")
    if not path.is_file():
        raise DataError(f"{path}: clinical CSV not found")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataAccessError(f"{path}: clinical CSV unreadable ({type(exc).__name__}: {exc.strerror})") from exc
    if not raw.strip():
        raise DataError(f"{path}: clinical CSV is empty ({len(raw)} bytes); expected a header with "
                        f"{list(REQUIRED_COLUMNS)}")
    text = _decode_csv(raw, path, encoding)
    try:
        columns = pd.read_csv(io.StringIO(text), nrows=0).columns
        # PatientID as text, never a missing value; every other column with pandas' usual NA spellings
        table = pd.read_csv(io.StringIO(text), dtype={"PatientID": str}, keep_default_na=False,
                            na_values={c: sorted(STR_NA_VALUES) for c in columns if c != "PatientID"})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise DataError(f"{path}: not a readable CSV ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}")
    table["PatientID"] = table["PatientID"].astype(str).str.strip()
    blank = np.flatnonzero(table["PatientID"] == "")
    if blank.size:
        raise DataError(f"{path}: PatientID blank on row(s) {list(blank + 2)[:5]}")
    event = pd.to_numeric(table["deadstatus.event"], errors="coerce")
    bad = event.isna() | ~event.isin([0, 1])
    if bad.any():
        raise DataError(f"{path}: deadstatus.event must be 0/1 (row(s) {list(np.flatnonzero(bad) + 2)[:5]})")
    table["deadstatus.event"] = event.astype(int)
    table["subject"] = [subject_key(p, salt=salt) for p in table["PatientID"]]
    table = table.drop(columns=["PatientID"])
    keep, rejected = np.ones(len(table), dtype=bool), set()
    for subject, rows in table.groupby("subject", sort=True).groups.items():
        if len(rows) < 2:
            continue
        lines = [int(r) + 2 for r in rows]  # header is line 1
        if len(table.loc[rows].drop_duplicates()) == 1:  # the same row repeated: unambiguous, keep one
            keep[list(rows)[1:]] = False
            log.skipped.append((str(path), f"PatientID: rows {lines} are one patient ({subject}) repeated identically; "
                                           "kept once"))
            continue
        log.problem(path, f"PatientID: rows {lines} are one patient ({subject}) with different values")
        keep[list(rows)] = False
        rejected.add(subject)
    lines = dict(zip(table["subject"][keep], np.flatnonzero(keep) + 2))
    table = table[keep].set_index("subject")
    table.attrs["rejected_subjects"] = sorted(rejected)  # skipped above: not to be reported again
    table.attrs["csv_lines"] = lines  # subject -> line number in the file, for messages
    return table


def _decode_csv(raw: bytes, path: Path, encoding: str | None) -> str:
    if encoding is not None:
        try:
            return raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise DataError(f"{path}: not decodable as {encoding!r} ({exc})") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    for fallback in ("cp1252", "latin-1"):  # spreadsheet exports of Western European sites
        try:
            text = raw.decode(fallback)
        except UnicodeDecodeError:
            continue
        logger.warning("%s: not UTF-8; read as %s (pass encoding=... to choose)", path.name, fallback)
        return text
    raise DataError(f"{path}: not UTF-8 text; expected UTF-8 (or pass encoding=...)")  # latin-1 never fails


SUBJECT_DIRS = ("NSCLC-Radiomics/*", "*")  # patient folders = PatientID (TCIA)
STORE_NAME = "nsclc-radiomics"


@dataclass(frozen=True)
class SeriesEntry:
    """One patient's CT series, as the item store decodes it (picklable; paths relative to the root)."""

    files: tuple[str, ...]       # the series' slice files
    folder: str                  # the series folder (messages)
    subject: str                 # pseudonymous key
    label: int                   # deadstatus.event
    histology: str
    mask: str | None = None      # truth/masks/<patient>.nii.gz (phantoms), with_masks only


def decode_series(entry: SeriesEntry, *, root: str, salt: str | None, window_center_hu: float,
                  window_width_hu: float, crop_size: int | None, image_size: int, with_masks: bool,
                  tumour_slices_only: bool, skip_bad: bool) -> list[dict[str, Any]]:
    """One series' slice items: HU -> window -> [-1, 1] -> centre crop -> resize (the item store's decode).

    Module level, so worker processes import it; the loader binds the settings with
    ``functools.partial``. ``decode_series.version``: bump it when the items it returns change.
    """
    # Workers are other processes: the privacy boundary (scrubbed messages and log lines) is set up again.
    with data_problems(root, subject_dirs=SUBJECT_DIRS, salt=salt):
        settings = dict(window_center_hu=window_center_hu, window_width_hu=window_width_hu, crop_size=crop_size,
                        image_size=image_size)
        log = BadInputLog(skip_bad=skip_bad, name="NSCLCRadiomics")  # slices skipped inside the series
        try:
            volume = load_series([Path(root) / f for f in entry.files], salt=salt, log=log)
        except DataError as exc:
            if not log.skipped:
                raise
            # the store counts one skip per series: the slices skipped before it failed go in its message
            before = "; ".join(reason if str(where) in reason else f"{where}: {reason}"
                               for where, reason in log.skipped)
            raise DataError(f"{exc} (after skipping {len(log.skipped)} bad slice(s): {before})") from exc
        slices = _prepare(volume.array, is_mask=False, **settings)
        mask = _load_mask(Path(root) / entry.mask, slices.shape[0], settings) if with_masks else None
        items = []
        for k in range(slices.shape[0]):
            if tumour_slices_only and mask[k].max() < 0.5:
                continue
            item = {"image": slices[k][None], "label": int(entry.label), "subject": entry.subject,
                    "meta": {"histology": entry.histology, "slice_index": k, "z_mm": float(volume.positions_mm[k]),
                             "n_slices": int(slices.shape[0]), "spacing_z_mm": float(volume.spacing_mm[0]),
                             "pixel_spacing_mm": float(volume.spacing_mm[1])}}
            if mask is not None:
                item["mask"] = mask[k][None]
            items.append(item)
        if items and log.skipped:  # slices skipped in a series that still decoded: counted by the loader
            items[0][SKIPPED_FIELD] = [[str(where), str(reason)] for where, reason in log.skipped]
        return items


decode_series.version = 1


def _prepare(array: np.ndarray, *, is_mask: bool, window_center_hu: float, window_width_hu: float,
             crop_size: int | None, image_size: int) -> np.ndarray:
    out = array if is_mask else window_hu(array, center_hu=window_center_hu, width_hu=window_width_hu)
    if crop_size:
        out = center_crop(out, min(crop_size, out.shape[-2], out.shape[-1]))
    if is_mask:
        return (nearest_resize(out, image_size) > 0.5).astype(np.float32)
    return resize(out, image_size).astype(np.float32)


def _load_mask(path: Path, n_slices: int, settings: dict) -> np.ndarray:
    mask, _ = read_nifti(path)
    if mask.shape[0] != n_slices:
        raise DataError(f"{path}: mask has {mask.shape[0]} slices, CT has {n_slices}")
    return _prepare(mask, is_mask=True, **settings)


SKIPPED_FIELD = "_skipped_slices"  # row field of a series' first item, moved into ``bad_input`` at load


class NSCLCRadiomics(ItemListDataset):
    """Axial CT slices of NSCLC-Radiomics patients with a clinical CSV row.

    Construction indexes the data (the clinical CSV and every DICOM header, no pixels) and then
    reads the slices from the item store (:func:`medgan.data.item_store.build_store`): decoded once
    per series, in ``num_workers`` processes, into ``<dataset work dir>/items``; every later run with
    the same files (path, size, modification time), patients and settings reads it back.

    Args:
        root: dataset folder (holding ``NSCLC-Radiomics/`` and the clinical CSV).
        split: None (all) or a name in the subject split (kept in the dataset's work folder).
        window_center_hu, window_width_hu: CT display window mapped to [-1, 1].
        crop_size: centre crop in pixels of the stored matrix (None = no crop); the study crops
            160 of 512. image_size: output side in pixels (study: 128).
        histologies: keep only these Histology values (lower-case; None keeps all).
        with_masks: add ``mask`` (1, H, W) from ``root/truth/masks/<PatientID>.nii.gz`` (phantoms).
        tumour_slices_only: keep only slices whose mask has tumour (needs ``with_masks``).
        split_fractions, split_seed: the subject split (written to the work folder, reused).
        skip_bad: skip (log and count in ``.bad_input``) unreadable slices/series, unreadable folders,
            CT series without a clinical row and clinical rows without a CT series, instead of raising.
        clinical_encoding: the CSV's text encoding; None reads UTF-8 and falls back to Windows-1252.
        num_workers: processes decoding series when the store is built (0: this process).
        progress: progress bars while indexing headers and building the store.

    Items: image (1, S, S) in [-1, 1]; label 0/1; subject key; meta
    {histology, slice_index, z_mm, n_slices, spacing_z_mm, pixel_spacing_mm}. ``rows`` holds the
    label, subject and meta of every slice in memory; pixels are read from disk per item.
    """

    @reads_data_root(subject_dirs=SUBJECT_DIRS)
    def __init__(self, root: str | os.PathLike, *, split: str | None = None,
                 window_center_hu: float = -600.0, window_width_hu: float = 1500.0,
                 crop_size: int | None = 160, image_size: int = 128,
                 histologies: Sequence[str] | None = None, with_masks: bool = False,
                 tumour_slices_only: bool = False, clinical_csv: str | os.PathLike | None = None,
                 split_fractions=(0.8, 0.1, 0.1), split_seed: int = 0, skip_bad: bool = False,
                 salt: str | None = None, progress: bool = True, clinical_encoding: str | None = None,
                 num_workers: int = 0):
        if tumour_slices_only and not with_masks:
            raise ValueError("NSCLCRadiomics: tumour_slices_only needs with_masks=True")
        root = Path(root)
        self.root = root
        self.bad_input = BadInputLog(skip_bad=skip_bad, name="NSCLCRadiomics")
        clinical_path = Path(clinical_csv) if clinical_csv else root / CLINICAL_CSV
        if not clinical_path.is_file() and (root / "NSCLC-Radiomics" / CLINICAL_CSV).is_file():
            clinical_path = root / "NSCLC-Radiomics" / CLINICAL_CSV
        clinical = read_clinical(clinical_path, salt=salt, encoding=clinical_encoding, log=self.bad_input)
        images_root = root / "NSCLC-Radiomics" if (root / "NSCLC-Radiomics").is_dir() else root
        series = find_series(images_root, modality="CT", salt=salt, log=self.bad_input, progress=progress)
        if not series:
            raise DataError(f"{images_root}: no CT series (Modality=CT) found")
        by_subject: dict[str, list] = {}
        for s in series:
            by_subject.setdefault(s.subject, []).append(s)
        for subject, found in by_subject.items():
            if len(found) > 1:  # keep the largest CT series of a patient, say so
                found.sort(key=lambda s: -len(s.files))
                for extra in found[1:]:
                    self.bad_input.skipped.append((str(extra.folder), "second CT series of the patient ignored"))
        subjects = sorted(by_subject)
        # both directions, each counted: CT without a clinical row, clinical row without CT
        rejected = set(clinical.attrs.get("rejected_subjects", ()))
        no_clinical = [s for s in subjects if s not in clinical.index and s not in rejected]
        for s in no_clinical:
            self.bad_input.problem(by_subject[s][0].folder, "patient has no row in the clinical CSV (PatientID)")
        lines = clinical.attrs.get("csv_lines") or {s: i + 2 for i, s in enumerate(clinical.index)}
        for s in sorted(set(clinical.index) - set(by_subject), key=lines.get):
            self.bad_input.problem(clinical_path, f"PatientID on row {lines[s]} ({s}) has no CT series under "
                                                  f"{images_root} (patient folder missing or unreadable)")
        subjects = [s for s in subjects if s in clinical.index]
        # split over every patient with CT and clinical data, before filters, so all settings agree
        self.split_map = subject_split(subjects, fractions=split_fractions, seed=split_seed,
                                       path=split_path(root, fractions=split_fractions, seed=split_seed)) if subjects else {}
        if histologies is not None:
            wanted = {h.lower() for h in histologies}
            subjects = [s for s in subjects if str(clinical.loc[s, "Histology"]).lower() in wanted]
        keep = filter_by_split(subjects, self.split_map, split)
        self.settings = dict(window_center_hu=window_center_hu, window_width_hu=window_width_hu,
                             crop_size=crop_size, image_size=image_size)
        entries = [self._entry(by_subject[s][0], clinical.loc[s], with_masks=with_masks)
                   for s in subjects if s in keep]
        if not entries:
            raise DataError(f"{root}: no slices left (split={split!r}, histologies={histologies})")
        decoder = functools.partial(decode_series, root=str(root), salt=salt, with_masks=with_masks,
                                    tumour_slices_only=tumour_slices_only, skip_bad=skip_bad, **self.settings)
        files = [root / f for e in entries for f in e.files]
        files += [root / e.mask for e in entries if e.mask and (root / e.mask).is_file()]
        store = build_store(entries, decoder, name=STORE_NAME, root=root, files=files, settings=self.settings,
                            bad_input=self.bad_input, where=lambda e: root / e.folder, num_workers=num_workers,
                            progress=progress, expected_items=sum(len(e.files) for e in entries))
        for row in store.rows:  # slices skipped inside series that decoded: counted like every other skip
            for where, reason in row.pop(SKIPPED_FIELD, ()):
                self.bad_input.skipped.append((where, reason))
        if not len(store):
            raise DataError(f"{root}: no slices left (split={split!r}, histologies={histologies}, "
                            f"tumour_slices_only={tumour_slices_only})")
        super().__init__(store)

    def _entry(self, series, row, *, with_masks: bool) -> SeriesEntry:
        root = self.root
        mask = None
        if with_masks:
            # The truth folder is keyed by the folder name under NSCLC-Radiomics (the phantom's PatientID).
            patient_folder = series.folder
            while patient_folder.parent.name != "NSCLC-Radiomics" and patient_folder.parent != patient_folder:
                patient_folder = patient_folder.parent
            mask = os.path.relpath(root / "truth" / "masks" / f"{patient_folder.name}.nii.gz", root)
        return SeriesEntry(files=tuple(os.path.relpath(f, root) for f in sorted(series.files)),
                           folder=os.path.relpath(series.folder, root), subject=series.subject,
                           label=int(row["deadstatus.event"]), histology=str(row["Histology"]), mask=mask)
