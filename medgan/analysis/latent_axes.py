"""Latent disease axes (TL-GAN style), as in the thesis' part (b).

1. Generate many images from latents z and score them with a multi-label classifier over
   (normal, finding_1, ..., finding_K).
2. Keep single-finding images (:func:`single_finding_filter`): the top class has p >= 0.9 and
   every other class p <= 0.1.
3. Class-weighted linear regression of the classifier outputs on z (:func:`fit_latent_axes`):
   for each output k, ``y_k ~ b_k + z . w_k``; the slope ``w_k`` (a direction in latent space)
   is that finding's axis. Each image is weighted by 1 / (size of its class) so a common class
   (normal) does not dominate the fit — the thesis "added weights on the class with rare
   disease patterns in a proportion of the number of images each class".
4. Move a normal latent along an axis (:func:`walk_along_axis`) and score the images.

Generation streams: :func:`sample_and_score` and :func:`walk_likelihoods` generate a batch,
score it at once and free it, keeping latents and scores (and the walked images of a few starts
for figures), so the thesis's 30,000 images at 1024 px never sit in memory together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from sklearn.linear_model import LinearRegression, Ridge
from tqdm.auto import tqdm

__all__ = ["single_finding_filter", "class_balance_weights", "fit_latent_axes", "walk_along_axis",
           "score_walk", "axis_cosines", "sample_and_score", "LatentAxes", "discover_axes", "walk_likelihoods",
           "pick_starts", "walk_all_axes", "walk_summary", "AxisWalk"]


def single_finding_filter(probabilities: Any, *, keep_above: float = 0.9, others_below: float = 0.1
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Which images carry exactly one confident class.

    probabilities: (N, K) sigmoid outputs in [0, 1] (column 0 may be "normal").
    Returns (mask bool (N,), class index int64 (N,), -1 where the mask is False). An image is kept
    when its largest output is >= ``keep_above`` and every other output is <= ``others_below``.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probabilities must be (N, K) with K >= 2, got shape {p.shape}")
    top = p.argmax(1)
    top_p = p[np.arange(len(p)), top]
    others = p.copy()
    others[np.arange(len(p)), top] = -np.inf
    mask = (top_p >= keep_above) & (others.max(1) <= others_below)
    return mask, np.where(mask, top, -1).astype(np.int64)


def class_balance_weights(classes: Any, *, n_classes: int | None = None) -> np.ndarray:
    """Per-sample weights 1 / count(class), rescaled to mean 1 (every class gets the same total weight)."""
    c = np.asarray(classes, dtype=np.int64)
    if (c < 0).any():
        raise ValueError("classes must be >= 0 (filter out unassigned images first)")
    counts = np.bincount(c, minlength=n_classes or 0).astype(np.float64)
    w = 1.0 / counts[c]
    return w * len(w) / w.sum()


def fit_latent_axes(latents: Any, outputs: Any, *, sample_weight: Any | None = None, ridge: float = 0.0,
                    normalize: bool = True) -> np.ndarray:
    """Slopes of a (weighted) linear regression of each output on the latent vector.

    latents (N, D); outputs (N, K) (classifier probabilities or logits); sample_weight (N,).
    ``ridge`` > 0 uses L2-regularised regression (when N is not much larger than D).
    Returns axes (K, D) float64, unit length when ``normalize``.
    """
    z = np.asarray(latents, dtype=np.float64)
    y = np.asarray(outputs, dtype=np.float64)
    if z.ndim != 2 or y.ndim != 2 or len(z) != len(y):
        raise ValueError(f"latents (N, D) and outputs (N, K) must share N; got {z.shape} and {y.shape}")
    if len(z) < 2:
        raise ValueError("need at least 2 samples to fit axes")
    reg = Ridge(alpha=ridge) if ridge > 0 else LinearRegression()
    reg.fit(z, y, sample_weight=None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64))
    axes = np.atleast_2d(reg.coef_)
    if normalize:
        norms = np.linalg.norm(axes, axis=1, keepdims=True)
        axes = axes / np.where(norms > 0, norms, 1.0)
    return axes


def axis_cosines(axes: Any, reference: Any) -> np.ndarray:
    """Cosine similarity of each row of ``axes`` (K, D) with the same row of ``reference`` (K, D)."""
    a, b = np.asarray(axes, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def walk_along_axis(start: Any, axis: Any, steps: Sequence[float]) -> torch.Tensor:
    """Latents ``start + s * axis`` for each step ``s``: start (D,) or (N, D), axis (D,) -> (S, D) or (N, S, D)."""
    z0 = torch.as_tensor(np.asarray(start), dtype=torch.float32)
    a = torch.as_tensor(np.asarray(axis), dtype=torch.float32)
    s = torch.as_tensor(np.asarray(steps), dtype=torch.float32)
    if z0.ndim == 1:
        return z0[None] + s[:, None] * a[None]
    return z0[:, None] + s[None, :, None] * a[None, None]


@torch.no_grad()
def score_walk(generate: Callable[[torch.Tensor], torch.Tensor], score: Callable[[torch.Tensor], Any],
               start: Any, axis: Any, steps: Sequence[float]) -> tuple[torch.Tensor, np.ndarray]:
    """Generate and score the images along an axis walk.

    generate: z (S, D) -> images (S, C, H, W) in [-1, 1]; score: images -> (S, K) probabilities.
    Returns (images (S, C, H, W) on the CPU, probabilities (S, K)).
    """
    z = walk_along_axis(start, axis, steps)
    images = generate(z).detach().float().cpu()
    return images, np.asarray(score(images), dtype=np.float64)


@torch.no_grad()
def sample_and_score(generate: Callable[[torch.Tensor], torch.Tensor], score: Callable[[torch.Tensor], Any], *,
                     z_dim: int, n: int, batch_size: int = 128, seed: int = 0, device: str | torch.device = "cpu",
                     progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` latents, generate and score them in batches (images are not kept, so 30,000 fit).

    Returns (z (n, z_dim) float32, probabilities (n, K) float64).
    """
    g = torch.Generator().manual_seed(seed)
    zs, ps = [], []
    for start in tqdm(range(0, n, batch_size), disable=not progress, desc="generate + classify"):
        z = torch.randn(min(batch_size, n - start), z_dim, generator=g)
        images = generate(z.to(device)).float().clamp(-1, 1)
        ps.append(np.asarray(score(images), dtype=np.float64))
        zs.append(z.numpy())
        del images  # before the next batch is made: one batch alive at a time
    return np.concatenate(zs), np.concatenate(ps)


