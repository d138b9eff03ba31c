"""Study 3's training jobs: one CycleGAN per key of ``params.models``, registered for ``03_brain_ct_mri_cyclegan``.

``resnet`` and ``unet`` in the shipped profiles: each a :class:`CycleGANStep` with two generators of
that architecture and two 70x70 PatchGAN discriminators. Domain A = CT and B = MRI
(``data.a_modality``), so ``G_AB`` is CT -> MRI and ``G_BA`` is MRI -> CT. The learning rate decays
linearly over the run, so the engine keys each run by its total steps as well.
"""

from __future__ import annotations

import pandas as pd
import torch

from medgan.config import Params
from medgan.data.augment import Augment
from medgan.models.image_to_image import count_parameters, define_discriminator, define_generator
from medgan.studies.brain_ct_mri_cyclegan.data import NOTEBOOK, BrainData, load_data, read_images
from medgan.studies.registry import register
from medgan.train.cyclegan import CycleGANStep, UnpairedDataset
from medgan.train.engine import TrainResult, seed_everything
from medgan.train.job import TrainingJob

SAMPLE_IMAGES = 3  # test images per domain shown in the training samples


def build_networks(params: Params, model: str) -> dict[str, torch.nn.Module]:
    """G_AB, G_BA, D_A, D_B for ``params.models[model]`` (``data.channels`` channels), initialised N(0, 0.02)."""
    if model not in params.models:
        raise KeyError(f"params.models has no '{model}' (has {sorted(params.models)})")
    g, d = params.models[model], params.discriminator
    channels = int(params.data.channels)

    def generator():
        return define_generator(g.generator, channels, channels, width=g.width, norm=g.norm, dropout=g.dropout)

    def discriminator():
        return define_discriminator(channels, width=d.width, n_layers=d.n_layers, norm=d.norm)

    return {"G_AB": generator(), "G_BA": generator(), "D_A": discriminator(), "D_B": discriminator()}


def augmentation(params: Params) -> Augment | None:
    """The training augmentation of ``params.augment``: CT and MRI batches drawn independently (unpaired
    domains, as the reference's unaligned loader transforms A and B apart); None when it does nothing."""
    return Augment.from_params(params.augment.to_dict(), keys=("A", "B"), paired=False)


def total_steps(params: Params, n_a: int, n_b: int) -> int:
    """``train.steps``, or ``train.epochs`` epochs of max(|A|, |B|) images (the reference's epoch)."""
    t = params.train
    if t.get("epochs") is not None:
        return int(t.epochs) * max(n_a, n_b) // int(t.batch_size)
    return int(t.steps)


def build_cyclegan(params: Params, model: str, *, data: BrainData | None = None) -> TrainingJob:
    """The CycleGAN job for ``params.models[model]`` on the unpaired train folders."""
    data = data or load_data(params)
    seed_everything(int(params.seed))  # the initial weights are part of the run's fingerprint
    nets = build_networks(params, model)
    t = params.train
    step = CycleGANStep(nets["G_AB"], nets["G_BA"], nets["D_A"], nets["D_B"], lr=t.lr, betas=tuple(t.betas),
                        lambda_cycle=t.lambda_cycle, lambda_identity=t.lambda_identity, pool_size=t.pool_size,
                        decay_start=t.decay_start,
                        sample_inputs=(read_images(data.test_a, range(min(SAMPLE_IMAGES, len(data.test_a)))),
                                       read_images(data.test_b, range(min(SAMPLE_IMAGES, len(data.test_b))))))
    dataset = UnpairedDataset(data.train_a, data.train_b)
    steps = total_steps(params, len(data.train_a), len(data.train_b))
    # No fingerprint here: the engine derives it (and adds total_steps, the lr decay depends on it).
    options = dict(total_steps=steps, batch_size=int(t.batch_size), seed=int(params.seed), device=params.device,
                   precision=t.precision, log_every=int(t.log_every), sample_every=int(t.sample_every),
                   sample_count=6 * SAMPLE_IMAGES, checkpoint_every=int(t.checkpoint_every),
                   num_workers=int(params.data.num_workers), desc=f"CycleGAN {params.models[model].generator}",
                   augment=augmentation(params))
    info = {"generator": params.models[model].generator, "width": params.models[model].width, "steps": steps,
            "parameters_G": count_parameters(nets["G_AB"]), "parameters_D": count_parameters(nets["D_A"])}
    return TrainingJob(step=step, dataset=dataset, options=options, info=info)


@register(NOTEBOOK, "resnet")
def cyclegan_resnet(params: Params) -> TrainingJob:
    """CycleGAN with the ``models.resnet`` generators."""
    return build_cyclegan(params, "resnet")


@register(NOTEBOOK, "unet")
def cyclegan_unet(params: Params) -> TrainingJob:
    """CycleGAN with the ``models.unet`` generators."""
    return build_cyclegan(params, "unet")


def training_summary(jobs: dict[str, TrainingJob], results: dict[str, TrainResult]) -> pd.DataFrame:
    """One row per trained model: generator, parameters, iterations, wall time (0 trained = reloaded)."""
    rows = []
    for model, job in jobs.items():
        r = results[model]
        rows.append({"model": model, "generator": job.info["generator"], "width": job.info["width"],
                     "G parameters (M)": job.info["parameters_G"] / 1e6,
                     "D parameters (M)": job.info["parameters_D"] / 1e6,
                     "run folder": r.run_dir.name, "iterations": r.step, "trained now": r.trained_steps, "wall time (s)": round(r.wall_time_s, 1),
                     "s / iteration": r.wall_time_s / r.trained_steps if r.trained_steps else None})
    return pd.DataFrame(rows).set_index("model")
