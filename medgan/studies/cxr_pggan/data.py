"""How study 5 reads its chest X-rays: the CXR phantom or a real dataset, split by patient, and
the label views its models train on (binary, normal only, multi-label, severity), plus the
query sets its evaluation draws from the test split (Grad-CAM cases, AnoGAN queries).

Pixels stay on disk (the loader's item store): the views and query sets hold indices and labels
and read images per item or per batch, so nothing here grows with the dataset in memory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from medgan.config import Params
from medgan.data.base import iter_batches, subject_key
from medgan.data.chest_xray import ChestXray
from medgan.data.phantoms import dataset_root
from medgan.train.fingerprint import digest

NORMAL = "Normal"  # the multi-label classifier's first output


def data_root(P: Params) -> Path:
    """The real dataset (``data.root``) or the CXR phantom generated from ``data.phantom``."""
    return dataset_root(P.data, "cxr")


@dataclass
class CXRData:
    """The three patient-level splits, indexed once (multi-label over the 5 findings; masks on phantoms)."""

    root: Path
    findings: list[str]
    train: ChestXray
    val: ChestXray
    test: ChestXray
    is_phantom: bool

    def counts(self) -> pd.DataFrame:
        """Images, patients, normal/abnormal and per-finding counts per split (from the rows: no pixels read)."""
        rows = {}
        for name in ("train", "val", "test"):
            ds = getattr(self, name)
            abnormal = np.array([r["meta"]["abnormal"] for r in ds.rows])
            labels = ds.labels
            other = np.array([bool(r["meta"]["other_findings"]) for r in ds.rows])
            rows[name] = {"images": len(ds), "patients": len(ds.subjects), "normal": int((abnormal == 0).sum()),
                          "abnormal": int(abnormal.sum()), **{f: int(labels[:, i].sum()) for i, f in enumerate(self.findings)},
                          "other (untrained) findings": int(other.sum())}
        return pd.DataFrame(rows).T


_DATA_CACHE: dict[str, CXRData] = {}


def load_data(P: Params) -> CXRData:
    """Load train/val/test of the CXR dataset (split by patient, ``data.split_fractions``).

    Indexed once per process and data configuration (the builders of every model share it); the
    pixels are decoded once into the work directory's item store (``data.num_workers`` processes).
    """
    key = json.dumps(P.data.to_dict(), sort_keys=True, default=str)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one configuration at a time
        _DATA_CACHE[key] = _load_data(P)
    return _DATA_CACHE[key]


def _load_data(P: Params) -> CXRData:
    root = data_root(P)
    # Lesion masks and severities exist where the phantom wrote its truth (also when data_root points at one).
    is_phantom = (root / "truth" / "findings.csv").is_file()
    common = dict(labels_csv=P.data.labels_csv, image_dir=P.data.image_dir, image_size=P.data.image_size,
                  findings=list(P.data.findings), split_fractions=tuple(P.data.split_fractions),
                  split_seed=P.data.split_seed, high_percentile=P.data.high_percentile,
                  view_positions=P.data.view_positions, with_masks=is_phantom, skip_bad=P.data.skip_bad,
                  num_workers=P.data.num_workers)
    splits = {name: ChestXray(root, split=name, **common) for name in ("train", "val", "test")}
    return CXRData(root=root, findings=list(P.data.findings), is_phantom=is_phantom, **splits)


# --- label views -------------------------------------------------------------------------------
class LabelView(Dataset):
    """Some items of a :class:`ChestXray` split, relabelled: indices and labels in memory, pixels
    read from the split's item store per item (``drop``'s arrays are never read).

    ``rows`` are the kept items' row fields with the new label; ``fingerprint()`` (the engine's
    dataset identity) is the split's content digest with the indices and labels, so it costs nothing.
    """

    def __init__(self, base, indices: Sequence[int], labels: Sequence[Any], *, drop: Sequence[str] = ("mask",)):
        if len(indices) != len(labels):
            raise ValueError(f"{len(indices)} indices but {len(labels)} labels")
        self.base, self.indices, self.drop = base, [int(i) for i in indices], tuple(drop)
        self.labels = [np.asarray(v, dtype=np.float32) if np.ndim(v) else int(v) for v in labels]
        self.rows = [{**base.rows[i], "label": _plain(v)} for i, v in zip(self.indices, self.labels)]

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def subjects(self) -> list[str]:
        return sorted({r["subject"] for r in self.rows})

    def label_array(self) -> np.ndarray:
        """Every label stacked: (N,) int or (N, K) float32."""
        return np.stack(self.labels) if self.labels and np.ndim(self.labels[0]) else np.asarray(self.labels)

    def fingerprint(self) -> str:
        return digest({"base": self.base.fingerprint(), "indices": self.indices, "drop": self.drop,
                       "labels": [_plain(v) for v in self.labels]})[:16]

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.base.item(self.indices[i], without=self.drop)
        label = self.labels[i]
        item["label"] = torch.from_numpy(label.copy()) if isinstance(label, np.ndarray) else label
        return item


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


def _view(ds: ChestXray, keep: Callable[[dict], bool], relabel: Callable[[dict], Any], *,
          drop_mask: bool = True) -> LabelView:
    picked = [i for i, r in enumerate(ds.rows) if keep(r)]
    return LabelView(ds, picked, [relabel(ds.rows[i]) for i in picked], drop=("mask",) if drop_mask else ())


def binary_view(ds: ChestXray) -> LabelView:
    """label = 1 abnormal (any finding), 0 normal."""
    return _view(ds, lambda r: True, lambda r: int(r["meta"]["abnormal"]))


def normal_view(ds: ChestXray, *, keep_mask: bool = False) -> LabelView:
    """Normal images only (label 0)."""
    return _view(ds, lambda r: not r["meta"]["abnormal"], lambda r: 0, drop_mask=not keep_mask)


def multilabel_view(ds: ChestXray) -> LabelView:
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


def severity_view(ds: ChestXray, table: dict[str, np.ndarray]) -> LabelView:
    """label = the true severity (K,) of each finding (soft sigmoid targets)."""
    return _view(ds, lambda r: True, lambda r: table[r["subject"]].copy())


def pos_weights(labels: np.ndarray) -> list[float]:
    """negatives / positives per output (BCE ``pos_weight``), so rare findings are not ignored."""
    y = np.asarray(labels, dtype=np.float64)
    pos = y.sum(0)
    return [float(min(20.0, (len(y) - p) / p)) if p > 0 else 1.0 for p in pos]


# --- images and masks, read per batch ------------------------------------------------------------
class ImageSlices:
    """A lazy (N, C, H, W) stack of one array of some items of a split: ``len``, and ``[i:j]`` or
    ``[list of positions]`` reads those items only (float32 tensors). ``union=True`` takes the
    union over the channels (all finding masks -> one (1, H, W) lesion mask)."""

    def __init__(self, dataset: ChestXray, indices: Sequence[int], *, key: str = "image", union: bool = False):
        self.dataset, self.indices, self.key, self.union = dataset, [int(i) for i in indices], key, union

    def __len__(self) -> int:
        return len(self.indices)

    def _read(self, index: int) -> torch.Tensor:
        array = torch.from_numpy(np.asarray(self.dataset.store.read_array(self.key, index), dtype=np.float32))
        return array.amax(0, keepdim=True) if self.union else array

    def __getitem__(self, where) -> torch.Tensor:
        if isinstance(where, slice):
            positions = range(*where.indices(len(self)))
        elif np.ndim(where) == 0:
            return self._read(self.indices[int(where)])
        else:
            positions = np.flatnonzero(where) if np.asarray(where).dtype == bool else np.asarray(where, dtype=int)
        picked = [self._read(self.indices[int(p)]) for p in positions]
        if not picked:
            return torch.zeros(0, *self._read(self.indices[0]).shape) if self.indices else torch.zeros(0)
        return torch.stack(picked)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self._read(self.indices[0]).shape)


def examples(ds: ChestXray, n: int = 16, *, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """``n`` images (normal and abnormal mixed) and their finding labels, for a sample grid."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(ds), size=min(n, len(ds)), replace=False)
    titles = [(ds.rows[i]["meta"]["finding_labels"] or "normal").replace("|", "+")[:22] for i in idx]
    return ImageSlices(ds, idx)[:], titles


