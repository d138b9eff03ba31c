"""How study 4 reads its data: paired early/delayed FDG PET slices, patients split into train and test.

Patients are split before any slice is read, so no patient's slices sit on both sides; a leak
raises instead of flattering every score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from medgan.config import Params
from medgan.data.base import iter_batches, subjects_of
from medgan.data.pet_early_delayed import PETEarlyDelayed
from medgan.data.phantoms import dataset_root
from medgan.metrics.features import ConcatLabelledItems, LabelledItems


def data_root(params: Params) -> Path:
    """``data.root`` when given, else the PET phantom generated with ``data.phantom`` options."""
    return dataset_root(params.data, "pet")


def read_images(dataset, indices, key: str = "image") -> torch.Tensor:
    """The ``key`` images of a few slices (N, 1, H, W): a small fixed subset, read without the rest."""
    indices = list(indices)
    if not indices:
        return torch.zeros((0, *dataset[0][key].shape))
    return torch.cat(list(iter_batches(dataset, key, batch_size=len(indices), indices=indices)))


@dataclass
class PETData:
    """The train and test splits of one data root (``is_phantom``: tumour masks are known)."""

    root: Path
    train: PETEarlyDelayed
    test: PETEarlyDelayed
    is_phantom: bool

    @property
    def source_name(self) -> str:
        return "phantom" if self.is_phantom else self.root.name

    def split_table(self) -> pd.DataFrame:
        """Patients and slices per split (pseudonymous keys); the two sets of patients are disjoint."""
        rows = [{"split": name, "patients": len(set(subjects_of(ds))), "slices": len(ds)}
                for name, ds in (("train", self.train), ("test", self.test))]
        return pd.DataFrame(rows).set_index("split")

    def shared_patients(self) -> set[str]:
        """Patients with slices in both train and test (empty by construction)."""
        return set(subjects_of(self.train)) & set(subjects_of(self.test))


def load_data(params: Params) -> PETData:
    """Train and test splits from ``params.data`` (SUV range, slice size, split fractions and seed)."""
    d = params.data
    root = data_root(params)
    common = dict(suv_max=float(d.suv_max), image_size=d.image_size, split_fractions=tuple(d.split_fractions),
                  split_seed=int(d.split_seed), skip_bad=bool(d.skip_bad), min_body_suv=float(d.min_body_suv),
                  with_masks=not d.root, num_workers=int(d.num_workers))
    data = PETData(root=root, train=PETEarlyDelayed(root, split="train", **common),
                   test=PETEarlyDelayed(root, split="test", **common), is_phantom=not d.root)
    shared = data.shared_patients()
    if shared:  # a leak would flatter every score
        raise ValueError(f"{root}: {len(shared)} patient(s) in both train and test splits")
    return data


def extractor_training_set(data: PETData) -> ConcatLabelledItems:
    """Train slices labelled early (0) / delayed (1): the in-domain feature network's task. Read by
    index while it trains, so nothing is gathered into memory."""
    return ConcatLabelledItems([LabelledItems(data.train, image_key="image", labels=0),
                                LabelledItems(data.train, image_key="target", labels=1)])
