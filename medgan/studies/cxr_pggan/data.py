"""How study 5 reads its chest X-rays: the CXR phantom or a real dataset, split by patient, and
the label views its models train on (binary, normal only, multi-label, severity), plus the
query sets its evaluation draws from the test split (Grad-CAM cases, AnoGAN queries)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medgan.config import Params
from medgan.data.base import ItemListDataset, subject_key
from medgan.data.chest_xray import ChestXray
from medgan.data.phantoms import dataset_root

NORMAL = "Normal"  # the multi-label classifier's first output


def data_root(P: Params) -> Path:
    """The real dataset (``data.root``) or the CXR phantom generated from ``data.phantom``."""
    return dataset_root(P.data, "cxr")


@dataclass
class CXRData:
    """The three patient-level splits, loaded once (multi-label over the 5 findings; masks on phantoms)."""

    root: Path
    findings: list[str]
    train: ChestXray
    val: ChestXray
    test: ChestXray
    is_phantom: bool

    def counts(self) -> pd.DataFrame:
        """Images, patients, normal/abnormal and per-finding counts per split."""
        rows = {}
        for name in ("train", "val", "test"):
            ds = getattr(self, name)
            abnormal = np.array([r["meta"]["abnormal"] for r in ds.records])
            labels = np.stack([r["label"] for r in ds.records])
            other = np.array([bool(r["meta"]["other_findings"]) for r in ds.records])
            rows[name] = {"images": len(ds), "patients": len(ds.subjects), "normal": int((abnormal == 0).sum()),
                          "abnormal": int(abnormal.sum()), **{f: int(labels[:, i].sum()) for i, f in enumerate(self.findings)},
                          "other (untrained) findings": int(other.sum())}
        return pd.DataFrame(rows).T


_DATA_CACHE: dict[str, CXRData] = {}


def load_data(P: Params) -> CXRData:
    """Load train/val/test of the CXR dataset (split by patient, ``data.split_fractions``).

    Decoded once per process and data configuration (the builders of every model share it).
    """
    key = json.dumps(P.data.to_dict(), sort_keys=True, default=str)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one configuration at a time: the images can be large
        _DATA_CACHE[key] = _load_data(P)
    return _DATA_CACHE[key]


def _load_data(P: Params) -> CXRData:
    root = data_root(P)
    # Lesion masks and severities exist where the phantom wrote its truth (also when data_root points at one).
    is_phantom = (root / "truth" / "findings.csv").is_file()
    common = dict(labels_csv=P.data.labels_csv, image_dir=P.data.image_dir, image_size=P.data.image_size,
                  findings=list(P.data.findings), split_fractions=tuple(P.data.split_fractions),
                  split_seed=P.data.split_seed, high_percentile=P.data.high_percentile,
                  view_positions=P.data.view_positions, with_masks=is_phantom, skip_bad=P.data.skip_bad)
    splits = {name: ChestXray(root, split=name, **common) for name in ("train", "val", "test")}
    return CXRData(root=root, findings=list(P.data.findings), is_phantom=is_phantom, **splits)


# --- label views -------------------------------------------------------------------------------
def _view(ds: ItemListDataset, keep, relabel, *, drop_mask: bool = True) -> ItemListDataset:
    records = []
    for r in ds.records:
        if not keep(r):
            continue
        new = {k: v for k, v in r.items() if not (drop_mask and k == "mask")}
        new["label"] = relabel(r)
        records.append(new)
    return ItemListDataset(records)


def binary_view(ds: ItemListDataset) -> ItemListDataset:
    """label = 1 abnormal (any finding), 0 normal."""
    return _view(ds, lambda r: True, lambda r: int(r["meta"]["abnormal"]))


def normal_view(ds: ItemListDataset, *, keep_mask: bool = False) -> ItemListDataset:
    """Normal images only (label 0)."""
    return _view(ds, lambda r: not r["meta"]["abnormal"], lambda r: 0, drop_mask=not keep_mask)


def multilabel_view(ds: ItemListDataset) -> ItemListDataset:
    """label = float32 (1 + K,) over (normal, findings...); images with untrained findings only are left out."""
    def relabel(r):
        return np.concatenate([[1.0 - r["meta"]["abnormal"]], r["label"]]).astype(np.float32)
    return _view(ds, lambda r: not r["meta"]["other_findings"], relabel)


def multilabel_names(P: Params) -> list[str]:
    """The multi-label classifier's outputs: normal, then the ``data.findings``."""
    return [NORMAL, *P.data.findings]


def severity_table(root: Path, findings: list[str]) -> dict[str, np.ndarray]:
    """Phantom truth: subject key -> severity (K,) in [0, 1] of each finding (0 when absent)."""
    truth = root / "truth" / "findings.csv"
    if not truth.is_file():
        raise FileNotFoundError(f"{truth}: severity truth exists for the phantom only")
    entries = pd.read_csv(root / "Data_Entry.csv", dtype={"Patient ID": str}, keep_default_na=False)
    subject_of = {row["Image Index"]: subject_key(f"cxr:{row['Patient ID']}") for _, row in entries.iterrows()}
    table = {s: np.zeros(len(findings), np.float32) for s in subject_of.values()}
    index = {f.lower(): i for i, f in enumerate(findings)}
    for _, row in pd.read_csv(truth).iterrows():
        i = index.get(str(row["finding"]).lower())
        if i is not None:
            table[subject_of[row["Image Index"]]][i] = float(row["severity"])
    return table


