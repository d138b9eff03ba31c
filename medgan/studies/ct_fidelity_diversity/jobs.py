"""The CT study's training jobs: a DCGAN and a PGGAN on the training patients' slices.

- ``02_ct_fidelity_diversity:dcgan``  DCGAN (BCE, Adam ``dcgan.lr`` / ``dcgan.betas``)
- ``02_ct_fidelity_diversity:pggan``  PGGAN grown 4 -> ``data.image_size`` (WGAN-GP + drift, EMA)

Plus the tables that describe them: parameter counts (this profile beside the study's setup)
and hyperparameters.
"""

from __future__ import annotations

import pandas as pd

from medgan.config import Params, load_params
from medgan.data.augment import Augment
from medgan.models.blocks import count_parameters
from medgan.models.dcgan import DCGANConfig, build_dcgan
from medgan.models.pggan import PGGANConfig, build_pggan
from medgan.studies.ct_fidelity_diversity.data import NOTEBOOK, TrainingSlices, training_slices
from medgan.studies.registry import register
from medgan.train.dcgan import DCGANStep
from medgan.train.engine import seed_everything
from medgan.train.job import TrainingJob
from medgan.train.pggan import ImageGrowthSchedule, PGGANStep, growth_changes


def _check_size(P: Params, size: int, where: str) -> None:
    if size != P.data.image_size:
        raise ValueError(f"params/{NOTEBOOK}: {where} = {size} but data.image_size = {P.data.image_size}")


def augmentation(P: Params) -> Augment | None:
    """``augment`` as the engine applies it to both GANs' training batches (None: no augmentation)."""
    return Augment.from_params(P.augment.to_dict(), keys=("image",))


def _options(P: Params, section: Params, dataset: TrainingSlices, name: str) -> dict:
    # Engine options only: the engine fingerprints the step, the data, the seed and the batch itself
    # (and the augmentation, only when there is one: runs without keep their keys).
    return dict(total_steps=section.steps, batch_size=min(section.batch_size, len(dataset)), seed=P.seed,
                device=P.device, precision=section.precision, log_every=section.log_every,
                sample_every=section.sample_every, desc=name,
                num_workers=P.data.num_workers,  # DataLoader workers reading slices from the item store
                augment=augmentation(P))


def dcgan_config(P: Params) -> DCGANConfig:
    """``dcgan.model`` as a config, checked against ``data.image_size``."""
    config = DCGANConfig(**P.dcgan.model.to_dict())
    _check_size(P, config.image_size, "dcgan.model.image_size")
    return config


def pggan_config(P: Params) -> PGGANConfig:
    """``pggan.model`` as a config, checked against ``data.image_size``."""
    config = PGGANConfig(**P.pggan.model.to_dict())
    _check_size(P, config.resolution, "pggan.model.resolution")
    return config


@register(NOTEBOOK, "dcgan")
def dcgan(P: Params) -> TrainingJob:
    """DCGAN on the training slices for ``dcgan.steps`` iterations."""
    dataset = training_slices(P)
    seed_everything(P.seed)  # initial weights are part of the run's fingerprint
    c = P.dcgan
    step = DCGANStep(dcgan_config(P), lr=c.lr, betas=tuple(c.betas))
    return TrainingJob(step=step, dataset=dataset, options=_options(P, c, dataset, "DCGAN"),
                       info={"name": "DCGAN", "training slices": len(dataset), "split": P.data.split})


def image_schedule(P: Params, n_images: int) -> ImageGrowthSchedule:
    """``pggan.growth: images``: phases in real images shown (``n_images_stable``, ``n_images_fade``,
    ``n_images`` in all), a minibatch per resolution (each at most the ``n_images`` training slices)."""
    c = P.pggan
    return ImageGrowthSchedule(stable_images=int(c.n_images_stable), fade_images=int(c.n_images_fade),
                               total_images=int(c.n_images),
                               batch_sizes=tuple(min(int(b), n_images) for b in c.batch_size_per_resolution))


@register(NOTEBOOK, "pggan")
def pggan(P: Params) -> TrainingJob:
    """PGGAN on the training slices, growing by ``pggan.growth``: ``steps`` (equal shares of
    ``pggan.steps``) or ``images`` (the phases in images shown, :func:`image_schedule`)."""
    dataset = training_slices(P)
    seed_everything(P.seed)  # initial weights are part of the run's fingerprint
    c = P.pggan
    options = _options(P, c, dataset, "PGGAN")
    if c.growth == "images":
        schedule = image_schedule(P, len(dataset))
        options.update(total_steps=schedule.total_steps, batch_size=schedule.batch_schedule())
    elif c.growth == "steps":
        schedule = None
    else:
        raise ValueError(f"params/{NOTEBOOK}: pggan.growth must be 'steps' or 'images', not {c.growth!r}")
    step = PGGANStep(pggan_config(P), total_steps=options["total_steps"], lr=c.lr, betas=tuple(c.betas), eps=c.eps,
                     gp_weight=c.gp_weight, drift_weight=c.drift_weight, ema_decay=c.ema_decay,
                     fade_fraction=c.fade_fraction, final_weight=c.final_weight, first_weight=c.first_weight,
                     schedule=schedule, lr_per_resolution=c.lr_per_resolution,
                     reset_adam_at_growth=bool(c.reset_adam_at_growth))
    return TrainingJob(step=step, dataset=dataset, options=options,
                       info={"name": "PGGAN", "training slices": len(dataset), "split": P.data.split,
                             "growth schedule": step.schedule.table()})


