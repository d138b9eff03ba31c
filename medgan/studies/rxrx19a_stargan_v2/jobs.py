"""Study 1 recipe: StarGAN v2 on RxRx19a cell painting (4 domains: Active and Active + 3 drugs)."""

from __future__ import annotations

import torch

from medgan.config import Params
from medgan.models.stargan_v2 import StarGANv2Config
from medgan.train.recipes import TrainingJob, register
from medgan.train.stargan_v2 import StarGANv2Step

NOTEBOOK = "01_rxrx19a_stargan_v2"


def data_root(params: Params):
    """The RxRx19a folder: ``data.root``, else the cell phantom generated from ``data.phantom``."""
    from medgan.data.phantoms import dataset_root

    return dataset_root(params.data, "cells")


def load_split(params: Params, split: str | None, *, with_truth: bool = False):
    """The :class:`~medgan.data.rxrx19a.RxRx19a` crops of one split (wells never straddle splits)."""
    from medgan.data.rxrx19a import RxRx19a

    d = params.data
    concentrations = list(d.concentrations_um) if d.concentrations_um is not None else None
    return RxRx19a(data_root(params), cell_type=d.cell_type, concentrations_um=concentrations,
                   crop_size=d.crop_size, image_size=d.image_size, max_sites_per_domain=d.max_sites_per_domain,
                   with_truth=with_truth and not params.data.root, split=split,
                   split_fractions=tuple(d.split_fractions), split_seed=d.split_seed)


def model_config(params: Params, *, channels: int = 5, num_domains: int = 4) -> StarGANv2Config:
    m = params.model
    return StarGANv2Config(image_size=params.data.image_size, channels=channels, num_domains=num_domains,
                           latent_dim=m.latent_dim, style_dim=m.style_dim, mapping_hidden=m.mapping_hidden,
                           base_width=m.base_width, max_width=m.max_width, n_down=m.n_down)


def stack_dataset(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """All images (N, C, S, S) and labels (N,) of an in-memory dataset."""
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([torch.as_tensor(it["image"]) for it in items]), torch.tensor([int(it["label"]) for it in items])


@register(NOTEBOOK, "stargan_v2")
def stargan_v2(params: Params) -> TrainingJob:
    train_set = load_split(params, "train")
    images, labels = stack_dataset(train_set)
    t = params.train
    config = model_config(params, channels=images.shape[1], num_domains=len(train_set.domain_names))
    step = StarGANv2Step(config, reference_images=images, reference_labels=labels, lr=t.lr, mapping_lr=t.mapping_lr,
                         betas=tuple(t.betas), weight_decay=t.weight_decay, lambda_reg=t.lambda_reg,
                         lambda_sty=t.lambda_sty, lambda_ds=t.lambda_ds, lambda_cyc=t.lambda_cyc, ds_iter=t.ds_iter,
                         ema_beta=t.ema_beta, reference_mode=t.reference_mode)
    every = max(1, t.steps // max(1, t.n_checkpoints))
    options = dict(total_steps=t.steps, batch_size=t.batch_size, seed=params.seed, device=params.device,
                   precision=t.precision, log_every=t.log_every, sample_every=t.sample_every,
                   checkpoint_every=every, keep_checkpoints=t.n_checkpoints + 1,
                   fingerprint={"data": params.data.to_dict(), "model": params.model.to_dict(),
                                "train": t.to_dict(), "seed": params.seed},
                   desc="StarGAN v2")
    counts = {name: int((labels == k).sum()) for k, name in enumerate(train_set.domain_names)}
    info = {"domains": train_set.domain_names, "train_images_per_domain": counts,
            "train_subjects": len(set(train_set[i]["subject"] for i in range(len(train_set)))),
            "config": config.to_dict(), "match_report": train_set.match_report}
    return TrainingJob(step=step, dataset=train_set, options=options, info=info)


def load_eval_data(params: Params) -> dict:
    """Training images and held-out (val + test wells) images for evaluation, as tensors.

    Returns ``{"train_images", "train_labels", "heldout_images", "heldout_labels", "heldout_truth"
    (N, K, C, S, S) or None, "domain_names", "stain_names", "counts" (DataFrame: images and wells
    per split and domain)}``.
    """
    import pandas as pd

    from medgan.data.rxrx19a import STAINS

    parts, counts = {}, []
    for split in ("train", "val", "test"):
        ds = load_split(params, split, with_truth=split != "train")
        items = [ds[i] for i in range(len(ds))]
        images = torch.stack([torch.as_tensor(it["image"]) for it in items])
        labels = torch.tensor([int(it["label"]) for it in items])
        truth = torch.stack([torch.as_tensor(it["truth"]) for it in items]) if items and "truth" in items[0] else None
        parts[split] = (images, labels, truth)
        for k, name in enumerate(ds.domain_names):
            wells = {it["subject"] for it in items if int(it["label"]) == k}
            counts.append({"split": split, "domain": name, "images": int((labels == k).sum()), "wells": len(wells)})
        names = ds.domain_names
    held = [parts["val"], parts["test"]]
    truth = None if held[0][2] is None else torch.cat([h[2] for h in held])
    return {"train_images": parts["train"][0], "train_labels": parts["train"][1],
            "heldout_images": torch.cat([h[0] for h in held]), "heldout_labels": torch.cat([h[1] for h in held]),
            "heldout_truth": truth, "domain_names": names, "stain_names": list(STAINS),
            "counts": pd.DataFrame(counts).pivot(index="domain", columns="split", values=["images", "wells"])}
