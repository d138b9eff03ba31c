"""Study 4's training jobs: Pix2pix (paired) and CycleGAN (pairing ignored), early -> delayed FDG PET.

Both models use the same U-Net generator and 70x70 PatchGAN (one definition in
``medgan.models.image_to_image``); Pix2pix's discriminator sees the (early, delayed) pair,
CycleGAN's sees single images. The engine keys each run by its step, data, seed and batch, and
by the total step count (both models decay the learning rate linearly to the end of training).
"""

from __future__ import annotations

import pandas as pd
import torch

from medgan.config import Params
from medgan.data.augment import Augment
from medgan.models.blocks import count_parameters
from medgan.models.image_to_image import define_discriminator, define_generator
from medgan.studies.pet_early_to_delayed.data import load_data, read_images
from medgan.studies.registry import register
from medgan.train.cyclegan import CycleGANStep, UnpairedDataset
from medgan.train.engine import seed_everything
from medgan.train.job import TrainingJob
from medgan.train.pix2pix import Pix2PixStep

NOTEBOOK = "04_pet_early_to_delayed"
MODELS = ("pix2pix", "cyclegan")
MODEL_LABELS = {"pix2pix": "Pix2pix", "cyclegan": "CycleGAN"}


def _generator(params: Params, *, dropout: bool) -> torch.nn.Module:
    g = params.generator
    return define_generator(g.name, 1, 1, width=int(g.width), norm=g.norm, dropout=dropout)


def _discriminator(params: Params, in_channels: int) -> torch.nn.Module:
    d = params.discriminator
    return define_discriminator(in_channels, width=int(d.width), n_layers=int(d.n_layers), norm=d.norm)


# The batch entries each model trains on, and whether one augmentation draw serves both.
AUGMENT_KEYS = {"pix2pix": (("image", "target"), True),  # an (early, delayed) pair stays aligned
                "cyclegan": (("A", "B"), False)}        # unpaired: each domain its own draw


def augmentation(params: Params, model: str) -> Augment | None:
    """``params.augment`` for ``model``'s batches (see :data:`AUGMENT_KEYS`); None when it does nothing."""
    keys, paired = AUGMENT_KEYS[model]
    return Augment.from_params(params.augment.to_dict(), keys=keys, paired=paired)


def _options(params: Params, model: str) -> dict:
    """Engine options only; the run fingerprint is the engine's (it adds the augmentation when there is one)."""
    t = params.train
    return dict(total_steps=int(t.steps), batch_size=int(t.batch_size), seed=int(params.seed), device=params.device,
                precision=t.precision, log_every=int(t.log_every), sample_every=int(t.sample_every),
                checkpoint_every=int(t.checkpoint_every), num_workers=int(params.data.num_workers),
                desc=MODEL_LABELS[model], augment=augmentation(params, model))


@register(NOTEBOOK, "pix2pix")
def pix2pix(params: Params) -> TrainingJob:
    """Pix2pix: U-Net (decoder dropout as the noise) + conditional PatchGAN, BCE + ``train.lambda_l1`` x L1."""
    seed_everything(int(params.seed))  # initial weights are part of the run's fingerprint
    data = load_data(params)
    G = _generator(params, dropout=bool(params.generator.dropout))
    D = _discriminator(params, 2)  # conditional: sees (early, delayed) stacked
    t = params.train
    step = Pix2PixStep(G, D, lr=float(t.lr), betas=tuple(t.betas), lambda_l1=float(t.lambda_l1),
                       decay_start=float(t.decay_start), sample_inputs=read_images(data.test, range(min(8, len(data.test)))))
    return TrainingJob(step=step, dataset=data.train, options=_options(params, "pix2pix"),
                       info={"train slices": len(data.train)})


@register(NOTEBOOK, "cyclegan")
def cyclegan(params: Params) -> TrainingJob:
    """CycleGAN: two U-Nets and two PatchGANs, LSGAN + cycle + identity, early and delayed drawn independently."""
    seed_everything(int(params.seed))  # initial weights are part of the run's fingerprint
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


def architecture_table(jobs: dict[str, TrainingJob]) -> pd.DataFrame:
    """Parameters (millions) of every network of every job (``jobs``: model name -> job)."""
    rows = {}
    for model, job in jobs.items():
        for name, net in job.step.nets.items():
            rows[(MODEL_LABELS[model], name)] = {"parameters (M)": count_parameters(net) / 1e6}
    return pd.DataFrame(rows).T
