"""k-NN manifold metrics: improved precision/recall (Kynkäänniemi et al. 2019) and
density/coverage (Naeem et al. 2020), from one chunked k-NN pass.

Each sample's manifold ball has radius = distance to its k-th nearest neighbour in its own set
(excluding itself). With real X, fake Y and d(i, j) = ||x_i - y_j||:
    precision = mean_j [∃ i: d(i,j) < r_real,k(i)]        recall   = mean_i [∃ j: d(i,j) < r_fake,k(j)]
    density   = 1/(k M) Σ_j Σ_i [d(i,j) < r_real,k(i)]    coverage = mean_i [∃ j: d(i,j) < r_real,k(i)]
(the same definitions and tie rule, strict <, as the prdc package). Distances are exact float64
decisions (see ``_neighbours``), computed in row blocks: no N×N matrix is ever held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from medgan.metrics._arrays import as_features, same_dim
from medgan.metrics._neighbours import PairwiseTiles, kth_neighbour_sq_distances

__all__ = ["improved_precision_recall", "density_coverage", "manifold_metrics", "ManifoldMetrics"]


@dataclass(frozen=True)
class ManifoldMetrics:
    precision: float
    recall: float
    density: float
    coverage: float
    k_precision_recall: int
    k_density_coverage: int


def manifold_metrics(real: Any, fake: Any, *, k_precision_recall: int = 3, k_density_coverage: int = 5,
                     block_size: int | None = None) -> ManifoldMetrics:
    """Improved precision/recall and density/coverage in one pass.

    Args:
        real, fake: (N, D) and (M, D) features (numpy or torch; computed on the device of ``real``).
        k_precision_recall: k of improved precision/recall (paper: 3).
        k_density_coverage: k of density/coverage (paper: 5).
        block_size: rows per distance tile; None picks ~16M elements per tile.

    Returns:
        ``ManifoldMetrics``; precision, recall, coverage in [0, 1], density ≥ 0 (≈1 when fake ~ real).
    """
    for name, k in (("k_precision_recall", k_precision_recall), ("k_density_coverage", k_density_coverage)):
        if int(k) != k or k < 1:
            raise ValueError(f"{name} must be a positive integer, got {k}")
    x = as_features(real, name="real")
    y = as_features(fake, name="fake", device=x.device)
    same_dim(x, y, "real", "fake")
    centre = x.to(torch.float64).mean(dim=0)  # distances are translation-invariant; centring cuts rounding
    ks = tuple(sorted({k_precision_recall, k_density_coverage}))
    real_radius_sq = kth_neighbour_sq_distances(x, ks, centre=centre, block_size=block_size)
    fake_radius_sq = kth_neighbour_sq_distances(y, (k_precision_recall,), centre=centre,
                                                block_size=block_size)[k_precision_recall]

    n, m = x.shape[0], y.shape[0]
    fake_in_real_pr = torch.zeros(m, dtype=torch.bool, device=x.device)   # precision
    real_in_fake = torch.zeros(n, dtype=torch.bool, device=x.device)      # recall
    fake_count_dc = torch.zeros(m, dtype=torch.float64, device=x.device)  # density
    real_covered = torch.zeros(n, dtype=torch.bool, device=x.device)      # coverage
    tiles = PairwiseTiles(x, y, centre=centre, block_size=block_size)
    for start, stop, sq, tol in tiles.blocks():
        inside_real_pr = tiles.below(start, sq, tol, real_radius_sq[k_precision_recall][start:stop, None])
        fake_in_real_pr |= inside_real_pr.any(dim=0)
        if k_density_coverage == k_precision_recall:
            inside_real_dc = inside_real_pr
        else:
            inside_real_dc = tiles.below(start, sq, tol, real_radius_sq[k_density_coverage][start:stop, None])
        fake_count_dc += inside_real_dc.sum(dim=0)
        real_covered[start:stop] = inside_real_dc.any(dim=1)
        real_in_fake[start:stop] = tiles.below(start, sq, tol, fake_radius_sq[None, :]).any(dim=1)
    return ManifoldMetrics(
        precision=float(fake_in_real_pr.double().mean()),
        recall=float(real_in_fake.double().mean()),
        density=float(fake_count_dc.mean() / k_density_coverage),
        coverage=float(real_covered.double().mean()),
        k_precision_recall=int(k_precision_recall),
        k_density_coverage=int(k_density_coverage),
    )


def improved_precision_recall(real: Any, fake: Any, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of (M, D) fake vs (N, D) real features.

    Radius of each sample = distance to its k-th nearest neighbour in its own set, excluding itself.
    Returns (precision, recall), both in [0, 1].
    """
    result = manifold_metrics(real, fake, k_precision_recall=k, k_density_coverage=k)
    return result.precision, result.recall


def density_coverage(real: Any, fake: Any, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) of (M, D) fake vs (N, D) real features.

    Returns (density ≥ 0, ≈1 for matching distributions; coverage in [0, 1]).
    """
    result = manifold_metrics(real, fake, k_precision_recall=k, k_density_coverage=k)
    return result.density, result.coverage