@dataclass
class LatentAxes:
    axes: np.ndarray            # (K, D) unit axis per class (NaN rows where no axis was fitted)
    class_names: list[str]
    counts: dict[str, int]      # single-finding images per class
    found: dict[str, bool]      # whether the class had enough images for an axis
    kept: np.ndarray            # (N,) bool: the single-finding images used in the fit

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({"single-finding images": self.counts, "axis fitted": self.found})


def discover_axes(latents: Any, probabilities: Any, class_names: Sequence[str], *, keep_above: float = 0.9,
                  others_below: float = 0.1, min_images: int = 10, ridge: float = 0.0) -> LatentAxes:
    """Filter single-finding images, weight classes equally, regress outputs on z, one axis per class.

    latents (N, D); probabilities (N, K) of the multi-label classifier, columns ``class_names``.
    A class with fewer than ``min_images`` single-finding images gets no axis (the thesis found
    none for pneumothorax, which no generated image showed alone).
    """
    mask, cls = single_finding_filter(probabilities, keep_above=keep_above, others_below=others_below)
    names = list(class_names)
    counts = np.bincount(cls[mask], minlength=len(names))
    found = counts >= min_images
    axes = np.full((len(names), np.asarray(latents).shape[1]), np.nan)
    if mask.sum() >= 2 and len(np.unique(cls[mask])) >= 2:
        z, p = np.asarray(latents)[mask], np.asarray(probabilities)[mask]
        fitted = fit_latent_axes(z, p, sample_weight=class_balance_weights(cls[mask], n_classes=len(names)),
                                 ridge=ridge)
        axes[found] = fitted[found]
    else:
        found[:] = False
    return LatentAxes(axes=axes, class_names=names, counts=dict(zip(names, counts.tolist())),
                      found=dict(zip(names, found.tolist())), kept=mask)


@dataclass
class AxisWalk:
    """What is kept of walking start latents along one axis (the images only for a few starts)."""

    probabilities: np.ndarray                                  # (N, S, K) scorer outputs at every step
    images: torch.Tensor                                       # (n_keep, S, C, H, W) of the first n_keep starts
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N, S, K') of each extra scorer


