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
from medgan.analysis.latent_axes import (LatentAxes, discover_axes, pick_starts, sample_and_score, walk_all_axes,
                                         walk_summary)
from medgan.config import Params
from medgan.studies.cxr_pggan.data import NORMAL
from medgan.studies.cxr_pggan.jobs import generator_fn, z_dim_of
from medgan.train.classifier import predict_proba

Walks = dict[str, tuple[torch.Tensor, np.ndarray]]  # finding -> (images (N, S, C, H, W), probabilities (N, S, K))


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
                                batch_size=a.batch_size, seed=P.seed + 7)
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
    """Walk ``axes.n_starts`` confident-normal latents along each finding's axis and summarise."""
    steps = walk_steps(P, gan_step)
    starts = pick_starts(found.latents, found.probabilities, column=found.class_names.index(NORMAL),
                         above=P.axes.start_normal_above, n=P.axes.n_starts)
    walks = walk_all_axes(generator_fn(gan_step), scorer(classifier), starts, found.axes, steps, skip=[NORMAL])
    severity = walk_severity(walks, severity_model, P.data.findings) if severity_model is not None else None
    summary = walk_summary(walks, found.class_names, steps, severity=severity)
    return AxisWalks(steps=steps, starts=starts, walks=walks, severity=severity, summary=summary)


def walk_curves(walks: Walks, class_names) -> tuple[dict, dict]:
    """finding -> mean and sd over starts of its own likelihood along its axis."""
    names = list(class_names)
    mean = {k: p[:, :, names.index(k)].mean(0) for k, (_, p) in walks.items()}
    sd = {k: p[:, :, names.index(k)].std(0) for k, (_, p) in walks.items()}
    return mean, sd


def walk_severity(walks: Walks, severity_model: torch.nn.Module, findings) -> dict[str, np.ndarray]:
    """finding -> (N, S) severity of the walked images, measured by the phantom severity regressor."""
    out = {}
    for name, (images, _) in walks.items():
        n, s = images.shape[:2]
        sev = predict_proba(severity_model, images.reshape(n * s, *images.shape[2:]),
                            device=str(next(severity_model.parameters()).device))
        out[name] = sev[:, list(findings).index(name)].reshape(n, s)
    return out


def walk_strips(walks: Walks, model: torch.nn.Module, class_names, *, start: int = 0) -> tuple[dict, dict, dict]:
    """For one start latent: images (S, C, H, W), class-activation maps (S, H, W) of the multi-label
    classifier for the walked finding, and its likelihood (S,) — per finding."""
    names = list(class_names)
    images, cams, probs = {}, {}, {}
    for name, (imgs, p) in walks.items():
        images[name] = imgs[start]
        cams[name] = grad_cam(model, imgs[start], classes=names.index(name))
        probs[name] = p[start, :, names.index(name)]
    return images, cams, probs
