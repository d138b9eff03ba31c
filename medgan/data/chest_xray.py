"""Chest X-ray loader: DICOM (12-bit, MONOCHROME1 inverted, modality LUT) or PNG, with a
ChestX-ray14-style labels CSV (``Image Index``, ``Finding Labels`` joined by ``|``,
``Patient ID``, ``View Position``).

Intensity chain (as in the thesis): modality LUT -> invert MONOCHROME1 -> clip to
[``low_percentile``, ``high_percentile``] (default min..99th) -> 8 bit (0..255, rounded) ->
resize to ``image_size`` -> /127.5 - 1. 8-bit PNGs are used as stored unless
``normalise_png=True``; 16-bit PNGs are always percentile-normalised.
Labels: float32 multi-label over ``findings`` (default the thesis's 5), or with
``label_mode="abnormal"`` an int (0 "No Finding", 1 otherwise); ``meta["abnormal"]`` always.

Building a dataset indexes the CSV and the files only; the pixels (and phantom masks) are
decoded once into an item store in the work directory (:mod:`medgan.data.item_store`) and read
back per item, so memory does not grow with the number of radiographs.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from medgan.data.base import (BadInputLog, DataError, ItemListDataset, filter_by_split, logger, read_csv_text,
                              reads_data_root, record_to_item, subject_key)
from medgan.data.dicom import pixel_values, read_dicom
from medgan.data.item_store import build_store
from medgan.data.phantoms.cxr import ALL_FINDINGS, slug
from medgan.data.png_folders import read_png
from medgan.data.splits import split_path, subject_split
from medgan.data.transforms import resize

FINDINGS = ("Nodule", "Consolidation", "Interstitial Opacity", "Pleural Effusion", "Pneumothorax")
# Every label of ChestX-ray14, CheXpert, MIMIC-CXR (CheXpert labeller), VinDr-CXR and the phantom,
# as spelled there (lower-case, spaces collapsed) -> the finding it means. Labels that are one of the
# study's findings map onto it; the rest are kept as named other findings. A label in no entry here
# (nor in ``finding_aliases``) is unmatched: see :func:`match_findings`.
FINDING_SPELLINGS = {
    # the study's five
    "nodule": "Nodule",                                          # ChestX-ray14
    "nodule/mass": "Nodule",                                     # VinDr-CXR: one label for both, cannot be split
    "consolidation": "Consolidation",                            # all four
    "interstitial opacity": "Interstitial Opacity",              # phantom, thesis
    "interstitial opacities": "Interstitial Opacity",
    "ild": "Interstitial Opacity",                               # VinDr-CXR
    "interstitial lung disease": "Interstitial Opacity",         # VinDr-CXR (long form)
    "interstitial lung disease (ild)": "Interstitial Opacity",
    "pleural effusion": "Pleural Effusion",                      # CheXpert, MIMIC-CXR; VinDr-CXR "Pleural effusion"
    "effusion": "Pleural Effusion",                              # ChestX-ray14
    "pneumothorax": "Pneumothorax",                              # all four
    # ChestX-ray14's others (Mass, >3 cm, is its own label there; map it with finding_aliases if wanted)
    "atelectasis": "Atelectasis", "cardiomegaly": "Cardiomegaly", "infiltration": "Infiltration",
    "mass": "Mass", "pneumonia": "Pneumonia", "emphysema": "Emphysema", "fibrosis": "Fibrosis",
    "pleural_thickening": "Pleural Thickening", "hernia": "Hernia", "edema": "Edema",
    # CheXpert / MIMIC-CXR's others
    "enlarged cardiomediastinum": "Enlarged Cardiomediastinum", "lung opacity": "Lung Opacity",
    "lung lesion": "Lung Lesion", "pleural other": "Pleural Other", "fracture": "Fracture",
    "support devices": "Support Devices",
    # VinDr-CXR's others
    "aortic enlargement": "Aortic Enlargement", "calcification": "Calcification",
    "clavicle fracture": "Clavicle Fracture", "enlarged pa": "Enlarged PA", "lung cavity": "Lung Cavity",
    "lung cyst": "Lung Cyst", "mediastinal shift": "Mediastinal Shift", "pleural thickening": "Pleural Thickening",
    "rib fracture": "Rib Fracture", "other lesion": "Other Lesion", "copd": "COPD", "lung tumor": "Lung Tumor",
    "tuberculosis": "Tuberculosis", "other disease": "Other Disease", "other diseases": "Other Disease",
    # the phantom's untrained findings (Rib Fracture, Calcification above)
    "pneumoperitoneum": "Pneumoperitoneum", "mediastinal widening": "Mediastinal Widening",
    "subcutaneous emphysema": "Subcutaneous Emphysema",
}
REQUIRED_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
NORMAL = "no finding"
LABELS_COLUMN = "Finding Labels"


def _norm(name: str) -> str:
    return re.sub(r"\s+", " ", str(name).strip().lower())


def _loose(name: str) -> str:
    """A spelling with case, ``_ - /`` and plural ``s`` ignored: only to *find* near misses."""
    words = re.sub(r"[\s_\-/]+", " ", _norm(name)).split()
    return " ".join(w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words)


def parse_findings(text: str, *, aliases: dict[str, str]) -> list[str]:
    """``"A|B"`` -> ["A", "B"] with aliases (lower-case spelling -> name) applied; "No Finding"/blank -> []."""
    out = []
    for part in str(text).split("|"):
        part = part.strip()
        if not part or _norm(part) == NORMAL:
            continue
        out.append(aliases.get(_norm(part), part))
    return out


def match_findings(label_texts: Sequence[str], findings: Sequence[str], aliases: dict[str, str]) -> dict:
    """Explicit matching of the raw labels of a ``Finding Labels`` column.

    ``aliases``: lower-case spelling -> finding name (:data:`FINDING_SPELLINGS` plus the user's).
    Returns ``{"matched": {finding: [raw]}, "other": {name: [raw]}, "near_misses": {finding: [raw]},
    "unmatched": [raw], "mapping": {raw: name}}``: ``matched`` labels set a study finding, ``other``
    are known findings outside ``findings``, ``near_misses`` are labels in no table that look like a
    study finding (``Pleural_Effusion``, ``Nodules``) and ``unmatched`` the remaining unknown ones.
    Neither near misses nor unmatched labels set any target.
    """
    wanted = {_norm(f): f for f in findings}
    matched = {f: [] for f in findings}
    other, near = {}, {f: [] for f in findings}
    unmatched, mapping = [], {}
    raws = {part.strip() for text in label_texts for part in str(text).split("|")}
    for raw in sorted(r for r in raws if r and _norm(r) != NORMAL):
        name = aliases.get(_norm(raw))
        if name is None and _norm(raw) in wanted:
            name = wanted[_norm(raw)]
        if name is not None:
            mapping[raw] = name
            if _norm(name) in wanted:
                matched[wanted[_norm(name)]].append(raw)
            else:
                other.setdefault(name, []).append(raw)
            continue
        close = [f for f in findings if _loose(f) in _loose(raw) or _loose(raw) in _loose(f)
                 or difflib.SequenceMatcher(None, _loose(f), _loose(raw)).ratio() >= 0.85]
        for finding in close:
            near[finding].append(raw)
        if not close:
            unmatched.append(raw)
    return {"matched": matched, "other": other, "near_misses": {k: v for k, v in near.items() if v},
            "unmatched": unmatched, "mapping": mapping}



def clean_labels_table(table: pd.DataFrame, csv_path: Path, *, aliases: dict[str, str],
                       bad_input: BadInputLog) -> tuple[pd.DataFrame, int]:
    """Drop the rows a labels CSV cannot stand behind; returns (table, identical duplicates collapsed).

    A blank ``Image Index`` or ``Patient ID`` (a blank ID must never merge images into one subject),
    and an ``Image Index`` listed twice with different findings, Patient ID or View Position, are
    bad input (``bad_input.problem``: a DataError, or each skipped and counted). Rows repeated with
    the same values are collapsed to one (``|`` order and finding spelling ignored).
    """
    table = table.assign(**{c: table[c].str.strip() for c in ("Image Index", "Patient ID")},
                         _row=np.arange(len(table)) + 2)  # CSV line numbers (header = line 1)
    bad_rows = set()
    for column in ("Image Index", "Patient ID"):
        for _, row in table[table[column] == ""].iterrows():
            where = f"Image Index {row['Image Index']!r}, " if column == "Patient ID" else ""
            bad_input.problem(csv_path, f"{column}: blank in row {row['_row']} ({where}a blank ID "
                                        f"would merge unrelated images)")
            bad_rows.add(row["_row"])
    table = table[~table["_row"].isin(bad_rows)]
    compared = ["_findings", "Patient ID"] + (["View Position"] if "View Position" in table.columns else [])
    table = table.assign(_findings=["|".join(sorted(set(parse_findings(t, aliases=aliases))))
                                    for t in table[LABELS_COLUMN]])
    identical = table.duplicated(subset=["Image Index", *compared], keep="first")
    collapsed = int(identical.sum())
    if collapsed:
        logger.warning("%s: %d repeated Image Index row(s) with identical labels collapsed", csv_path, collapsed)
    table = table[~identical]
    repeated = table[table.duplicated(subset="Image Index", keep=False)]
    drop = set()
    for index, rows in repeated.groupby("Image Index", sort=True):
        differing = [LABELS_COLUMN if c == "_findings" else c for c in compared if rows[c].nunique() > 1]
        bad_input.problem(csv_path, f"{', '.join(differing)}: Image Index {index!r} listed in rows "
                                    f"{rows['_row'].tolist()} with contradictory values")
        drop.update(rows["_row"])
    return table[~table["_row"].isin(drop)].drop(columns=["_row", "_findings"]), collapsed


def percentile_to_8bit(values: np.ndarray, *, low_percentile: float, high_percentile: float) -> np.ndarray:
    """Clip to the given percentiles and quantise to 0..255 (float32 holding integers)."""
    low, high = np.percentile(values, [low_percentile, high_percentile])
    if high <= low:
        return np.zeros(values.shape, np.float32)
    return np.round(np.clip((values - low) / (high - low), 0, 1) * 255).astype(np.float32)


def read_radiograph(path: Path, *, low_percentile: float, high_percentile: float,
                    normalise_png: bool) -> np.ndarray:
    """One radiograph as 8-bit levels (H, W) float32 in 0..255 (bright = dense)."""
    if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        pixels = read_png(path)
        if pixels.dtype == np.uint8 and not normalise_png:
            return pixels.astype(np.float32)
        return percentile_to_8bit(pixels.astype(np.float32), low_percentile=low_percentile, high_percentile=high_percentile)
    ds = read_dicom(path)
    values = pixel_values(ds, path)
    if values.ndim != 2:
        raise DataError(f"{path}: expected one grayscale frame, pixel array has shape {values.shape}")
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "MONOCHROME1":  # low values are bright: flip around the LUT's range
        try:
            slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
            intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
            lut_max = (2 ** int(getattr(ds, "BitsStored", 16)) - 1) * slope + intercept
        except (TypeError, ValueError) as exc:
            raise DataError(f"{path}: RescaleSlope/RescaleIntercept/BitsStored not numeric ({exc})") from exc
        values = lut_max + intercept - values
    elif photometric != "MONOCHROME2":
        raise DataError(f"{path}: PhotometricInterpretation {photometric!r} not supported (MONOCHROME1/2)")
    return percentile_to_8bit(values, low_percentile=low_percentile, high_percentile=high_percentile)


@dataclass(frozen=True)
class RadiographEntry:
    """One radiograph to decode (picklable, for the item store's workers): its file, the masks the
    phantom wrote for it (``None`` per finding without one), and its finished row fields."""

    path: str
    masks: tuple[str | None, ...] | None
    label: Any
    subject: str
    meta: tuple[tuple[str, Any], ...]


def decode_radiograph(entry: RadiographEntry, *, image_size: int, low_percentile: float, high_percentile: float,
                      normalise_png: bool) -> list[dict[str, Any]]:
    """entry -> [item]: the intensity chain of the module docstring, resized to ``image_size``; the
    item store's decode function (module level, so its workers import it; settings by
    ``functools.partial``)."""
    levels = read_radiograph(Path(entry.path), low_percentile=low_percentile, high_percentile=high_percentile,
                             normalise_png=normalise_png)
    item = {"image": resize(levels, image_size)[None] / 127.5 - 1.0, "label": entry.label,
            "subject": entry.subject, "meta": dict(entry.meta)}
    if entry.masks is not None:
        item["mask"] = _masks(entry.masks, image_size)
    return [item]


decode_radiograph.version = 1  # bump when the decoded items change: old stores are rebuilt


def _masks(files: Sequence[str | None], size: int) -> np.ndarray:
    """(K, S, S) uint8 0/1 (binary: a quarter of float32's bytes on disk; items give float32)."""
    masks = np.zeros((len(files), size, size), np.uint8)
    for k, file in enumerate(files):
        if file is not None:
            m = (read_png(Path(file)) > 127).astype(np.float32)
            # any coverage counts, so lesions smaller than an output pixel keep a mask pixel
            masks[k] = resize(m, size) > 0.05
    return masks


# the labels file as the ChestX-ray14 releases name it, newest first
CHESTXRAY14_LABELS = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv", "Data_Entry.csv")


def find_labels_csv(root: Path, name: str) -> Path:
    """``root / name`` when it exists; else the one ChestX-ray14 labels file present
    (``Data_Entry_2017_v2020.csv`` in the current release, ``Data_Entry_2017.csv`` before)."""
    if (root / name).is_file():
        return root / name
    found = [root / n for n in CHESTXRAY14_LABELS if (root / n).is_file()]
    if len(found) > 1:
        raise DataError(f"{root / name}: not found, and {', '.join(p.name for p in found)} are all present; set "
                        f"data.labels_csv to the one to use")
    if found:
        logger.info("%s: not found; reading %s, the ChestX-ray14 labels file", root / name, found[0].name)
        return found[0]
    return root / name  # read_csv_text names the missing file


class ChestXray(ItemListDataset):
    """Chest radiographs with multi-label findings.

    Args:
        root: folder with the labels CSV and ``image_dir``.
        labels_csv: file name in ``root``; when it is missing, the ChestX-ray14 release's own name
            (``Data_Entry_2017_v2020.csv`` or ``Data_Entry_2017.csv``) is found (:func:`find_labels_csv`).
        image_dir: folder of images named by ``Image Index`` (DICOM or PNG).
        image_size: output side in px. findings: label order for the multi-label target.
        finding_aliases: lower-case spelling -> finding name, added to :data:`FINDING_SPELLINGS`.
            A label in neither that looks like a study finding (``Nodules``, ``Pleural_Effusion``)
            raises DataError naming the CSV, the column and the labels, whatever ``skip_bad``
            says; other unknown labels are logged and kept as other findings.
        label_mode: "findings" (float32 vector) or "abnormal" (int 0/1).
        normal_only / abnormal_only: keep only "No Finding" / only abnormal images.
        view_positions: keep these View Position values (None keeps all).
        with_masks: add ``mask`` (K, S, S) over ``mask_findings`` from ``truth/masks`` (phantoms).
        split, split_fractions, split_seed: split by Patient ID (the split file is in the work dir).
        skip_bad: skip (log, count in ``.bad_input``) missing/unreadable images, rows with a blank
            Image Index or Patient ID and Image Index rows with contradictory values, instead of
            raising. Identical repeated rows are collapsed (``.duplicates_collapsed``).
        low_percentile, high_percentile: the 8-bit normalisation window (thesis: 99th).
        num_workers: processes decoding the images when the item store is first built.
        progress: progress bars while indexing and decoding.

    Construction indexes the CSV and the files (cheap); the pixels are decoded once into an item
    store in the work directory (:mod:`medgan.data.item_store`) and read from disk per item, so
    memory does not grow with the dataset. Loops over labels and metadata use :attr:`rows` (or
    :attr:`labels`), which read no pixels.

    Items: image (1, S, S) in [-1, 1]; label (see label_mode); subject key; meta
    {abnormal, n_findings, finding_labels, view_position, other_findings}. ``.label_report`` holds
    the label matching (:func:`match_findings`).
    """

    @reads_data_root(subject_dirs=("{image_dir}/*",))  # per-patient image folders, where an export has them
    def __init__(self, root: str | os.PathLike, *, labels_csv: str = "Data_Entry.csv", image_dir: str = "images",
                 image_size: int = 64, findings: Sequence[str] = FINDINGS, finding_aliases: dict | None = None,
                 label_mode: str = "findings", normal_only: bool = False, abnormal_only: bool = False,
                 view_positions: Sequence[str] | None = None, with_masks: bool = False,
                 mask_findings: Sequence[str] | None = None, split: str | None = None,
                 split_fractions=(0.7, 0.1, 0.2), split_seed: int = 0, skip_bad: bool = False,
                 low_percentile: float = 0.0, high_percentile: float = 99.0, normalise_png: bool = False,
                 max_images: int | None = None, num_workers: int = 0, progress: bool = True):
        root = Path(root)
        if label_mode not in ("findings", "abnormal"):
            raise ValueError(f"label_mode must be 'findings' or 'abnormal', got {label_mode!r}")
        self.label_mode = label_mode
        self.bad_input = BadInputLog(skip_bad=skip_bad, name="ChestXray")
        csv_path = find_labels_csv(root, labels_csv)
        labels_csv = csv_path.name
        table = read_csv_text(csv_path, "labels CSV")
        missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
        if missing:
            raise DataError(f"{csv_path}: missing column(s) {missing}")
        aliases = {_norm(k): v for k, v in {**FINDING_SPELLINGS, **(finding_aliases or {})}.items()}
        self.findings = list(findings)
        self.label_report = match_findings(table[LABELS_COLUMN].tolist(), self.findings, aliases)
        if self.label_report["near_misses"]:
            near = "; ".join(f"{raw} (like {finding!r})" for finding, raws in self.label_report["near_misses"].items()
                             for raw in raws)
            raise DataError(f"{csv_path}: {LABELS_COLUMN}: label(s) match no finding: {near}; add each to "
                            f"finding_aliases (lower-case spelling -> finding) if it means that finding")
        if self.label_report["unmatched"]:
            logger.warning("%s: %s: label(s) %s match no known finding; kept as other findings",
                           csv_path, LABELS_COLUMN, self.label_report["unmatched"])
        unseen = [f for f, raws in self.label_report["matched"].items() if not raws]
        if unseen:
            logger.warning("%s: %s: no label maps to finding(s) %s: their targets are all zero",
                           csv_path, LABELS_COLUMN, unseen)
        table, self.duplicates_collapsed = clean_labels_table(table, csv_path, aliases=aliases,
                                                              bad_input=self.bad_input)
        self.mask_findings = list(mask_findings) if mask_findings is not None else None
        table["subject"] = [subject_key(f"cxr:{p}") for p in table["Patient ID"]]
        self.split_map = subject_split(sorted(set(table["subject"])), fractions=split_fractions, seed=split_seed,
                                       path=split_path(root, fractions=split_fractions, seed=split_seed))
        keep = filter_by_split(sorted(set(table["subject"])), self.split_map, split)
        table = table[table["subject"].isin(keep)]
        if view_positions is not None and "View Position" in table.columns:
            table = table[table["View Position"].isin(list(view_positions))]
        entries = self._index(root, table, image_dir=image_dir, labels_csv=labels_csv, aliases=aliases,
                              label_mode=label_mode, normal_only=normal_only, abnormal_only=abnormal_only,
                              with_masks=with_masks, max_images=max_images, progress=progress)
        if not entries:
            raise DataError(f"{root}: no images left (split={split!r}, {self.bad_input.count} skipped)")
        settings = {"image_size": int(image_size), "low_percentile": float(low_percentile),
                    "high_percentile": float(high_percentile), "normalise_png": bool(normalise_png)}
        files = [e.path for e in entries] + [m for e in entries for m in (e.masks or ()) if m is not None]
        store = build_store(entries, functools.partial(decode_radiograph, **settings), name="ChestXray", root=root,
                            files=files, settings=settings, bad_input=self.bad_input, where=lambda e: e.path,
                            num_workers=num_workers, progress=progress)
        super().__init__(store)

    def _index(self, root: Path, table: pd.DataFrame, *, image_dir: str, labels_csv: str, aliases: dict,
               label_mode: str, normal_only: bool, abnormal_only: bool, with_masks: bool,
               max_images: int | None, progress: bool) -> list[RadiographEntry]:
        """One entry per kept CSV row whose image file exists (a missing file is bad input); no pixels read."""
        lower_findings = {f.lower(): i for i, f in enumerate(self.findings)}
        mask_names = self.mask_findings or ALL_FINDINGS
        entries: list[RadiographEntry] = []
        rows = table[["Image Index", "Finding Labels", "subject"]
                     + (["View Position"] if "View Position" in table.columns else [])].to_dict("records")
        for row in tqdm(rows, desc="ChestXray: indexing", disable=not progress):
            names = parse_findings(row["Finding Labels"], aliases=aliases)
            abnormal = int(bool(names))
            if (normal_only and abnormal) or (abnormal_only and not abnormal):
                continue
            if max_images is not None and len(entries) >= max_images:
                break
            path = root / image_dir / str(row["Image Index"])
            if not path.is_file():
                self.bad_input.reject(DataError(f"{path}: file named in {labels_csv} (Image Index) is missing"), path)
                continue
            vector = [0.0] * len(self.findings)
            for name in names:
                if name.lower() in lower_findings:
                    vector[lower_findings[name.lower()]] = 1.0
            masks = None
            if with_masks:
                folder = root / "truth" / "masks" / path.stem
                masks = tuple(str(f) if f.is_file() else None for f in (folder / f"{slug(n)}.png" for n in mask_names))
            meta = {"abnormal": abnormal, "n_findings": len(names), "finding_labels": "|".join(names),
                    "view_position": str(row.get("View Position", "")),
                    "other_findings": "|".join(n for n in names if n.lower() not in lower_findings)}
            entries.append(RadiographEntry(path=str(path), masks=masks,
                                           label=vector if label_mode == "findings" else abnormal,
                                           subject=row["subject"], meta=tuple(meta.items())))
        return entries

    @property
    def labels(self) -> np.ndarray:
        """Every item's label from the rows (no pixels read): (N, K) float32, or (N,) int64 0/1."""
        if self.label_mode == "findings":
            return np.array([r["label"] for r in self.rows], dtype=np.float32).reshape(len(self.rows), -1)
        return np.array([r["label"] for r in self.rows], dtype=np.int64)

    def item(self, index: int, *, without: Sequence[str] = ()) -> dict[str, Any]:
        """Item ``index`` without the array keys in ``without`` (they are not read from disk)."""
        if index < 0:
            index += len(self)
        record = {key: self.store.read_array(key, index) for key in self.store.arrays if key not in without}
        record.update(self.rows[index])
        if isinstance(record["label"], list):  # the multi-label vector is a row field (metadata loops need it)
            record["label"] = np.asarray(record["label"], dtype=np.float32)
        return record_to_item(record)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.item(index)
