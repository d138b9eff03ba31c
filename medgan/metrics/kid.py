"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with a polynomial kernel,
averaged over random subsets.

Subsets are drawn exactly as torch-fidelity draws them (``numpy.random.RandomState(seed)``,
for each subset first ``choice(N_a, subset_size, replace=False)`` then the same for B), so with
the same seed both give the same subsets and the same numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medgan.metrics._arrays import as_features, same_dim

__all__ = ["kernel_inception_distance"]


def _polynomial_kernel(x, y, *, degree: int, gamma: float, coef0: float):
    """(gamma·x yᵀ + coef0)^degree for numpy arrays (CPU) or torch tensors (GPU).

    The dot products stay in the input precision (float32 features: float32 GEMM, as the
    references do); the power and the sums run in float64 because MMD² is a small difference
    of large sums. On CPU this is plain numpy: numpy turns x xᵀ into BLAS syrk, and keeping torch
    ops out of the loop keeps torch's spinning OpenMP threads from slowing numpy's BLAS.
    """
    if isinstance(x, np.ndarray):
        dots = x @ x.T if y is x else x @ y.T
        kernel = dots.astype(np.float64)
    else:
        kernel = torch.mm(x, y.T).to(torch.float64)
    kernel *= gamma
    kernel += coef0
    return kernel ** degree


def _unbiased_mmd2(k_xx, k_xy, k_yy) -> float:
    m = k_xx.shape[0]
    trace = np.trace if isinstance(k_xx, np.ndarray) else torch.trace
    sum_xx = k_xx.sum() - trace(k_xx)
    sum_yy = k_yy.sum() - trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2 * k_xy.sum() / (m * m))


def kernel_inception_distance(feats_a: Any, feats_b: Any, subsets: int = 100, subset_size: int = 1000,
                              degree: int = 3, gamma: float | None = None, coef0: float = 1,
                              seed: int = 2020) -> tuple[float, float]:
    """KID between two feature sets.

    Args:
        feats_a, feats_b: (N_a, D), (N_b, D) features; both N must be ≥ ``subset_size``.
        subsets: number of random subsets; subset_size: samples per subset (without replacement).
        degree, gamma, coef0: kernel k(x, y) = (gamma·xᵀy + coef0)^degree; gamma=None means 1/D.
        seed: seed of the subset draws (torch-fidelity's default is 2020).

    Returns:
        (mean, std) of the per-subset unbiased MMD² (std with ddof=0, as torch-fidelity).
        Values slightly below 0 are valid and mean the distributions are very close.
    """
    a = as_features(feats_a, name="feats_a")
    b = as_features(feats_b, name="feats_b", device=a.device, dtype=a.dtype)
    same_dim(a, b, "feats_a", "feats_b")
    n_a, n_b = a.shape[0], b.shape[0]
    if subset_size < 2:
        raise ValueError(f"subset_size must be ≥ 2, got {subset_size}")
    if n_a < subset_size or n_b < subset_size:
        raise ValueError(f"KID subset_size={subset_size} is larger than the number of samples "
                         f"(feats_a: {n_a}, feats_b: {n_b}); pass a smaller subset_size")
    if subsets < 1:
        raise ValueError(f"subsets must be ≥ 1, got {subsets}")
    gamma_value = 1.0 / a.shape[1] if gamma is None else float(gamma)
    rng = np.random.RandomState(seed)
    if a.device.type == "cpu":
        a, b = a.numpy(), b.numpy()
    kernel = dict(degree=degree, gamma=gamma_value, coef0=coef0)
    mmds = np.empty(subsets, dtype=np.float64)
    for i in range(subsets):
        idx_a = rng.choice(n_a, subset_size, replace=False)
        idx_b = rng.choice(n_b, subset_size, replace=False)
        if not isinstance(a, np.ndarray):
            idx_a, idx_b = torch.from_numpy(idx_a).to(a.device), torch.from_numpy(idx_b).to(a.device)
        x, y = a[idx_a], b[idx_b]
        mmds[i] = _unbiased_mmd2(_polynomial_kernel(x, x, **kernel), _polynomial_kernel(x, y, **kernel),
                                 _polynomial_kernel(y, y, **kernel))
    return float(mmds.mean()), float(mmds.std())
