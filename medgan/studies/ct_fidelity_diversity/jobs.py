"""The CT study's training jobs: a DCGAN and a PGGAN on the training patients' slices.

- ``02_ct_fidelity_diversity:dcgan``  DCGAN (BCE, Adam ``dcgan.lr`` / ``dcgan.betas``)
- ``02_ct_fidelity_diversity:pggan``  PGGAN grown 4 -> ``data.image_size`` (WGAN-GP + drift, EMA)

Plus the tables that describe them: parameter counts (this profile beside the study's setup)
and hyperparameters.
"""

from __future__ import annotations

import pandas as pd

from medgan.config import Params, load_params
from medgan.models.blocks import count_parameters
from medgan.models.dcgan import DCGANConfig, build_dcgan
from medgan.models.pggan import PGGANConfig, build_pggan
from medgan.studies.ct_fidelity_diversity.data import NOTEBOOK, TrainingSlices, training_slices
from medgan.studies.registry import register
from medgan.train.dcgan import DCGANStep
from medgan.train.engine import seed_everything
from medgan.train.job import TrainingJob
from medgan.train.pggan import PGGANStep


def _check_size(P: Params, size: int, where: str) -> None:
    if size != P.data.image_size:
        raise ValueError(f"params/{NOTEBOOK}: {where} = {size} but data.image_size = {P.data.image_size}")


def _options(P: Params, section: Params, dataset: TrainingSlices, name: str) -> dict:
    # Engine options only: the engine fingerprints the step, the data, the seed and the batch itself.
    return dict(total_steps=section.steps, batch_size=min(section.batch_size, len(dataset)), seed=P.seed,
                device=P.device, log_every=section.log_every, sample_every=section.sample_every, desc=name,
                num_workers=P.data.num_workers)  # DataLoader workers reading slices from the item store


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
                       info={"name": "DCGAN", "training slices": len(dataset)})


@register(NOTEBOOK, "pggan")
def pggan(P: Params) -> TrainingJob:
    """PGGAN on the training slices for ``pggan.steps`` iterations, growing by its schedule."""
    dataset = training_slices(P)
    seed_everything(P.seed)  # initial weights are part of the run's fingerprint
    c = P.pggan
    step = PGGANStep(pggan_config(P), total_steps=c.steps, lr=c.lr, betas=tuple(c.betas), eps=c.eps,
                     gp_weight=c.gp_weight, drift_weight=c.drift_weight, ema_decay=c.ema_decay,
                     fade_fraction=c.fade_fraction, final_weight=c.final_weight, first_weight=c.first_weight)
    return TrainingJob(step=step, dataset=dataset, options=_options(P, c, dataset, "PGGAN"),
                       info={"name": "PGGAN", "training slices": len(dataset),
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
