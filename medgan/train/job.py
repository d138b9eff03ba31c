"""A training job: a model's step, its dataset and the engine options, ready for :func:`train`.

Study packages build jobs (``medgan.studies.<study>.jobs``); notebooks and ``torchrun`` run them
with :func:`run_job`, so both land in the same run folder and reuse each other's models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from medgan.train.engine import TrainResult, train
from medgan.train.step import TrainingStep


@dataclass
class TrainingJob:
    """A model step, its dataset and the engine options (``train()`` keyword arguments).

    ``options`` never needs a hand-built fingerprint: the engine derives it from the step, the
    dataset, the seed, the batch size and the precision. ``options["fingerprint"]`` may add to it.
    """

    step: TrainingStep
    dataset: Dataset
    options: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # anything the notebook wants to show (sizes, counts)


def run_job(job: TrainingJob, job_dir: str | Path, **overrides: Any) -> TrainResult:
    """``train(job.step, job.dataset, run_dir=job_dir, **job.options)``, with overrides.

    The run lands in ``<job_dir>/<key>`` (see :func:`medgan.train.engine.train`); a finished run of
    the same job is reloaded, not retrained.
    """
    return train(job.step, job.dataset, run_dir=job_dir, **{**job.options, **overrides})
