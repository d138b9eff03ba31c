"""How the CT study reads its data: NSCLC-Radiomics (``data.root``) or the chest CT phantom, split by patient.

Slices are windowed (``data.window_center_hu`` ± ``data.window_width_hu`` / 2 -> [-1, 1]), centre
cropped and resized, then split by patient into ``train`` (GAN training, feature-extractor
training, the "Real" row) and ``test`` (the reference set every row is scored against:
patients no generator has seen).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medgan.config import Params
from medgan.data.nsclc_radiomics import NSCLCRadiomics
from medgan.data.phantoms import dataset_root
from medgan.train.fingerprint import tensor_digest

NOTEBOOK = "02_ct_fidelity_diversity"
SPLITS = {"train": "GAN training + 'Real' row", "test": "reference set"}


def data_root(P: Params) -> Path:
    """The real dataset (``data.root``) or the chest CT phantom generated from ``data.phantom``."""
    return dataset_root(P.data, "chest_ct")


@dataclass
class CTData:
    """Training and reference (held-out patients) slices."""

    root: Path
    train: NSCLCRadiomics
    test: NSCLCRadiomics
    is_phantom: bool

    def images(self, split: str) -> torch.Tensor:
        """(N, 1, S, S) float32 in [-1, 1] of a split."""
        ds = getattr(self, split)
        return torch.stack([torch.as_tensor(np.asarray(r["image"], dtype=np.float32)) for r in ds.records])

    def labels(self, split: str) -> np.ndarray:
        """(N,) int: 1 = patient died, 0 = alive (deadstatus.event)."""
        return np.array([int(r["label"]) for r in getattr(self, split).records])

    def counts(self) -> pd.DataFrame:
        """Slices, patients and survival classes per split."""
        rows = {}
        for name, role in SPLITS.items():
            ds = getattr(self, name)
            y = self.labels(name)
            hist = pd.Series([r["meta"]["histology"] for r in ds.records]).value_counts().to_dict()
            rows[name] = {"role": role, "patients": len(set(r["subject"] for r in ds.records)), "slices": len(ds),
                          "slices of patients who died": int(y.sum()), "slices of survivors": int((y == 0).sum()),
                          "histologies": ", ".join(f"{k}: {v}" for k, v in sorted(hist.items()))}
        return pd.DataFrame(rows).T


_DATA_CACHE: dict[str, CTData] = {}


def load_data(P: Params) -> CTData:
    """Train/test slices split by patient (``data.split_fractions``), decoded once per configuration."""
    key = json.dumps(P.data.to_dict(), sort_keys=True, default=str)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        root = data_root(P)
        d = P.data
        common = dict(window_center_hu=d.window_center_hu, window_width_hu=d.window_width_hu, crop_size=d.crop_size,
                      image_size=d.image_size, split_fractions=tuple(d.split_fractions), split_seed=d.split_seed,
                      skip_bad=d.skip_bad)
        train, test = (NSCLCRadiomics(root, split=s, **common) for s in ("train", "test"))
        overlap = set(r["subject"] for r in train.records) & set(r["subject"] for r in test.records)
        if overlap:  # the loader splits by patient; this guards the protocol itself
            raise RuntimeError(f"{root}: {len(overlap)} patients are in both train and test")
        _DATA_CACHE[key] = CTData(root=root, train=train, test=test, is_phantom=not d.root)
    return _DATA_CACHE[key]


class TrainingSlices(torch.utils.data.Dataset):
    """Items {"image", "label"} only (the GANs need nothing else; keeps collation cheap)."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": int(self.labels[i])}

    def fingerprint(self) -> str:
        """The engine's content key: a hash of the image and label arrays (cheaper than item by item)."""
        return f"{tensor_digest(self.images)}-{tensor_digest(np.asarray(self.labels))}"


def training_slices(P: Params) -> TrainingSlices:
    """The training patients' slices, as the GANs see them."""
    data = load_data(P)
    return TrainingSlices(data.images("train"), data.labels("train"))
