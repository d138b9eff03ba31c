"""Study 2 (notebook ``02_ct_fidelity_diversity``): DCGAN vs PGGAN on chest CT.

Models (jobs for the one engine; run folders ``runs/02_ct_fidelity_diversity/<profile>/<model>``):

- ``dcgan``  DCGAN on the training patients' slices (BCE, Adam 2e-4 / (0.5, 0.999))
- ``pggan``  PGGAN grown 4 -> ``data.image_size`` on the same slices (WGAN-GP + drift, EMA)

Data: NSCLC-Radiomics (``data.root``) or the chest CT phantom, centre crop then resize, split by
patient into ``train`` (GAN training, feature-extractor training, the "Real" row) and ``test`` (the
reference set every row is scored against — patients no generator has seen).

Helpers the notebook calls: :func:`load_data`, :func:`feature_extractor`, :func:`generators`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medgan.config import Params
from medgan.data.nsclc_radiomics import NSCLCRadiomics
from medgan.models.dcgan import DCGANConfig
from medgan.models.pggan import PGGANConfig
from medgan.train.dcgan import DCGANStep
from medgan.train.pggan import PGGANStep
from medgan.train.recipes import TrainingJob, register

NOTEBOOK = "02_ct_fidelity_diversity"


# --- data ---------------------------------------------------------------------------------
def data_root(P: Params) -> Path:
    """The real dataset (``data.root``) or the chest CT phantom generated from ``data.phantom``."""
    from medgan.data.phantoms import dataset_root

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
        for name, role in (("train", "GAN training + 'Real' row"), ("test", "reference set")):
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


class _ImagesOnly(torch.utils.data.Dataset):
    """Items {"image", "label"} only (the GANs need nothing else; keeps collation cheap)."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": int(self.labels[i])}


# --- GAN jobs -------------------------------------------------------------------------------
def _check_size(P: Params, size: int, where: str) -> None:
    if size != P.data.image_size:
        raise ValueError(f"params/{NOTEBOOK}: {where} = {size} but data.image_size = {P.data.image_size}")


def _options(P: Params, section: Params, dataset, name: str, model_fingerprint: dict) -> dict:
    fingerprint = {"model": model_fingerprint, "data": P.data.to_dict(), "n_items": len(dataset)}
    return dict(total_steps=section.steps, batch_size=min(section.batch_size, len(dataset)), seed=P.seed,
                device=P.device, log_every=section.log_every, sample_every=section.sample_every,
                fingerprint=fingerprint, desc=name)


def dcgan_config(P: Params) -> DCGANConfig:
    config = DCGANConfig(**P.dcgan.model.to_dict())
    _check_size(P, config.image_size, "dcgan.model.image_size")
    return config


def pggan_config(P: Params) -> PGGANConfig:
    config = PGGANConfig(**P.pggan.model.to_dict())
    _check_size(P, config.resolution, "pggan.model.resolution")
    return config


@register(NOTEBOOK, "dcgan")
def dcgan(P: Params) -> TrainingJob:
    from medgan.train.engine import seed_everything

    data = load_data(P)
    dataset = _ImagesOnly(data.images("train"), data.labels("train"))
    seed_everything(P.seed)
    c = P.dcgan
    step = DCGANStep(dcgan_config(P), lr=c.lr, betas=tuple(c.betas))
    return TrainingJob(step=step, dataset=dataset, options=_options(P, c, dataset, "DCGAN", c.to_dict()),
                       info={"name": "DCGAN", "training slices": len(dataset)})


