"""Study recipes: how each notebook's models are built and fed to the engine.

One module per study notebook registers a builder per model with :func:`register`:

    @register("02_ct_fidelity_diversity", "dcgan")
    def dcgan(params: Params) -> TrainingJob: ...

The notebook calls ``build_job(notebook, model, params)`` and ``run_job(job, run_dir)``;
``torchrun -m medgan.train <notebook> <model>`` runs the very same job on several GPUs, and
the notebook then finds the finished checkpoint and skips training.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch.utils.data import Dataset

from medgan.config import Params
from medgan.train.engine import TrainResult, train
from medgan.train.step import TrainingStep


@dataclass
class TrainingJob:
    """A model step, its dataset and the engine options (``train()`` keyword arguments)."""

    step: TrainingStep
    dataset: Dataset
    options: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # anything the notebook wants to show (sizes, counts)


_REGISTRY: dict[tuple[str, str], Callable[[Params], TrainingJob]] = {}


def register(notebook: str, model: str):
    def wrap(fn: Callable[[Params], TrainingJob]):
        _REGISTRY[(notebook, model)] = fn
        return fn
    return wrap


def _discover() -> None:
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        importlib.import_module(f"{__name__}.{module.name}")


def available() -> list[tuple[str, str]]:
    _discover()
    return sorted(_REGISTRY)


def build_job(notebook: str, model: str, params: Params) -> TrainingJob:
    _discover()
    try:
        builder = _REGISTRY[(notebook, model)]
    except KeyError:
        known = ", ".join(f"{n}:{m}" for n, m in sorted(_REGISTRY)) or "(none)"
        raise KeyError(f"no training recipe '{notebook}:{model}'; known: {known}") from None
    return builder(params)


def run_job(job: TrainingJob, run_dir: str | Path, **overrides: Any) -> TrainResult:
    """``train(job.step, job.dataset, run_dir=run_dir, **job.options)``, with overrides."""
    return train(job.step, job.dataset, run_dir=run_dir, **{**job.options, **overrides})
