"""Precision and recall for distributions (Sajjadi et al. 2018, "Assessing Generative Models via
Precision and Recall").

Both feature sets are clustered together (k-means on the union), each set becomes a histogram
over the clusters, and for every slope λ = tan(θ), θ ∈ (0, π/2):
    α(λ) = Σ_i min(λ·P_real(i), Q_fake(i))        (precision)
    β(λ) = α(λ) / λ                                 (recall)
The curve is averaged over ``num_runs`` clusterings. F_8 summarises recall, F_1/8 precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medgan.metrics._arrays import as_features, same_dim

__all__ = ["prd", "prd_from_histograms", "PRDCurve"]

_EPSILON = 1e-10  # keeps θ off 0 and π/2 (tan) and the F-score denominator off 0


@dataclass(frozen=True)
class PRDCurve:
    """A PRD curve: ``precision`` and ``recall`` are (num_angles,) arrays in [0, 1]."""

    precision: np.ndarray
    recall: np.ndarray

    def f_beta(self, beta: float) -> np.ndarray:
        """F_β at every point of the curve (β > 1 weighs recall, β < 1 precision)."""
        p, r = self.precision, self.recall
        return (1 + beta ** 2) * p * r / (beta ** 2 * p + r + _EPSILON)

    def max_f_beta(self, beta: float = 8) -> tuple[float, float]:
        """(max F_β, max F_1/β) over the curve — with β=8: (F_8 ~ recall, F_1/8 ~ precision)."""
        if beta <= 0:
            raise ValueError(f"beta must be positive, got {beta}")
        return float(self.f_beta(beta).max()), float(self.f_beta(1 / beta).max())


def prd_from_histograms(fake_hist: Any, real_hist: Any, *, num_angles: int = 1001) -> PRDCurve:
    """PRD curve of two histograms over the same bins (each normalised here to sum 1)."""
    fake = np.asarray(fake_hist, dtype=np.float64).ravel()
    real = np.asarray(real_hist, dtype=np.float64).ravel()
    if fake.shape != real.shape:
        raise ValueError(f"histograms differ in length: fake {fake.shape[0]}, real {real.shape[0]}")
    if (fake < 0).any() or (real < 0).any() or fake.sum() <= 0 or real.sum() <= 0:
        raise ValueError("histograms must be non-negative with a positive total")
    if num_angles < 3:
        raise ValueError(f"num_angles must be ≥ 3, got {num_angles}")
    fake, real = fake / fake.sum(), real / real.sum()
    slopes = np.tan(np.linspace(_EPSILON, np.pi / 2 - _EPSILON, num_angles))
    precision = np.minimum(real[None, :] * slopes[:, None], fake[None, :]).sum(axis=1)
    recall = precision / slopes
    # Rounding can push values a hair above 1.
    return PRDCurve(np.clip(precision, 0, 1), np.clip(recall, 0, 1))


def prd(real: Any, fake: Any, num_clusters: int = 20, num_angles: int = 1001, num_runs: int = 10,
        seed: int | None = None) -> PRDCurve:
    """PRD curve of generated features against real features.

    Args:
        real, fake: (N, D) features; equal N as in the paper (unequal N would weight the
            clustering towards the larger set), checked.
        num_clusters: k-means clusters on the union (paper: 20).
        num_angles: points on the curve (paper: 1001). num_runs: clusterings averaged (paper: 10).
        seed: seeds run i's ``MiniBatchKMeans`` with ``seed + i``; None is not reproducible.

    Returns:
        ``PRDCurve`` with ``.precision``, ``.recall`` and ``.max_f_beta(beta=8) -> (F_8, F_1/8)``.
    """
    from sklearn.cluster import MiniBatchKMeans  # local: scikit-learn import is slow

    real_t = as_features(real, name="real")
    fake_t = as_features(fake, name="fake")
    same_dim(real_t, fake_t, "real", "fake")
    if real_t.shape[0] != fake_t.shape[0]:
        raise ValueError(f"prd: real has {real_t.shape[0]} samples but fake has {fake_t.shape[0]}; "
                         "PRD needs equally many (subsample the larger set)")
    real_np = real_t.cpu().numpy().astype(np.float64)
    fake_np = fake_t.cpu().numpy().astype(np.float64)
    union = np.concatenate([fake_np, real_np])
    n_fake = fake_np.shape[0]
    precisions, recalls = [], []
    for run in range(num_runs):
        kmeans = MiniBatchKMeans(n_clusters=num_clusters, n_init=10,
                                 random_state=None if seed is None else seed + run)
        labels = kmeans.fit(union).labels_
        fake_hist = np.bincount(labels[:n_fake], minlength=num_clusters)
        real_hist = np.bincount(labels[n_fake:], minlength=num_clusters)
        curve = prd_from_histograms(fake_hist, real_hist, num_angles=num_angles)
        precisions.append(curve.precision)
        recalls.append(curve.recall)
    return PRDCurve(np.mean(precisions, axis=0), np.mean(recalls, axis=0))
