"""How the CT study reads its data: NSCLC-Radiomics (``data.root``) or the chest CT phantom, split two ways.

Slices are windowed (``data.window_center_hu`` ± ``data.window_width_hu`` / 2 -> [-1, 1]), centre
cropped and resized, then split by ``data.split``:

- ``patient`` (ours): by patient into ``train`` (GAN training, feature-extractor training, the
  "Real" row) and ``test`` (the reference set every row is scored against: patients no generator
  has seen).
- ``slice`` (the paper's protocol, Section 3.1): the GANs and the extractor train on *all* slices;
  the reference set and the "Real" row are two random halves of all slices. Neighbouring slices of
  one patient are near copies and sit on both sides, so the Real row's distances are small.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medgan.config import Params
from medgan.data.base import iter_batches
from medgan.data.nsclc_radiomics import NSCLCRadiomics
from medgan.data.phantoms import dataset_root

NOTEBOOK = "02_ct_fidelity_diversity"
SPLIT_MODES = ("patient", "slice")
ROLES = {  # split mode -> the role of each set of CTData
    "patient": {"train": "GAN + extractor training, 'Real' row", "test": "reference set (held-out patients)"},
    "slice": {"train": "GAN + extractor training (all slices)", "test": "reference set (random half of all slices)",
              "real": "'Real' row (the other half)"},
}


def data_root(P: Params) -> Path:
    """The real dataset (``data.root``) or the chest CT phantom generated from ``data.phantom``."""
    return dataset_root(P.data, "chest_ct")


class SliceView(torch.utils.data.Dataset):
    """Slices ``indices`` of the concatenation of loaded datasets, read from their item stores (no copy).

    Has what the study's code uses of a loader: ``rows``, ``subjects``, items ``{"image", "label",
    "subject", "meta"}``, :meth:`image_array` and a cheap ``fingerprint()`` (the parts' with the indices).
    """

    def __init__(self, parts: Sequence[NSCLCRadiomics], indices: Sequence[int] | None = None):
        self.parts = list(parts)
        self._where = [(k, i) for k, part in enumerate(self.parts) for i in range(len(part))]
        total = len(self._where)
        self.indices = np.arange(total, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= total):
            raise IndexError(f"SliceView: indices must lie in [0, {total})")
        self.rows = [self.parts[k].rows[i] for k, i in (self._where[j] for j in self.indices)]

    def __len__(self) -> int:
        return len(self.indices)

    def _locate(self, index: int) -> tuple[int, int]:
        return self._where[int(self.indices[index])]

    def __getitem__(self, index: int) -> dict:
        k, i = self._locate(index)
        return self.parts[k][i]

    def image_array(self, index: int) -> np.ndarray:
        """(1, S, S) float32 pixels of slice ``index``, straight from the store."""
        k, i = self._locate(index)
        part = self.parts[k]
        store = getattr(part, "store", None)
        return store.read_array("image", i) if store is not None else part.records[i]["image"]

    @property
    def subjects(self) -> list[str]:
        return sorted({r["subject"] for r in self.rows})

    def subset(self, indices: Sequence[int]) -> "SliceView":
        """The view of this view's slices ``indices``."""
        return SliceView(self.parts, self.indices[np.asarray(indices, dtype=np.int64)])

    def fingerprint(self) -> str:
        h = hashlib.sha256("|".join(p.fingerprint() for p in self.parts).encode())
        h.update(np.ascontiguousarray(self.indices).tobytes())
        return f"view-{h.hexdigest()[:16]}"


def slice_halves(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The paper's random halves of ``n`` slices: (reference, real) sorted indices, ``n // 2`` and the rest.

    Section 3.1: 6,080 reference slices drawn at random from the 12,160, the other 6,080 scored as "Real".
    """
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2:])


@dataclass
class CTData:
    """The study's slices in one split mode (``split``, see the module docstring).

    ``train``: what the GANs and the extractor train on; ``test``: the reference set every row is
    scored against; ``real``: the "Real" row's slices (``train`` itself in patient mode);
    ``loaded``: the loader datasets behind them (their ``bad_input`` logs). Slices are read from
    the item store per item, so nothing here holds a set's images unless a caller asks for a fixed
    subset (:meth:`images`) or streams them (:meth:`batches`).
    """

    root: Path
    train: NSCLCRadiomics | SliceView
    test: NSCLCRadiomics | SliceView
    is_phantom: bool
    split: str = "patient"
    real: NSCLCRadiomics | SliceView | None = None
    loaded: dict[str, NSCLCRadiomics] = field(default_factory=dict)

    def __post_init__(self):
        if self.real is None:
            self.real = self.train

    @property
    def held_out(self) -> NSCLCRadiomics | SliceView | None:
        """Slices of patients no model trained on (the memorisation audit's calibration); None in slice mode."""
        return self.test if self.split == "patient" else None

    def shared_patients(self) -> int:
        """Patients with slices both in the reference set and in the Real row (0 in patient mode)."""
        return len(set(self.test.subjects) & set(self.real.subjects))

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
        """Slices, patients and survival classes per set, and the patients each set shares with the reference."""
        rows = {}
        reference = set(self.test.subjects)
        for name, role in ROLES[self.split].items():
            ds = getattr(self, name)
            y = self.labels(name)
            hist = pd.Series([r["meta"]["histology"] for r in ds.rows]).value_counts().to_dict()
            rows[name] = {"role": role, "patients": len(ds.subjects), "slices": len(ds),
                          "patients also in the reference set":
                              len(set(ds.subjects) & reference) if name != "test" else "—",
                          "slices of patients who died": int(y.sum()), "slices of survivors": int((y == 0).sum()),
                          "histologies": ", ".join(f"{k}: {v}" for k, v in sorted(hist.items()))}
        return pd.DataFrame(rows).T


_DATA_CACHE: dict[str, CTData] = {}


def load_data(P: Params) -> CTData:
    """The slices in split mode ``data.split``, indexed once per configuration.

    The loader always splits by patient (``data.split_fractions``, ``data.split_seed``); slice mode
    joins those splits back into all slices (every split's item store is read, none decoded again)
    and draws the reference and Real halves with ``data.split_seed``. The first load decodes the
    series into the item store with ``data.num_workers`` processes; later loads (and runs) read it back.
    """
    key = json.dumps(P.data.to_dict(), sort_keys=True, default=str)
    if key not in _DATA_CACHE:
        if len(_DATA_CACHE) >= len(SPLIT_MODES):  # room for one configuration in each split mode
            _DATA_CACHE.pop(next(iter(_DATA_CACHE)))
        root = data_root(P)
        d = P.data
        common = dict(window_center_hu=d.window_center_hu, window_width_hu=d.window_width_hu, crop_size=d.crop_size,
                      image_size=d.image_size, split_fractions=tuple(d.split_fractions), split_seed=d.split_seed,
                      skip_bad=d.skip_bad, num_workers=d.num_workers)
        if d.split not in SPLIT_MODES:
            raise ValueError(f"params/{NOTEBOOK}: data.split = {d.split!r}; use one of {list(SPLIT_MODES)}")
        # slice mode takes every patient back (a val split too, when it has patients)
        names = (["train", "test"] if d.split == "patient"
                 else [n for n, f in zip(("train", "val", "test"), d.split_fractions) if f > 0])
        loaded = {s: NSCLCRadiomics(root, split=s, **common) for s in names}
        train, test = loaded["train"], loaded["test"]
        overlap = set(train.subjects) & set(test.subjects)
        if overlap:  # the loader splits by patient; this guards the protocol itself
            raise RuntimeError(f"{root}: {len(overlap)} patients are in both train and test")
        if d.split == "patient":
            _DATA_CACHE[key] = CTData(root=root, train=train, test=test, is_phantom=not d.root, loaded=loaded)
        else:  # the paper's protocol: all slices train; random halves of them are the reference and Real sets
            every = SliceView(list(loaded.values()))
            reference, real = slice_halves(len(every), seed=d.split_seed)
            _DATA_CACHE[key] = CTData(root=root, train=every, test=every.subset(reference), is_phantom=not d.root,
                                      split="slice", real=every.subset(real), loaded=loaded)
    return _DATA_CACHE[key]


class TrainingSlices(torch.utils.data.Dataset):
    """Items {"image", "label"} of a slice dataset (the GANs need nothing else; keeps collation cheap).

    Pixels are read per item from the dataset's item store (DataLoader workers each open it);
    labels come from its rows.
    """

    def __init__(self, slices: NSCLCRadiomics | SliceView):
        self.slices = slices
        self.labels = np.array([int(r["label"]) for r in slices.rows], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, i: int) -> dict:
        if isinstance(self.slices, SliceView):
            image = self.slices.image_array(i)
        else:
            store = getattr(self.slices, "store", None)
            image = store.read_array("image", i) if store is not None else self.slices.records[i]["image"]
        return {"image": torch.from_numpy(image), "label": int(self.labels[i])}

    def fingerprint(self) -> str:
        """The engine's content key: the slice dataset's (for a store, the digest of every stored byte)."""
        return f"slices-{self.slices.fingerprint()}"


def training_slices(P: Params) -> TrainingSlices:
    """The training slices of split mode ``data.split`` (training patients', or all), as the GANs see them."""
    return TrainingSlices(load_data(P).train)
