"""Study 4: early -> delayed FDG PET with Pix2pix (paired) vs CycleGAN (pairing ignored) (papers/003).

Both models use the same U-Net generator and 70x70 PatchGAN (one definition in
``medgan.models.image_to_image``); Pix2pix's discriminator sees the (early, delayed) pair,
CycleGAN's sees single images. Patients are split into train and test before any slice is
read, so no patient's slices sit on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medgan.config import Params
from medgan.data.pet_early_delayed import PETEarlyDelayed
from medgan.models.blocks import count_parameters
from medgan.models.image_to_image import define_discriminator, define_generator
from medgan.train.cyclegan import CycleGANStep, UnpairedDataset, translate
from medgan.train.engine import seed_everything
from medgan.train.pix2pix import Pix2PixStep
from medgan.train.recipes import TrainingJob, register

NOTEBOOK = "04_pet_early_to_delayed"
DIRECTION = "early→delayed"
MODEL_LABELS = {"pix2pix": "Pix2pix", "cyclegan": "CycleGAN"}


def data_root(params: Params) -> Path:
    """``data.root`` when given, else the PET phantom generated with ``data.phantom`` options."""
    from medgan.data.phantoms import dataset_root

    return dataset_root(params.data, "pet")


@dataclass
class PETData:
    root: Path
    train: PETEarlyDelayed
    test: PETEarlyDelayed
    is_phantom: bool

    def split_table(self) -> pd.DataFrame:
        """Patients and slices per split (pseudonymous keys); the two sets of patients are disjoint."""
        rows = []
        for name, ds in (("train", self.train), ("test", self.test)):
            subjects = [ds[i]["subject"] for i in range(len(ds))]
            rows.append({"split": name, "patients": len(set(subjects)), "slices": len(ds)})
        return pd.DataFrame(rows).set_index("split")

    def shared_patients(self) -> set[str]:
        a = {self.train[i]["subject"] for i in range(len(self.train))}
        return a & {self.test[i]["subject"] for i in range(len(self.test))}


def load_data(params: Params) -> PETData:
    d = params.data
    root = data_root(params)
    common = dict(suv_max=float(d.suv_max), image_size=d.image_size, split_fractions=tuple(d.split_fractions),
                  split_seed=int(d.split_seed), skip_bad=bool(d.skip_bad), min_body_suv=float(d.min_body_suv),
                  with_masks=not d.root)
    data = PETData(root=root, train=PETEarlyDelayed(root, split="train", **common),
                   test=PETEarlyDelayed(root, split="test", **common), is_phantom=not d.root)
    shared = data.shared_patients()
    if shared:  # a leak would flatter every score
        raise ValueError(f"{root}: {len(shared)} patient(s) in both train and test splits")
    return data


def stack(dataset, key: str = "image") -> torch.Tensor:
    return torch.stack([dataset[i][key] for i in range(len(dataset))])


def subjects_of(dataset) -> list[str]:
    return [dataset[i]["subject"] for i in range(len(dataset))]


def _generator(params: Params, *, dropout: bool) -> torch.nn.Module:
    g = params.generator
    return define_generator(g.name, 1, 1, width=int(g.width), norm=g.norm, dropout=dropout)


def _discriminator(params: Params, in_channels: int) -> torch.nn.Module:
    d = params.discriminator
    return define_discriminator(in_channels, width=int(d.width), n_layers=int(d.n_layers), norm=d.norm)


def _options(params: Params, model: str) -> dict:
    t = params.train
    return dict(total_steps=int(t.steps), batch_size=int(t.batch_size), seed=int(params.seed), device=params.device,
                precision=t.precision, log_every=int(t.log_every), sample_every=int(t.sample_every),
                checkpoint_every=int(t.checkpoint_every), desc=MODEL_LABELS[model],
                fingerprint={"model": model, "generator": params.generator.to_dict(),
                             "discriminator": params.discriminator.to_dict(), "data": params.data.to_dict(),
                             "train": t.to_dict()})


@register(NOTEBOOK, "pix2pix")
def pix2pix(params: Params) -> TrainingJob:
    seed_everything(int(params.seed))
    data = load_data(params)
    G = _generator(params, dropout=bool(params.generator.dropout))
    D = _discriminator(params, 2)  # conditional: sees (early, delayed) stacked
    t = params.train
    step = Pix2PixStep(G, D, lr=float(t.lr), betas=tuple(t.betas), lambda_l1=float(t.lambda_l1),
                       decay_start=float(t.decay_start), sample_inputs=stack(data.test)[:8])
    return TrainingJob(step=step, dataset=data.train, options=_options(params, "pix2pix"),
                       info={"train slices": len(data.train)})


@register(NOTEBOOK, "cyclegan")
def cyclegan(params: Params) -> TrainingJob:
    seed_everything(int(params.seed))
    data = load_data(params)
    t = params.train
    # Same generator structure (no dropout noise: CycleGAN's reference generator has none).
    step = CycleGANStep(_generator(params, dropout=False), _generator(params, dropout=False),
                        _discriminator(params, 1), _discriminator(params, 1), lr=float(t.lr), betas=tuple(t.betas),
                        lambda_cycle=float(t.lambda_cycle), lambda_identity=float(t.lambda_identity),
                        pool_size=int(t.pool_size), decay_start=float(t.decay_start))
    # The pairing is ignored: early and delayed slices are drawn independently.
    dataset = UnpairedDataset(data.train, data.train, key_a="image", key_b="target")
    return TrainingJob(step=step, dataset=dataset, options=_options(params, "cyclegan"),
                       info={"train slices": len(data.train)})


def architecture_table(jobs: dict) -> pd.DataFrame:
    rows = {}
    for model, job in jobs.items():
        for name, net in job.step.nets.items():
            rows[(MODEL_LABELS[model], name)] = {"parameters (M)": count_parameters(net) / 1e6}
    return pd.DataFrame(rows).T


@dataclass
class TestTranslations:
    sources: torch.Tensor
    truth: torch.Tensor
    subjects: list[str]
    masks: torch.Tensor | None
    predictions: dict[str, torch.Tensor]  # method -> predicted delayed slices


def translate_test(jobs: dict, data: PETData, params: Params) -> TestTranslations:
    """Predict the delayed test slices with each trained model (CycleGAN: its early->delayed generator)."""
    bs = int(params.eval.batch_size)
    early = stack(data.test)
    predictions = {}
    for model, job in jobs.items():
        G = job.step.nets["G"] if model == "pix2pix" else job.step.nets["G_AB"]
        predictions[MODEL_LABELS[model]] = translate(G, early, batch_size=bs)
    masks = stack(data.test, "mask") if data.is_phantom else None
    return TestTranslations(sources=early, truth=stack(data.test, "target"), subjects=subjects_of(data.test),
                            masks=masks, predictions=predictions)


def paper_table() -> pd.DataFrame:
    """The paper's reported figures (18 patients, 128x128 slices, ImageNet-Inception FID)."""
    return pd.DataFrame({"PSNR (dB)": {"Pix2pix": 57.85, "CycleGAN": 47.45},
                         "FID": {"Pix2pix": 4.953, "CycleGAN": 17.33}})


