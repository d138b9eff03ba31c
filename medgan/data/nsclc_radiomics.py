"""NSCLC-Radiomics (TCIA Lung1) chest CT loader: 2D axial slices with the survival label.

Layout: ``<root>/NSCLC-Radiomics/LUNG1-XXX/<study>/<series>/*.dcm`` (folder names vary between
downloads, so the CT series is found by the Modality tag), and the clinical CSV
``NSCLC-Radiomics-Lung1.clinical-version3-Oct-2019.csv`` in ``root`` (or give ``clinical_csv``).
Each slice: HU -> window (centre/width, HU) -> [-1, 1] -> centre crop ``crop_size`` px ->
resize to ``image_size`` (area). Label: ``deadstatus.event`` (1 died, 0 alive).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from medgan import atomic
from medgan.config import dataset_work_dir
from medgan.data.base import BadInputLog, DataError, ItemListDataset, filter_by_split, subject_key
from medgan.data.dicom import find_series, load_series
from medgan.data.nifti import read_nifti
from medgan.data.splits import split_path, subject_split
from medgan.data.transforms import center_crop, nearest_resize, resize, window_hu

CLINICAL_CSV = "NSCLC-Radiomics-Lung1.clinical-version3-Oct-2019.csv"
REQUIRED_COLUMNS = ("PatientID", "Histology", "deadstatus.event")


def read_clinical(path: str | os.PathLike, *, salt: str | None = None) -> pd.DataFrame:
    """The clinical CSV indexed by pseudonymous subject key (PatientID column dropped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: clinical CSV not found")
    table = pd.read_csv(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}")
    bad = table["deadstatus.event"].isna() | ~table["deadstatus.event"].isin([0, 1])
    if bad.any():
        raise DataError(f"{path}: deadstatus.event must be 0/1 (row(s) {list(np.flatnonzero(bad) + 2)[:5]})")
    table["subject"] = [subject_key(str(p), salt=salt) for p in table["PatientID"]]
    return table.drop(columns=["PatientID"]).set_index("subject")


class NSCLCRadiomics(ItemListDataset):
    """Axial CT slices of NSCLC-Radiomics patients with a clinical CSV row.

    Args:
        root: dataset folder (holding ``NSCLC-Radiomics/`` and the clinical CSV).
        split: None (all) or a name in the subject split written at ``root/splits.json``.
        window_center_hu, window_width_hu: CT display window mapped to [-1, 1].
        crop_size: centre crop in pixels of the stored matrix (None = no crop); the study crops
            160 of 512. image_size: output side in pixels (study: 128).
        histologies: keep only these Histology values (lower-case; None keeps all).
        with_masks: add ``mask`` (1, H, W) from ``root/truth/masks/<PatientID>.nii.gz`` (phantoms).
        tumour_slices_only: keep only slices whose mask has tumour (needs ``with_masks``).
        split_fractions, split_seed: the subject split (written beside the data, reused).
        skip_bad: skip (log and count in ``.bad_input``) unreadable slices/series instead of raising.
        cache: keep decoded windowed slices in ``<dataset work dir>/cache/*.npz`` (``medgan.config.dataset_work_dir``) (written atomically).

    Items: image (1, S, S) in [-1, 1]; label 0/1; subject key; meta
    {histology, slice_index, z_mm, n_slices, spacing_z_mm, pixel_spacing_mm}.
    """

    def __init__(self, root: str | os.PathLike, *, split: str | None = None,
                 window_center_hu: float = -600.0, window_width_hu: float = 1500.0,
                 crop_size: int | None = 160, image_size: int = 128,
                 histologies: Sequence[str] | None = None, with_masks: bool = False,
                 tumour_slices_only: bool = False, clinical_csv: str | os.PathLike | None = None,
                 split_fractions=(0.8, 0.1, 0.1), split_seed: int = 0, skip_bad: bool = False,
                 salt: str | None = None, cache: bool = True, progress: bool = False):
        root = Path(root)
        self.root = root
        self.bad_input = BadInputLog(skip_bad=skip_bad, name="NSCLCRadiomics")
        clinical_path = Path(clinical_csv) if clinical_csv else root / CLINICAL_CSV
        if not clinical_path.is_file() and (root / "NSCLC-Radiomics" / CLINICAL_CSV).is_file():
            clinical_path = root / "NSCLC-Radiomics" / CLINICAL_CSV
        clinical = read_clinical(clinical_path, salt=salt)
        images_root = root / "NSCLC-Radiomics" if (root / "NSCLC-Radiomics").is_dir() else root
        series = find_series(images_root, modality="CT", salt=salt, log=self.bad_input)
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
        no_clinical = [s for s in subjects if s not in clinical.index]
        for s in no_clinical:
            self.bad_input.problem(by_subject[s][0].folder, "patient has no row in the clinical CSV (PatientID)")
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
        records = []
        for subject in tqdm([s for s in subjects if s in keep], desc="NSCLC-Radiomics", disable=not progress):
            chosen = by_subject[subject][0]
            try:
                slices, mask, volume_info = self._load_subject(chosen, with_masks=with_masks, salt=salt, cache=cache)
            except DataError as exc:
                self.bad_input.reject(exc, chosen.folder)
                continue
            row = clinical.loc[subject]
            for k in range(slices.shape[0]):
                if tumour_slices_only and (mask is None or mask[k].max() < 0.5):
                    continue
                record = {"image": slices[k][None], "label": int(row["deadstatus.event"]), "subject": subject,
                          "meta": {"histology": str(row["Histology"]), "slice_index": k,
                                   "z_mm": float(volume_info["z_mm"][k]), "n_slices": int(slices.shape[0]),
                                   "spacing_z_mm": float(volume_info["spacing_mm"][0]),
                                   "pixel_spacing_mm": float(volume_info["spacing_mm"][1])}}
                if with_masks:
                    record["mask"] = mask[k][None]
                records.append(record)
        if not records:
            raise DataError(f"{root}: no slices left (split={split!r}, histologies={histologies})")
        super().__init__(records)

    def _load_subject(self, series, *, with_masks: bool, salt, cache: bool):
        # the key changes when any file changes (size, mtime) or a setting changes
        stamps = sorted((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in series.files)
        key = hashlib.sha256(repr((series.series_uid, stamps, self.settings)).encode()).hexdigest()[:16]
        cache_path = dataset_work_dir(self.root) / "cache" / f"nsclc-{key}.npz"
        if cache and cache_path.is_file():
            stored = np.load(cache_path)
            slices, z_mm, spacing = stored["slices"], stored["z_mm"], tuple(stored["spacing_mm"])
        else:
            volume = load_series(series.files, salt=salt, log=self.bad_input)
            slices = self._prepare(volume.array, is_mask=False)
            z_mm, spacing = volume.positions_mm, volume.spacing_mm
            if cache:
                with atomic.atomic_path(cache_path) as tmp:
                    with open(tmp, "wb") as f:
                        np.savez(f, slices=slices, z_mm=z_mm, spacing_mm=np.array(spacing))
        mask = None
        if with_masks:
            mask = self._load_mask(series, slices.shape[0])
        return slices, mask, {"z_mm": z_mm, "spacing_mm": spacing}

    def _prepare(self, array: np.ndarray, *, is_mask: bool) -> np.ndarray:
        s = self.settings
        out = array if is_mask else window_hu(array, center_hu=s["window_center_hu"], width_hu=s["window_width_hu"])
        if s["crop_size"]:
            crop = min(s["crop_size"], out.shape[-2], out.shape[-1])
            out = center_crop(out, crop)
        if is_mask:
            return (nearest_resize(out, s["image_size"]) > 0.5).astype(np.float32)
        return resize(out, s["image_size"])

    def _load_mask(self, series, n_slices: int) -> np.ndarray:
        # The truth folder is keyed by the folder name under NSCLC-Radiomics (the phantom's PatientID).
        patient_folder = series.folder
        while patient_folder.parent.name != "NSCLC-Radiomics" and patient_folder.parent != patient_folder:
            patient_folder = patient_folder.parent
        path = self.root / "truth" / "masks" / f"{patient_folder.name}.nii.gz"
        mask, _ = read_nifti(path)
        if mask.shape[0] != n_slices:
            raise DataError(f"{path}: mask has {mask.shape[0]} slices, CT has {n_slices}")
        return self._prepare(mask, is_mask=True)
