"""How study 3 reads its data: the four folders of the Kaggle "CT and MRI brain scans" layout.

``Dataset/images/{trainA, trainB, testA, testB}`` under ``data.root``, or the embedded brain phantom
(made from ``data.phantom``) when no root is given. Domain A = ``data.a_modality`` (CT in the shipped
profiles), B = the other one. Subjects are pseudonymous keys; the split is by subject. The phantom
keeps the true counterpart of every test image in ``truth/``, which training never sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from medgan.config import Params
from medgan.data.base import iter_batches, subjects_of
from medgan.data.brain_ct_mri import BrainCTMRI
from medgan.data.phantoms import dataset_root
from medgan.metrics.features import ConcatLabelledItems, LabelledItems

NOTEBOOK = "03_brain_ct_mri_cyclegan"
MODALITY_NAMES = {"ct": "CT", "mri": "MRI"}


def read_images(dataset, indices, key: str = "image") -> torch.Tensor:
    """The ``key`` images of a few items (N, C, H, W): a small fixed subset, read without the rest."""
    indices = list(indices)
    if not indices:
        return torch.zeros((0, *dataset[0][key].shape))
    return torch.cat(list(iter_batches(dataset, key, batch_size=len(indices), indices=indices)))


@dataclass
class BrainData:
    """The four folders of the dataset as loaded datasets, plus where they came from."""

    root: Path
    train_a: BrainCTMRI
    train_b: BrainCTMRI
    test_a: BrainCTMRI
    test_b: BrainCTMRI
    name_a: str  # "CT" or "MRI"
    name_b: str
    has_truth: bool  # the test items carry their true counterpart as "target" (phantom only)

    @property
    def direction_ab(self) -> str:
        return f"{self.name_a}→{self.name_b}"

    @property
    def direction_ba(self) -> str:
        return f"{self.name_b}→{self.name_a}"

    @property
    def directions(self) -> list[str]:
        return [self.direction_ab, self.direction_ba]

    def counts(self) -> pd.DataFrame:
        """Images and subjects per folder (subjects are pseudonymous keys)."""
        rows = []
        for part, ds, name in (("train", self.train_a, self.name_a), ("train", self.train_b, self.name_b),
                               ("test", self.test_a, self.name_a), ("test", self.test_b, self.name_b)):
            rows.append({"part": part, "modality": name, "images": len(ds), "subjects": len(set(subjects_of(ds)))})
        return pd.DataFrame(rows)

    def subject_overlap(self) -> pd.DataFrame:
        """Subjects shared between folders (train A and B should share none: unpaired; train and test none)."""
        sets = {k: set(subjects_of(ds))
                for k, ds in (("train A", self.train_a), ("train B", self.train_b), ("test A", self.test_a),
                              ("test B", self.test_b))}
        return pd.DataFrame({a: {b: len(sa & sb) for b, sb in sets.items()} for a, sa in sets.items()})

    def training_rows(self, n: int) -> dict[str, torch.Tensor]:
        """``n`` training images of each domain, evenly spaced over the folder, as rows of a grid."""
        def spaced(ds):
            return read_images(ds, range(0, len(ds), max(1, len(ds) // n))[:n])
        return {f"train {self.name_a}": spaced(self.train_a), f"train {self.name_b}": spaced(self.train_b)}

    def extractor_training_set(self) -> ConcatLabelledItems:
        """Train images of both domains labelled by modality (0 = CT, 1 = MRI, from the rows), for an
        in-domain extractor; read by index while it trains, so nothing is gathered into memory."""
        return ConcatLabelledItems([LabelledItems(self.train_a), LabelledItems(self.train_b)])


def data_root(params: Params) -> Path:
    """``data.root`` when given, else the brain phantom generated with ``data.phantom`` options."""
    return dataset_root(params.data, "brain")


def load_data(params: Params) -> BrainData:
    """Load train/test of both domains at ``data.image_size``; test items get ``target`` when truth exists."""
    root = data_root(params)
    d = params.data
    common = dict(image_size=d.image_size, crop_pad_size=d.crop_pad_size, a_modality=d.a_modality,
                  skip_bad=d.skip_bad, num_workers=int(d.num_workers))
    has_truth = (root / "truth").is_dir()
    sets = {f"{part}_{domain.lower()}": BrainCTMRI(root, domain=domain, part=part,
                                                  with_truth=has_truth and part == "test", **common)
            for part in ("train", "test") for domain in ("A", "B")}
    name_a = MODALITY_NAMES[d.a_modality]
    name_b = MODALITY_NAMES["mri" if d.a_modality == "ct" else "ct"]
    return BrainData(root=root, name_a=name_a, name_b=name_b, has_truth=has_truth, **sets)
