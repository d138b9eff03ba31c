"""How the CT study reads its data: NSCLC-Radiomics (``data.root``) or the chest CT phantom, split by patient.

Slices are windowed (``data.window_center_hu`` ± ``data.window_width_hu`` / 2 -> [-1, 1]), centre
cropped and resized, then split by patient into ``train`` (GAN training, feature-extractor
training, the "Real" row) and ``test`` (the reference set every row is scored against:
patients no generator has seen).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medgan.config import Params
from medgan.data.base import iter_batches
from medgan.data.nsclc_radiomics import NSCLCRadiomics
from medgan.data.phantoms import dataset_root

NOTEBOOK = "02_ct_fidelity_diversity"
SPLITS = {"train": "GAN training + 'Real' row", "test": "reference set"}


def data_root(P: Params) -> Path:
    """The real dataset (``data.root``) or the chest CT phantom generated from ``data.phantom``."""
    return dataset_root(P.data, "chest_ct")


@dataclass
class CTData:
    """Training and reference (held-out patients) slices.

    Both splits are item-store datasets: labels, subjects and meta come from their ``rows`` (in
    memory), pixels are read from disk per item, so nothing here holds a split's images unless a
    caller asks for a fixed subset (:meth:`images`) or streams them (:meth:`batches`).
    """

    root: Path
    train: NSCLCRadiomics
    test: NSCLCRadiomics
    is_phantom: bool

    def batches(self, split: str, *, batch_size: int, indices: Sequence[int] | None = None) -> Iterator[torch.Tensor]:
        """(B, 1, S, S) float32 batches in [-1, 1] of a split (or of its ``indices``), read as they are used."""
        return iter_batches(getattr(self, split), "image", batch_size=batch_size, indices=indices)

    def images(self, split: str, indices: Sequence[int] | None = None) -> torch.Tensor:
        """(N, 1, S, S) float32 in [-1, 1] of ``indices`` (default: the whole split) in memory: for
        small fixed subsets (grids, thumbnails), and the feature extractor's training set."""
        ds = getattr(self, split)
        order = range(len(ds)) if indices is None else indices
        return torch.stack([ds[int(i)]["image"] for i in order])

    def labels(self, split: str) -> np.ndarray:
        """(N,) int: 1 = patient died, 0 = alive (deadstatus.event), from the rows (no pixels read)."""
        return np.array([int(r["label"]) for r in getattr(self, split).rows], dtype=np.int64)

    def counts(self) -> pd.DataFrame:
        """Slices, patients and survival classes per split."""
        rows = {}
        for name, role in SPLITS.items():
            ds = getattr(self, name)
            y = self.labels(name)
            hist = pd.Series([r["meta"]["histology"] for r in ds.rows]).value_counts().to_dict()
            rows[name] = {"role": role, "patients": len(ds.subjects), "slices": len(ds),
                          "slices of patients who died": int(y.sum()), "slices of survivors": int((y == 0).sum()),
                          "histologies": ", ".join(f"{k}: {v}" for k, v in sorted(hist.items()))}
        return pd.DataFrame(rows).T


_DATA_CACHE: dict[str, CTData] = {}


def load_data(P: Params) -> CTData:
    """Train/test slices split by patient (``data.split_fractions``), indexed once per configuration.

    The first load decodes the series into the item store with ``data.num_workers`` processes;
    later loads (and runs) read it back.
    """
    key = json.dumps(P.data.to_dict(), sort_keys=True, default=str)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        root = data_root(P)
        d = P.data
        common = dict(window_center_hu=d.window_center_hu, window_width_hu=d.window_width_hu, crop_size=d.crop_size,
                      image_size=d.image_size, split_fractions=tuple(d.split_fractions), split_seed=d.split_seed,
                      skip_bad=d.skip_bad, num_workers=d.num_workers)
        train, test = (NSCLCRadiomics(root, split=s, **common) for s in ("train", "test"))
        overlap = set(train.subjects) & set(test.subjects)
        if overlap:  # the loader splits by patient; this guards the protocol itself
            raise RuntimeError(f"{root}: {len(overlap)} patients are in both train and test")
        _DATA_CACHE[key] = CTData(root=root, train=train, test=test, is_phantom=not d.root)
    return _DATA_CACHE[key]


class TrainingSlices(torch.utils.data.Dataset):
    """Items {"image", "label"} of a slice dataset (the GANs need nothing else; keeps collation cheap).

    Pixels are read per item from the dataset's item store (DataLoader workers each open it);
    labels come from its rows.
    """

    def __init__(self, slices: NSCLCRadiomics):
        self.slices = slices
        self.labels = np.array([int(r["label"]) for r in slices.rows], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, i: int) -> dict:
        store = getattr(self.slices, "store", None)
        image = store.read_array("image", i) if store is not None else self.slices.records[i]["image"]
        return {"image": torch.from_numpy(image), "label": int(self.labels[i])}

    def fingerprint(self) -> str:
        """The engine's content key: the slice dataset's (for a store, the digest of every stored byte)."""
        return f"slices-{self.slices.fingerprint()}"


def training_slices(P: Params) -> TrainingSlices:
    """The training patients' slices, as the GANs see them."""
    return TrainingSlices(load_data(P).train)