def ours_table(summary: pd.DataFrame, methods) -> pd.DataFrame:
    """Our PSNR and FID per method (subject-level estimates) in the paper's table shape."""
    rows = {}
    for method in methods:
        s = summary[summary["method"] == method].set_index("metric")["estimate"]
        rows[method] = {"PSNR (dB)": s.get("psnr_db", np.nan), "FID": s.get("fid", np.nan),
                        "SSIM": s.get("ssim", np.nan)}
    return pd.DataFrame(rows).T


def claims_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims and the issue's bars, checked on this run's subject-level estimates."""
    est = summary.set_index(["method", "metric"])["estimate"]

    def get(method, metric):
        return float(est.get((method, metric), np.nan))

    rows = []
    for metric, label in (("psnr_db", "PSNR"), ("ssim", "SSIM")):
        a, b = get("Pix2pix", metric), get("identity", metric)
        rows.append({"claim": f"Pix2pix beats the identity baseline on {label}",
                     "measured": f"{a:.3f} vs {b:.3f}", "holds": bool(a > b)})
    for metric, label, better in (("psnr_db", "PSNR", 1), ("fid", "FID", -1)):
        a, b = get("Pix2pix", metric), get("CycleGAN", metric)
        rows.append({"claim": f"Pix2pix beats CycleGAN on {label} (paper)",
                     "measured": f"{a:.3f} vs {b:.3f}", "holds": bool((a - b) * better > 0)})
    return pd.DataFrame(rows).set_index("claim")


def grid_rows(out: TestTranslations, *, n: int) -> dict[str, torch.Tensor]:
    """Rows for a translation grid: early, true delayed, each prediction and its absolute error.

    Test slices are picked evenly through the test set so the grid spans the body.
    """
    idx = torch.linspace(0, len(out.sources) - 1, n).round().long()
    rows = {"early (input)": out.sources[idx], "delayed (truth)": out.truth[idx]}
    for method, pred in out.predictions.items():
        rows[method] = pred[idx]
        rows[f"|{method} − truth|"] = (pred[idx] - out.truth[idx]).abs() - 1.0  # error 0..2 shown on the [-1, 1] scale
    return rows


def extractor_training_set(data: PETData) -> tuple[torch.Tensor, torch.Tensor]:
    """Train slices labelled early (0) / delayed (1): the in-domain feature network's task."""
    early, delayed = stack(data.train), stack(data.train, "target")
    return torch.cat([early, delayed]), torch.cat([torch.zeros(len(early)), torch.ones(len(delayed))]).long()
