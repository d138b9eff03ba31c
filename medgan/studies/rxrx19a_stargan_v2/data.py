"""How study 1 reads RxRx19a: the 4 domains of HRCE crops, split by well, as datasets read per item.

The data is ``data.root`` (real RxRx19a) or, when it is unset, the cell phantom written in the
RxRx19a layout from ``data.phantom``. Training uses the ``train`` wells; evaluation uses the
``val`` + ``test`` wells (held out), and on the phantom also every held-out field rendered under
every condition (``truth``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from medgan.config import Params
from medgan.data.phantoms import dataset_root
from medgan.data.rxrx19a import STAINS, RxRx19a
from medgan.reports.tables import bad_input_table


def data_root(P: Params) -> Path:
    """The RxRx19a folder: ``data.root``, else the cell phantom generated from ``data.phantom``."""
    return dataset_root(P.data, "cells")


def load_split(P: Params, split: str | tuple[str, ...] | None, *, with_truth: bool = False) -> RxRx19a:
    """The :class:`~medgan.data.rxrx19a.RxRx19a` crops of one split, or of several in order (wells never
    straddle splits). Pixels stay in the loader's item store (decoded once, ``data.num_workers``
    processes) and are read per item.

    ``with_truth`` adds each crop rendered under every condition (phantom only; ignored on real data).
    """
    d = P.data
    concentrations = list(d.concentrations_um) if d.concentrations_um is not None else None
    return RxRx19a(data_root(P), cell_type=d.cell_type, concentrations_um=concentrations,
                   crop_size=d.crop_size, image_size=d.image_size, max_sites_per_domain=d.max_sites_per_domain,
                   with_truth=with_truth and not d.root, split=split,
                   split_fractions=tuple(d.split_fractions), split_seed=d.split_seed,
                   num_workers=d.num_workers, progress=True)


def labels_of(dataset: RxRx19a) -> torch.Tensor:
    """(N,) domain label of every crop, from the loader's rows (no pixels are read)."""
    return torch.tensor([int(row["label"]) for row in dataset.rows], dtype=torch.long)


HELDOUT = ("val", "test")  # the held-out wells, read as one dataset (val crops first)


@dataclass
class EvaluationData:
    """The study's crops as datasets (pixels read per item) with their labels in memory.

    train: the training wells' crops. heldout: the val + test wells' crops (val first), whose items
    hold ``truth`` (K, C, S, S), the field rendered in every domain, when ``has_truth`` (phantom).
    train_labels / heldout_labels: (N,) domain per crop. counts: images and wells per split and domain.
    """

    train: RxRx19a
    heldout: RxRx19a
    train_labels: torch.Tensor
    heldout_labels: torch.Tensor
    has_truth: bool
    domain_names: list[str]
    stain_names: list[str]
    counts: pd.DataFrame
    bad_input: pd.DataFrame  # per split: images skipped as bad input, and why

    def first_train_image_per_domain(self) -> torch.Tensor:
        """(K, C, S, S): the first training crop of every domain (for a look at the data)."""
        first = [int((self.train_labels == k).nonzero()[0]) for k in range(len(self.domain_names))]
        return torch.stack([self.train[i]["image"] for i in first])


def crop_counts(datasets: dict[str, RxRx19a]) -> pd.DataFrame:
    """Crops and wells per domain and split, from the loaders' rows and split maps."""
    counts = []
    for dataset in datasets.values():
        for k, name in enumerate(dataset.domain_names):
            for split in dict.fromkeys(dataset.split_map[r["subject"]] for r in dataset.rows):
                rows = [r for r in dataset.rows if r["label"] == k and dataset.split_map[r["subject"]] == split]
                counts.append({"split": split, "domain": name, "images": len(rows),
                               "wells": len({r["subject"] for r in rows})})
    return pd.DataFrame(counts).pivot(index="domain", columns="split", values=["images", "wells"]).fillna(0).astype(int)


def load_evaluation_data(P: Params) -> EvaluationData:
    """Training crops and held-out (val + test wells) crops, with a count per split and domain."""
    train, heldout = load_split(P, "train"), load_split(P, HELDOUT, with_truth=True)
    return EvaluationData(
        train=train, heldout=heldout, train_labels=labels_of(train), heldout_labels=labels_of(heldout),
        has_truth=not P.data.root, domain_names=list(train.domain_names),
        stain_names=list(STAINS), counts=crop_counts({"train": train, "held out": heldout}),
        bad_input=bad_input_table({"train": train, " + ".join(HELDOUT): heldout}))


def treatment_matches(match_report: dict) -> pd.DataFrame:
    """The treatment spellings matched to each canonical drug name (from ``RxRx19a.match_report``)."""
    return pd.DataFrame([(name, ", ".join(raw) or "—") for name, raw in match_report["matched"].items()],
                        columns=["canonical", "raw names matched"])
