"""How study 1 reads RxRx19a: the 4 domains of HRCE crops, split by well, as tensors.

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


def load_split(P: Params, split: str | None, *, with_truth: bool = False) -> RxRx19a:
    """The :class:`~medgan.data.rxrx19a.RxRx19a` crops of one split (wells never straddle splits).

    ``with_truth`` adds each crop rendered under every condition (phantom only; ignored on real data).
    """
    d = P.data
    concentrations = list(d.concentrations_um) if d.concentrations_um is not None else None
    return RxRx19a(data_root(P), cell_type=d.cell_type, concentrations_um=concentrations,
                   crop_size=d.crop_size, image_size=d.image_size, max_sites_per_domain=d.max_sites_per_domain,
                   with_truth=with_truth and not d.root, split=split,
                   split_fractions=tuple(d.split_fractions), split_seed=d.split_seed)


def stack_dataset(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """All images (N, C, S, S) in [-1, 1] and domain labels (N,) of an in-memory dataset."""
    items = [dataset[i] for i in range(len(dataset))]
    return (torch.stack([torch.as_tensor(it["image"]) for it in items]),
            torch.tensor([int(it["label"]) for it in items]))


@dataclass
class EvaluationData:
    """The study's images as CPU tensors, (N, C, S, S) float in [-1, 1] (C = 5 stains).

    heldout_*: the val + test wells. heldout_truth: (N, K, C, S, S) each held-out field rendered
    in every domain (phantom), else None. counts: images and wells per split and domain.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    heldout_images: torch.Tensor
    heldout_labels: torch.Tensor
    heldout_truth: torch.Tensor | None
    domain_names: list[str]
    stain_names: list[str]
    counts: pd.DataFrame
    bad_input: pd.DataFrame  # per split: images skipped as bad input, and why

    def first_train_image_per_domain(self) -> torch.Tensor:
        """(K, C, S, S): the first training crop of every domain (for a look at the data)."""
        first = [int((self.train_labels == k).nonzero()[0]) for k in range(len(self.domain_names))]
        return self.train_images[first]


def load_evaluation_data(P: Params) -> EvaluationData:
    """Training images and held-out (val + test wells) images, with a count per split and domain."""
    parts, counts, names, loaded = {}, [], [], {}
    for split in ("train", "val", "test"):
        dataset = loaded[split] = load_split(P, split, with_truth=split != "train")
        items = [dataset[i] for i in range(len(dataset))]
        images = torch.stack([torch.as_tensor(it["image"]) for it in items])
        labels = torch.tensor([int(it["label"]) for it in items])
        truth = torch.stack([torch.as_tensor(it["truth"]) for it in items]) if items and "truth" in items[0] else None
        parts[split] = (images, labels, truth)
        names = dataset.domain_names
        for k, name in enumerate(names):
            wells = {it["subject"] for it in items if int(it["label"]) == k}
            counts.append({"split": split, "domain": name, "images": int((labels == k).sum()), "wells": len(wells)})
    held = [parts["val"], parts["test"]]
    truth = None if held[0][2] is None else torch.cat([h[2] for h in held])
    return EvaluationData(
        train_images=parts["train"][0], train_labels=parts["train"][1],
        heldout_images=torch.cat([h[0] for h in held]), heldout_labels=torch.cat([h[1] for h in held]),
        heldout_truth=truth, domain_names=list(names), stain_names=list(STAINS),
        counts=pd.DataFrame(counts).pivot(index="domain", columns="split", values=["images", "wells"]),
        bad_input=bad_input_table(loaded))


def treatment_matches(match_report: dict) -> pd.DataFrame:
    """The treatment spellings matched to each canonical drug name (from ``RxRx19a.match_report``)."""
    return pd.DataFrame([(name, ", ".join(raw) or "—") for name, raw in match_report["matched"].items()],
                        columns=["canonical", "raw names matched"])
