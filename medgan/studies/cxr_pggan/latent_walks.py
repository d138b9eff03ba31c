"""Part (b) of study 5: latent disease axes of the PGGAN, found with the multi-label classifier,
and normal latents walked along them (likelihood, measured severity on the phantom, images and
class-activation maps). The algorithms are generic (:mod:`medgan.analysis.latent_axes`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
import pandas as pd
import torch

from medgan.analysis.gradcam import grad_cam
from medgan.analysis.latent_axes import (AxisWalk, LatentAxes, discover_axes, pick_starts, sample_and_score,
                                         walk_all_axes, walk_summary)
from medgan.config import Params
from medgan.studies.cxr_pggan.data import NORMAL
from medgan.studies.cxr_pggan.jobs import generator_fn, z_dim_of
from medgan.train.classifier import predict_proba

Walks = dict[str, AxisWalk]  # finding -> probabilities (N, S, K), images of the first start (1, S, C, H, W)
SEVERITY = "severity"  # the severity regressor's name among a walk's extra scores


def scorer(model: torch.nn.Module) -> Callable[[torch.Tensor], np.ndarray]:
    """images -> probabilities (N, K) of a trained classifier (a callable for the latent-axes code)."""
    device = next(model.parameters()).device
    return partial(predict_proba, model, batch_size=256, device=str(device))


def walk_steps(P: Params, gan_step) -> list[float]:
    """``axes.walk_steps`` in latent units (they are given in units of sqrt(z_dim))."""
    scale = float(np.sqrt(z_dim_of(gan_step)))
    return [float(s) * scale for s in P.axes.walk_steps]


@dataclass
class AxisDiscovery:
    """Generated latents, their multi-label scores and the axes fitted on them."""

    latents: np.ndarray          # (N, D)
    probabilities: np.ndarray    # (N, K) over ``class_names``
    axes: LatentAxes
    class_names: list[str]


def discover(P: Params, gan_step, classifier: torch.nn.Module, class_names: list[str]) -> AxisDiscovery:
    """Generate ``axes.n_generate`` images, score them with the multi-label classifier and fit one
    axis per class from the single-finding images (the ``axes`` parameters)."""
    a = P.axes
    z, probs = sample_and_score(generator_fn(gan_step), scorer(classifier), z_dim=z_dim_of(gan_step), n=a.n_generate,
                                batch_size=a.batch_size, seed=P.seed + 7, device=_device(classifier), progress=True)
    axes = discover_axes(z, probs, class_names, keep_above=a.keep_above, others_below=a.others_below,
                         min_images=a.min_images, ridge=a.ridge)
    return AxisDiscovery(latents=z, probabilities=probs, axes=axes, class_names=list(class_names))


@dataclass
class AxisWalks:
    """Confident-normal latents walked along every fitted axis of a finding."""

    steps: list[float]                       # (S,) latent units
    starts: np.ndarray                       # (N, D)
    walks: Walks
    severity: dict[str, np.ndarray] | None   # finding -> (N, S) measured by the severity regressor (phantom)
    summary: pd.DataFrame                    # per finding: likelihood (and severity) at start and end, Spearman


def walk(P: Params, gan_step, found: AxisDiscovery, classifier: torch.nn.Module,
         severity_model: torch.nn.Module | None = None) -> AxisWalks:
    """Walk ``axes.n_starts`` confident-normal latents along each finding's axis and summarise.

    Streamed: each batch of walked images is scored by the classifier (and the severity regressor)
    at once; only the first start's images are kept, for the figure. Without a fitted finding axis
    there is nothing to walk (no start is picked)."""
    steps = walk_steps(P, gan_step)
    if not any(found.axes.found[name] for name in found.class_names if name != NORMAL):
        return AxisWalks(steps=steps, starts=np.zeros((0, z_dim_of(gan_step)), np.float32), walks={}, severity=None,
                         summary=walk_summary({}, found.class_names, steps))
    starts = pick_starts(found.latents, found.probabilities, column=found.class_names.index(NORMAL),
                         above=P.axes.start_normal_above, n=P.axes.n_starts)
    extra = {SEVERITY: scorer(severity_model)} if severity_model is not None else None
    walks = walk_all_axes(generator_fn(gan_step), scorer(classifier), starts, found.axes, steps, skip=[NORMAL],
                          device=_device(classifier), batch_size=P.axes.batch_size, keep_images=1, extra_scores=extra)
    severity = walk_severity(walks, P.data.findings) if severity_model is not None else None
    summary = walk_summary(walks, found.class_names, steps, severity=severity)
    return AxisWalks(steps=steps, starts=starts, walks=walks, severity=severity, summary=summary)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def walk_curves(walks: Walks, class_names) -> tuple[dict, dict]:
    """finding -> mean and sd over starts of its own likelihood along its axis."""
    names = list(class_names)
    mean = {k: w.probabilities[:, :, names.index(k)].mean(0) for k, w in walks.items()}
    sd = {k: w.probabilities[:, :, names.index(k)].std(0) for k, w in walks.items()}
    return mean, sd


def walk_severity(walks: Walks, findings) -> dict[str, np.ndarray]:
    """finding -> (N, S) severity of the walked images, as the phantom severity regressor measured
    them during the walk."""
    return {name: w.extra[SEVERITY][:, :, list(findings).index(name)] for name, w in walks.items()}


def walk_strips(walks: Walks, model: torch.nn.Module, class_names, *, start: int = 0) -> tuple[dict, dict, dict]:
    """For one start latent (among those whose images were kept): images (S, C, H, W), class-activation
    maps (S, H, W) of the multi-label classifier for the walked finding, and its likelihood (S,) — per finding."""
    names = list(class_names)
    images, cams, probs = {}, {}, {}
    for name, w in walks.items():
        images[name] = w.images[start]
        cams[name] = grad_cam(model, w.images[start], classes=names.index(name))
        probs[name] = w.probabilities[start, :, names.index(name)]
    return images, cams, probs