def severity_view(ds: ItemListDataset, table: dict[str, np.ndarray]) -> ItemListDataset:
    """label = the true severity (K,) of each finding (soft sigmoid targets)."""
    return _view(ds, lambda r: True, lambda r: table[r["subject"]].copy())


def pos_weights(labels: np.ndarray) -> list[float]:
    """negatives / positives per output (BCE ``pos_weight``), so rare findings are not ignored."""
    y = np.asarray(labels, dtype=np.float64)
    pos = y.sum(0)
    return [float(min(20.0, (len(y) - p) / p)) if p > 0 else 1.0 for p in pos]


# --- images and masks of records -----------------------------------------------------------------
def _images(records) -> torch.Tensor:
    return torch.stack([torch.as_tensor(np.asarray(r["image"], dtype=np.float32)) for r in records])


def _union_masks(records) -> torch.Tensor:
    """Union of all finding masks per record, (N, 1, H, W)."""
    return torch.stack([torch.as_tensor(np.asarray(r["mask"], dtype=np.float32)).amax(0, keepdim=True)
                        for r in records])


def images_of(ds: ItemListDataset) -> torch.Tensor:
    """All images of a dataset, (N, 1, H, W) in [-1, 1]."""
    return _images(ds.records)


def masks_of(ds: ItemListDataset) -> torch.Tensor:
    """Union of all finding masks per image, (N, 1, H, W)."""
    return _union_masks(ds.records)


def examples(ds: ItemListDataset, n: int = 16, *, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """``n`` images (normal and abnormal mixed) and their finding labels, for a sample grid."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(ds.records), size=min(n, len(ds.records)), replace=False)
    records = [ds.records[i] for i in idx]
    titles = [(r["meta"]["finding_labels"] or "normal").replace("|", "+")[:22] for r in records]
    return _images(records), titles


def gradcam_cases(data: CXRData, n: int) -> tuple[torch.Tensor, list[str], torch.Tensor | None]:
    """Half normal, half single-finding abnormal test images, their titles, and their lesion masks
    (N, H, W) on the phantom (None on real data)."""
    normals = [r for r in data.test.records if not r["meta"]["abnormal"]][: n // 2]
    abnormal = [r for r in data.test.records if r["meta"]["n_findings"] == 1][: n - len(normals)]
    records = normals + abnormal
    titles = [r["meta"]["finding_labels"] or "normal" for r in records]
    masks = _union_masks(records)[:, 0] if data.is_phantom else None
    return _images(records), titles, masks


# --- part (c) queries ------------------------------------------------------------------------------
@dataclass
class AnomalyQueries:
    normal_mean: torch.Tensor    # (1, 1, H, W) mean normal training image (the naive baseline's reference)
    normal_val: torch.Tensor     # (M, 1, H, W) normal validation images (thresholds)
    images: torch.Tensor         # (N, 1, H, W) test queries: normals, then single-finding images
    findings: list[str]          # (N,) "normal" or the finding's name
    masks: torch.Tensor | None   # (N, 1, H, W) lesion masks (phantom) or None
    trained: list[str]           # findings the supervised classifier was trained on

    def counts(self) -> pd.DataFrame:
        names, counts = np.unique(self.findings, return_counts=True)
        return pd.DataFrame({"queries": counts, "trained": [n in self.trained for n in names]}, index=names)

    @property
    def abnormal(self) -> np.ndarray:
        """(N,) bool: the query carries a finding."""
        return np.asarray(self.findings, dtype=object) != "normal"


def anomaly_queries(P: Params, data: CXRData) -> AnomalyQueries:
    """Normal validation images and test queries for AnoGAN: ``anogan.n_test_normal`` normals and up
    to ``anogan.n_per_finding`` test images per finding that carry that finding alone."""
    a = P.anogan
    normals = [r for r in data.train.records if not r["meta"]["abnormal"]]
    normal_mean = torch.as_tensor(sum(np.asarray(r["image"], dtype=np.float64) for r in normals) / len(normals),
                                  dtype=torch.float32)[None]
    normal_val = images_of(normal_view(data.val))[: a.n_val_normal]
    picked, names = [], []
    by_finding: dict[str, list[int]] = {}
    for i, r in enumerate(data.test.records):
        if not r["meta"]["abnormal"]:
            by_finding.setdefault("normal", []).append(i)
        elif r["meta"]["n_findings"] == 1:
            by_finding.setdefault(r["meta"]["finding_labels"], []).append(i)
    for name in ["normal"] + sorted(k for k in by_finding if k != "normal"):
        take = by_finding.get(name, [])[: a.n_test_normal if name == "normal" else a.n_per_finding]
        picked += take
        names += [name] * len(take)
    records = [data.test.records[i] for i in picked]
    masks = _union_masks(records) if data.is_phantom else None
    return AnomalyQueries(normal_mean=normal_mean, normal_val=normal_val, images=_images(records), findings=names,
                          masks=masks, trained=list(data.findings))