def gradcam_cases(data: CXRData, n: int) -> tuple[torch.Tensor, list[str], torch.Tensor | None]:
    """Half normal, half single-finding abnormal test images, their titles, and their lesion masks
    (N, H, W) on the phantom (None on real data)."""
    rows = data.test.rows
    normals = [i for i, r in enumerate(rows) if not r["meta"]["abnormal"]][: n // 2]
    abnormal = [i for i, r in enumerate(rows) if r["meta"]["n_findings"] == 1][: n - len(normals)]
    picked = normals + abnormal
    titles = [rows[i]["meta"]["finding_labels"] or "normal" for i in picked]
    masks = ImageSlices(data.test, picked, key="mask", union=True)[:][:, 0] if data.is_phantom else None
    return ImageSlices(data.test, picked)[:], titles, masks


def mean_image(ds: Dataset, *, batch_size: int = 64) -> torch.Tensor:
    """The mean image of a dataset, (1, C, H, W) float32, summed batch by batch in float64."""
    total, count = None, 0
    for batch in iter_batches(ds, "image", batch_size=batch_size):
        part = batch.double().sum(0)
        total = part if total is None else total + part
        count += len(batch)
    if total is None:
        raise ValueError("no images to average")
    return (total / count).float()[None]


# --- part (c) queries ------------------------------------------------------------------------------
@dataclass
class AnomalyQueries:
    normal_mean: torch.Tensor    # (1, 1, H, W) mean normal training image (the naive baseline's reference)
    normal_val: ImageSlices      # (M, 1, H, W) normal validation images (thresholds), read per batch
    images: ImageSlices          # (N, 1, H, W) test queries: normals, then single-finding images
    findings: list[str]          # (N,) "normal" or the finding's name
    masks: ImageSlices | None    # (N, 1, H, W) lesion masks (phantom) or None
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
    val_normals = [i for i, r in enumerate(data.val.rows) if not r["meta"]["abnormal"]][: a.n_val_normal]
    picked, names = [], []
    by_finding: dict[str, list[int]] = {}
    for i, r in enumerate(data.test.rows):
        if not r["meta"]["abnormal"]:
            by_finding.setdefault("normal", []).append(i)
        elif r["meta"]["n_findings"] == 1:
            by_finding.setdefault(r["meta"]["finding_labels"], []).append(i)
    for name in ["normal"] + sorted(k for k in by_finding if k != "normal"):
        take = by_finding.get(name, [])[: a.n_test_normal if name == "normal" else a.n_per_finding]
        picked += take
        names += [name] * len(take)
    masks = ImageSlices(data.test, picked, key="mask", union=True) if data.is_phantom else None
    return AnomalyQueries(normal_mean=mean_image(normal_view(data.train), batch_size=a.batch_size),
                          normal_val=ImageSlices(data.val, val_normals), images=ImageSlices(data.test, picked),
                          findings=names, masks=masks, trained=list(data.findings))
