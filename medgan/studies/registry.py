"""The training jobs every study registers, by notebook and model name.

A study's ``jobs.py`` registers one builder per model::

    @register("02_ct_fidelity_diversity", "dcgan")
    def dcgan(P: Params) -> TrainingJob: ...

Notebooks call ``build_job(notebook, model, P)`` and ``run_job(job, run.dir / model)``;
``torchrun -m medgan train <notebook> <model>`` runs the very same job on several GPUs, and the
notebook then finds the finished checkpoint and skips training.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Callable

from medgan.config import Params
from medgan.train.job import TrainingJob

_REGISTRY: dict[tuple[str, str], Callable[[Params], TrainingJob]] = {}


def register(notebook: str, model: str):
    """Decorator: ``builder(P) -> TrainingJob`` is the job ``model`` of ``notebook``."""
    def wrap(fn: Callable[[Params], TrainingJob]):
        _REGISTRY[(notebook, model)] = fn
        return fn
    return wrap


def _discover() -> None:
    """Import every study package's ``jobs`` module (where the builders register)."""
    for package in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if package.ispkg:
            importlib.import_module(f"medgan.studies.{package.name}.jobs")


def available() -> list[tuple[str, str]]:
    """Every registered ``(notebook, model)`` pair, sorted."""
    _discover()
    return sorted(_REGISTRY)


def build_job(notebook: str, model: str, params: Params) -> TrainingJob:
    """The job ``model`` of ``notebook`` built from ``params``; an unknown pair fails naming the known ones."""
    _discover()
    try:
        builder = _REGISTRY[(notebook, model)]
    except KeyError:
        known = ", ".join(f"{n}:{m}" for n, m in sorted(_REGISTRY)) or "(none)"
        raise KeyError(f"no training job '{notebook}:{model}'; known: {known}") from None
    return builder(params)
