"""Chest X-ray loader: DICOM (12-bit, MONOCHROME1 inverted, modality LUT) or PNG, with a
ChestX-ray14-style labels CSV (``Image Index``, ``Finding Labels`` joined by ``|``,
``Patient ID``, ``View Position``).

Intensity chain (as in the thesis): modality LUT -> invert MONOCHROME1 -> clip to
[``low_percentile``, ``high_percentile``] (default min..99th) -> 8 bit (0..255, rounded) ->
resize to ``image_size`` -> /127.5 - 1. 8-bit PNGs are used as stored unless
``normalise_png=True``; 16-bit PNGs are always percentile-normalised.
Labels: float32 multi-label over ``findings`` (default the thesis's 5), or with
``label_mode="abnormal"`` an int (0 "No Finding", 1 otherwise); ``meta["abnormal"]`` always.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from medgan.data.base import BadInputLog, DataError, ItemListDataset, filter_by_split, subject_key
from medgan.data.dicom import pixel_values, read_dicom
from medgan.data.phantoms.cxr import ALL_FINDINGS, slug
from medgan.data.png_folders import read_png
from medgan.data.splits import split_path, subject_split
from medgan.data.transforms import resize

FINDINGS = ("Nodule", "Consolidation", "Interstitial Opacity", "Pleural Effusion", "Pneumothorax")
# spellings in other label sets that mean one of our findings (case-insensitive)
DEFAULT_FINDING_ALIASES = {"effusion": "Pleural Effusion", "interstitial opacities": "Interstitial Opacity"}
REQUIRED_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
NORMAL = "no finding"


def parse_findings(text: str, *, aliases: dict[str, str]) -> list[str]:
    """``"A|B"`` -> ["A", "B"] with aliases applied; "No Finding"/blank -> []."""
    out = []
    for part in str(text).split("|"):
        part = part.strip()
        if not part or part.lower() == NORMAL:
            continue
        out.append(aliases.get(part.lower(), part))
    return out


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
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
        lut_max = (2 ** int(getattr(ds, "BitsStored", 16)) - 1) * slope + intercept
        values = lut_max + intercept - values
    elif photometric != "MONOCHROME2":
        raise DataError(f"{path}: PhotometricInterpretation {photometric!r} not supported (MONOCHROME1/2)")
    return percentile_to_8bit(values, low_percentile=low_percentile, high_percentile=high_percentile)


class ChestXray(ItemListDataset):
    """Chest radiographs with multi-label findings.

    Args:
        root: folder with the labels CSV and ``image_dir``.
        labels_csv: file name in ``root`` (ChestX-ray14: ``Data_Entry_2017.csv``).
        image_dir: folder of images named by ``Image Index`` (DICOM or PNG).
        image_size: output side in px. findings: label order for the multi-label target.
        finding_aliases: lower-case spelling -> finding name.
        label_mode: "findings" (float32 vector) or "abnormal" (int 0/1).
        normal_only / abnormal_only: keep only "No Finding" / only abnormal images.
        view_positions: keep these View Position values (None keeps all).
        with_masks: add ``mask`` (K, S, S) over ``mask_findings`` from ``truth/masks`` (phantoms).
        split, split_fractions, split_seed: split by Patient ID (``root/splits_*.json``).
        skip_bad: skip (log, count) missing/unreadable images instead of raising.
        low_percentile, high_percentile: the 8-bit normalisation window (thesis: 99th).

    Items: image (1, S, S) in [-1, 1]; label (see label_mode); subject key; meta
    {abnormal, n_findings, finding_labels, view_position, other_findings}.
    """

    def __init__(self, root: str | os.PathLike, *, labels_csv: str = "Data_Entry.csv", image_dir: str = "images",
                 image_size: int = 64, findings: Sequence[str] = FINDINGS, finding_aliases: dict | None = None,
                 label_mode: str = "findings", normal_only: bool = False, abnormal_only: bool = False,
                 view_positions: Sequence[str] | None = None, with_masks: bool = False,
                 mask_findings: Sequence[str] | None = None, split: str | None = None,
                 split_fractions=(0.7, 0.1, 0.2), split_seed: int = 0, skip_bad: bool = False,
                 low_percentile: float = 0.0, high_percentile: float = 99.0, normalise_png: bool = False,
                 max_images: int | None = None, progress: bool = False):
        root = Path(root)
        if label_mode not in ("findings", "abnormal"):
            raise ValueError(f"label_mode must be 'findings' or 'abnormal', got {label_mode!r}")
        self.bad_input = BadInputLog(skip_bad=skip_bad, name="ChestXray")
        csv_path = root / labels_csv
        if not csv_path.is_file():
            raise DataError(f"{csv_path}: labels CSV not found")
        table = pd.read_csv(csv_path, dtype={"Patient ID": str}, keep_default_na=False)
        missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
        if missing:
            raise DataError(f"{csv_path}: missing column(s) {missing}")
        aliases = {k.lower(): v for k, v in {**DEFAULT_FINDING_ALIASES, **(finding_aliases or {})}.items()}
        self.findings = list(findings)
        self.mask_findings = list(mask_findings) if mask_findings is not None else None
        table["subject"] = [subject_key(f"cxr:{p}") for p in table["Patient ID"]]
        self.split_map = subject_split(sorted(set(table["subject"])), fractions=split_fractions, seed=split_seed,
                                       path=split_path(root, fractions=split_fractions, seed=split_seed))
        keep = filter_by_split(sorted(set(table["subject"])), self.split_map, split)
        table = table[table["subject"].isin(keep)]
        if view_positions is not None and "View Position" in table.columns:
            table = table[table["View Position"].isin(list(view_positions))]
        records = []
        lower_findings = {f.lower(): i for i, f in enumerate(self.findings)}
        for _, row in tqdm(list(table.iterrows()), desc="ChestXray", disable=not progress):
            names = parse_findings(row["Finding Labels"], aliases=aliases)
            abnormal = int(bool(names))
            if (normal_only and abnormal) or (abnormal_only and not abnormal):
                continue
            if max_images is not None and len(records) >= max_images:
                break
            path = root / image_dir / str(row["Image Index"])
            try:
                if not path.is_file():
                    raise DataError(f"{path}: file named in {labels_csv} (Image Index) is missing")
                levels = read_radiograph(path, low_percentile=low_percentile, high_percentile=high_percentile,
                                         normalise_png=normalise_png)
                mask = self._masks(root, path, levels.shape, image_size) if with_masks else None
            except DataError as exc:
                self.bad_input.reject(exc, path)
                continue
            vector = np.zeros(len(self.findings), np.float32)
            for name in names:
                if name.lower() in lower_findings:
                    vector[lower_findings[name.lower()]] = 1.0
            record = {"image": resize(levels, image_size)[None] / 127.5 - 1.0,
                      "label": vector if label_mode == "findings" else abnormal,
                      "subject": row["subject"],
                      "meta": {"abnormal": abnormal, "n_findings": len(names), "finding_labels": "|".join(names),
                               "view_position": str(row.get("View Position", "")),
                               "other_findings": "|".join(n for n in names if n.lower() not in lower_findings)}}
            if mask is not None:
                record["mask"] = mask
            records.append(record)
        if not records:
            raise DataError(f"{root}: no images left (split={split!r}, {self.bad_input.count} skipped)")
        super().__init__(records)

    def _masks(self, root: Path, path: Path, shape, image_size: int) -> np.ndarray:
        names = self.mask_findings or ALL_FINDINGS
        folder = root / "truth" / "masks" / path.stem
        masks = []
        for name in names:
            file = folder / f"{slug(name)}.png"
            m = (read_png(file) > 127).astype(np.float32) if file.is_file() else np.zeros(shape, np.float32)
            # any coverage counts, so lesions smaller than an output pixel keep a mask pixel
            masks.append((resize(m, image_size) > 0.05).astype(np.float32))
        return np.stack(masks)