def _parameter_counts(P: Params) -> pd.Series:
    dc, pg = build_dcgan(dcgan_config(P)), build_pggan(pggan_config(P))
    return pd.Series({"DCGAN G": count_parameters(dc["G"]), "DCGAN D": count_parameters(dc["D"]),
                      "PGGAN G": count_parameters(pg["G"]), "PGGAN D": count_parameters(pg["D"])})


def architecture_table(P: Params) -> pd.DataFrame:
    """Trainable parameters of both models in this profile and in the study's setup (the ``paper`` profile)."""
    study = load_params(NOTEBOOK, "paper")
    return pd.concat({"this profile": _parameter_counts(P),
                      f"study setup ({study.data.image_size} px, PGGAN width {study.pggan.model.width:g})":
                          _parameter_counts(study)}, axis=1)


def hyperparameter_table(P: Params) -> pd.DataFrame:
    """The ``dcgan`` and ``pggan`` sections of the parameters, side by side (text cells)."""
    return pd.DataFrame({"DCGAN": pd.Series(P.dcgan.to_dict()).astype(str),
                         "PGGAN": pd.Series(P.pggan.to_dict()).astype(str)})


def growth_schedule_table(job: TrainingJob) -> pd.DataFrame:
    """The PGGAN job's growth schedule, one row per phase (resolution, first/last step, fade-in steps)."""
    return pd.DataFrame(job.info["growth schedule"]).set_index("phase")


def _images(n: int) -> str:
    return f"{n / 1e6:.3g}M" if n >= 1e6 else f"{n / 1e3:.3g}k" if n >= 1e3 else str(n)


def protocol_table(P: Params, dcgan_job: TrainingJob, pggan_job: TrainingJob) -> pd.DataFrame:
    """The training and sampling protocol both jobs actually run, from the parameters and the jobs
    (the report's method section): split mode, sampling, augmentation, schedule, inference mode."""
    aug = augmentation(P)
    augment = aug.describe() if aug is not None else "none"
    split = {"patient": "by patient: the GANs train on the training patients' slices",
             "slice": "by slice (the paper's): the GANs train on all slices"}[P.data.split]
    rows = {}
    for name, job in (("DCGAN", dcgan_job), ("PGGAN", pggan_job)):
        o, table = job.options, job.info.get("growth schedule")
        batch = o["batch_size"] if isinstance(o["batch_size"], int) else "/".join(str(b) for _, b in o["batch_size"])
        shown = o["total_steps"] * o["batch_size"] if isinstance(o["batch_size"], int) else sum(
            r["steps"] * r["batch_size"] for r in table)
        rows[name] = {"split mode (data.split)": split, "training slices": len(job.dataset),
                      "sampling": f"a uniform shuffle of the training slices each epoch, batches of {batch}",
                      "augmentation (augment)": augment,
                      "schedule": f"{o['total_steps']} iterations, {_images(shown)} images"}
    mode = str(P.inference_mode)
    rows["DCGAN"]["inference mode (inference_mode)"] = (
        f"{mode}: " + ("batch norm on its running statistics" if mode == "eval" else
                       f"batch norm on the statistics of each batch of {P.inference_batch_size} latents"))
    rows["PGGAN"]["inference mode (inference_mode)"] = "no batch norm: the same in both modes (EMA generator)"
    batch = pggan_job.options["batch_size"]
    phases = "; ".join(f"{r['resolution']} px: {_images(r['fade_in_steps'] * r.get('batch_size', batch))} fade-in + "
                       f"{_images((r['steps'] - r['fade_in_steps']) * r.get('batch_size', batch))} stable"
                       for r in pggan_job.info["growth schedule"])
    rows["PGGAN"]["schedule"] += f" ({phases})"
    step = pggan_job.step
    # growth states change only where a phase (its fade-in) starts or a fade-in ends
    candidates = {k for r in pggan_job.info["growth schedule"]
                  for k in (r["first_step"], *range(r["first_step"] + r["fade_in_steps"] - 1,
                                                    r["first_step"] + r["fade_in_steps"] + 2))}
    resets = [k for k in sorted(candidates) if 0 < k < step.schedule.total_steps and growth_changes(step.schedule, k)]
    rows["PGGAN"]["Adam state at growth"] = (f"reset at each fade-in start and end ({len(resets)} times)"
                                             if step.reset_adam_at_growth else "kept")
    rows["PGGAN"]["learning rate"] = ("per resolution " + "/".join(f"{v:g}" for v in step.lr_per_resolution)
                                      if step.lr_per_resolution else f"{P.pggan.lr:g} throughout")
    rows["DCGAN"]["learning rate"] = f"{P.dcgan.lr:g} throughout"
    rows["DCGAN"]["Adam state at growth"] = "— (no growth)"
    return pd.DataFrame(rows)