@torch.no_grad()
def walk_likelihoods(generate: Callable[[torch.Tensor], torch.Tensor], score: Callable[[torch.Tensor], Any],
                     starts: Any, axis: Any, steps: Sequence[float], *, device: str | torch.device = "cpu",
                     batch_size: int = 64, keep_images: int | None = None,
                     extra_scores: Mapping[str, Callable[[torch.Tensor], Any]] | None = None) -> AxisWalk:
    """Walk every start latent (N, D) along ``axis`` (D,), generating and scoring ``batch_size``
    latents at a time: probabilities (N, S, K), each ``extra_scores`` scorer's outputs, and the
    images (n_keep, S, C, H, W) of the first ``keep_images`` starts (default all; the rest are
    freed batch by batch, so memory does not grow with N)."""
    z = walk_along_axis(starts, axis, steps)  # (N, S, D)
    n, s, d = z.shape
    keep_rows = (n if keep_images is None else min(int(keep_images), n)) * s
    flat = z.reshape(n * s, d)
    probs, kept = [], []
    extra: dict[str, list[np.ndarray]] = {name: [] for name in (extra_scores or {})}
    for start in range(0, n * s, batch_size):
        images = generate(flat[start:start + batch_size].to(device)).float().clamp(-1, 1).cpu()
        probs.append(np.asarray(score(images), dtype=np.float64))
        for name, fn in (extra_scores or {}).items():
            extra[name].append(np.asarray(fn(images), dtype=np.float64))
        if start < keep_rows:
            kept.append(images[: keep_rows - start].clone())  # a copy: a view would keep the whole batch alive
        del images
    images = torch.cat(kept) if kept else torch.zeros(0)
    shape = images.shape[1:] if kept else ()
    return AxisWalk(probabilities=np.concatenate(probs).reshape(n, s, -1),
                    images=images.reshape(keep_rows // s, s, *shape) if kept else images,
                    extra={k: np.concatenate(v).reshape(n, s, -1) for k, v in extra.items()})


def pick_starts(latents: Any, probabilities: Any, *, column: int = 0, above: float = 0.9, n: int = 8) -> np.ndarray:
    """The first ``n`` latents whose image scores ``probabilities[:, column] >= above`` (e.g. confident normals)."""
    p = np.asarray(probabilities)[:, column]
    idx = np.flatnonzero(p >= above)[:n]
    if len(idx) == 0:
        raise ValueError(f"no generated image has p >= {above} in column {column}; lower axes.start_normal_above")
    return np.asarray(latents)[idx]


def walk_all_axes(generate: Callable[[torch.Tensor], torch.Tensor], score: Callable[[torch.Tensor], Any],
                  starts: Any, axes: LatentAxes, steps: Sequence[float], *, skip: Sequence[str] = (),
                  device: str | torch.device = "cpu", batch_size: int = 64, keep_images: int | None = None,
                  extra_scores: Mapping[str, Callable[[torch.Tensor], Any]] | None = None) -> dict[str, AxisWalk]:
    """Walk the start latents along every fitted axis (except ``skip``, e.g. "Normal"), streamed
    as in :func:`walk_likelihoods`. Returns finding -> :class:`AxisWalk`."""
    out = {}
    for k, name in enumerate(axes.class_names):
        if name in skip or not axes.found[name]:
            continue
        out[name] = walk_likelihoods(generate, score, starts, axes.axes[k], steps, device=device,
                                     batch_size=batch_size, keep_images=keep_images, extra_scores=extra_scores)
    return out


def walk_summary(walks: Mapping[str, AxisWalk], class_names: Sequence[str],
                 steps: Sequence[float], *, severity: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Per finding: its likelihood at the start and end of the walk (mean over starts), the
    Spearman correlation of step with likelihood and, when ``severity`` (finding -> (N, S)) is
    given, with the measured severity of the walked images."""
    names = list(class_names)
    s = np.asarray(steps, dtype=np.float64)
    rows = {}
    for name, walk in walks.items():
        p = walk.probabilities[:, :, names.index(name)]  # (N, S)
        steps_all = np.broadcast_to(s, p.shape).ravel()
        row = {"likelihood at start": float(p[:, 0].mean()), "likelihood at end": float(p[:, -1].mean()),
               "Spearman(step, likelihood)": float(spearmanr(steps_all, p.ravel())[0])}
        if severity is not None and name in severity:
            v = np.asarray(severity[name])
            row["severity at start"] = float(v[:, 0].mean())
            row["severity at end"] = float(v[:, -1].mean())
            row["Spearman(step, severity)"] = float(spearmanr(steps_all, v.ravel())[0])
        rows[name] = row
    return pd.DataFrame(rows).T