@register(NOTEBOOK, "pggan")
def pggan(P: Params) -> TrainingJob:
    from medgan.train.engine import seed_everything

    data = load_data(P)
    dataset = _ImagesOnly(data.images("train"), data.labels("train"))
    seed_everything(P.seed)
    c = P.pggan
    step = PGGANStep(pggan_config(P), total_steps=c.steps, lr=c.lr, betas=tuple(c.betas), eps=c.eps,
                     gp_weight=c.gp_weight, drift_weight=c.drift_weight, ema_decay=c.ema_decay,
                     fade_fraction=c.fade_fraction, final_weight=c.final_weight, first_weight=c.first_weight)
    return TrainingJob(step=step, dataset=dataset, options=_options(P, c, dataset, "PGGAN", c.to_dict()),
                       info={"name": "PGGAN", "training slices": len(dataset),
                             "growth schedule": step.schedule.table()})


# --- evaluation helpers ------------------------------------------------------------------------
def generators(dcgan_step: DCGANStep, pggan_step: PGGANStep, P: Params) -> dict[str, dict]:
    """Name -> {"fn": z -> images in [-1, 1], "z_dim"} for the trained models and their untrained baselines."""
    from medgan.train import dcgan as dcgan_mod
    from medgan.train import pggan as pggan_mod

    return {
        "DCGAN": {"fn": dcgan_step.generator(), "z_dim": dcgan_step.z_dim},
        "PGGAN": {"fn": pggan_step.generator(ema=True), "z_dim": pggan_step.z_dim},
        "DCGAN (untrained)": {"fn": dcgan_mod.untrained_generator(dcgan_config(P), seed=P.seed + 7),
                              "z_dim": dcgan_step.z_dim},
        "PGGAN (untrained)": {"fn": pggan_mod.untrained_generator(pggan_config(P), seed=P.seed + 7),
                              "z_dim": pggan_step.z_dim},
    }


def feature_extractor(P: Params, data: CTData, *, save_dir: str | os.PathLike, name: str | None = None,
                      device: str | None = None):
    """The study's feature extractor, trained on the training slices' survival label (2 classes).

    ``features.extractor``: ``domain_cnn`` (default; trained here, no downloads) or
    ``finetuned_inception_v3`` (ImageNet Inception from ``$MEDGAN_INCEPTION_WEIGHTS``, fine-tuned
    ``features.epochs`` epochs, as the study). ``inception_v3`` gives the plain ImageNet network.
    The trained network is saved in ``save_dir`` and reloaded on re-runs.
    """
    from medgan.metrics import features as F

    f = P.features
    name = name or f.extractor
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = json.dumps({"f": f.to_dict(), "data": P.data.to_dict(), "seed": P.seed}, sort_keys=True)
    tag = hashlib.sha256(fingerprint.encode()).hexdigest()[:10]
    if name == "inception_v3":
        return F.get_extractor("inception_v3")
    x, y = data.images("train"), data.labels("train")
    if name == "domain_cnn":
        path = save_dir / f"domain_cnn-{tag}.pth"
        if path.is_file():
            return F.get_extractor("domain_cnn", weights_path=path)
        net = F.train_domain_cnn(x, y, channels=x.shape[1], num_classes=2, epochs=f.epochs, batch_size=f.batch_size,
                                 lr=f.lr, seed=P.seed, device=device, feature_dim=f.feature_dim, width=f.width)
        net.save(path)
        return net
    if name == "finetuned_inception_v3":
        path = save_dir / f"finetuned_inception_v3-{tag}.pth"
        if path.is_file():
            return F.get_extractor("finetuned_inception_v3", weights_path=path)
        return F.finetune_inception_v3(x, y, epochs=f.epochs, batch_size=f.batch_size, lr=f.lr, seed=P.seed,
                                       device=device, num_classes=2, save_path=path)
    raise ValueError(f"params/{NOTEBOOK}: features.extractor = {name!r}; use domain_cnn, "
                     f"finetuned_inception_v3 or inception_v3")


def imagenet_inception_available() -> bool:
    """True when the standard ImageNet Inception weights are on this machine ($MEDGAN_INCEPTION_WEIGHTS)."""
    from medgan.metrics.features import INCEPTION_ENV

    path = os.environ.get(INCEPTION_ENV)
    return bool(path) and Path(path).is_file()
