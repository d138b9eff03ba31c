"""Fréchet distance between two feature sets (FID when the features are Inception pool features).

    d² = ||mu_a - mu_b||² + Tr(S_a) + Tr(S_b) - 2 Tr( (S_a S_b)^{1/2} )

The last trace is computed without a matrix square root (the slow, complex-valued
``scipy.linalg.sqrtm`` route of pytorch-fid): write each covariance as S = F Fᵀ, then the
eigenvalues of S_a S_b equal those of the symmetric PSD matrix (F_bᵀ F_a)ᵀ (F_bᵀ F_a), so
``Tr sqrt(S_a S_b)`` is the sum of the square roots of the eigenvalues of one symmetric matrix
(a nuclear norm). F is a Cholesky factor when the covariance is full rank, an eigen square root
when Cholesky fails, and the centred data itself when N <= D — so rank-deficient covariances
(N < D) never produce complex numbers. Everything runs in float64 on the features' device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.linalg.blas import dsyrk

from medgan.metrics._arrays import as_features, as_tensor

__all__ = ["frechet_distance", "frechet_distance_from_stats", "feature_statistics"]


def feature_statistics(feats: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of a (N, D) feature matrix, float64."""
    x = as_features(feats, name="feats", dtype=torch.float64)
    mean = x.mean(dim=0)
    centred = x - mean
    return mean, centred.T @ centred / (x.shape[0] - 1)


def _psd_factor(cov: torch.Tensor) -> torch.Tensor:
    """F with cov = F Fᵀ: Cholesky if positive definite, else the eigen square root (clamped ≥ 0)."""
    factor, info = torch.linalg.cholesky_ex(cov)
    if int(info) == 0:
        return factor
    eigvals, eigvecs = torch.linalg.eigh(cov)
    return eigvecs * eigvals.clamp_min(0).sqrt()


def _trace_sqrt_product(factor_a: torch.Tensor, factor_b: torch.Tensor) -> torch.Tensor:
    """Tr sqrt(F_a F_aᵀ F_b F_bᵀ) = sum of singular values of F_bᵀ F_a, via one symmetric eigensolve."""
    return _trace_sqrt_of_cross(factor_b.T @ factor_a)


def _smaller_gram(cross: torch.Tensor) -> torch.Tensor:
    return cross.T @ cross if cross.shape[1] <= cross.shape[0] else cross @ cross.T


def _trace_sqrt_of_cross(cross: torch.Tensor) -> torch.Tensor:
    """Sum of the singular values of ``cross`` (r_b, r_a), from the eigenvalues of its smaller Gram."""
    gram = _smaller_gram(cross)
    eigvals = torch.linalg.eigvalsh(gram)
    return eigvals.clamp_min(0).sqrt().sum()


CHUNK_ROWS = 1024  # rows converted to float64 at a time: the covariance never needs a float64 copy of the data


def _factor_from_features(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, trace of covariance, F with cov = F Fᵀ) choosing the cheaper exact factor.

    ``x`` may be float32: the mean and the covariance are accumulated in float64 a chunk of
    rows at a time, so memory holds the D×D covariance and one chunk, not a float64 copy of x.
    """
    n, d = x.shape
    mean = torch.zeros(d, dtype=torch.float64, device=x.device)
    for start in range(0, n, CHUNK_ROWS):
        mean += x[start:start + CHUNK_ROWS].to(torch.float64).sum(dim=0)
    mean /= n
    if n <= d:
        # cov = Aᵀ A with A the scaled centred data: rank ≤ N-1, no D×D matrix needed at all.
        factor = (x.to(torch.float64) - mean).T / (n - 1) ** 0.5  # (D, N)
        return mean, factor.square().sum(), factor
    cov = _Gram(d, x.device)
    for start in range(0, n, CHUNK_ROWS):
        centred = x[start:start + CHUNK_ROWS].to(torch.float64, copy=True)
        centred -= mean
        cov.add(centred)
        del centred
    cov = cov.result()
    cov /= n - 1
    trace = torch.diagonal(cov).sum()
    factor = _psd_factor(cov)  # reads the lower triangle only
    del cov
    return mean, trace, factor


class _Gram:
    """Accumulates Σ Aᵀ A over chunks A in place. On CPU with BLAS syrk (half the work of a general
    product, and no temporary D×D product: scipy's wrapper updates the matrix it is given); on
    GPU with addmm."""

    def __init__(self, d: int, device: torch.device):
        self.device = device
        if device.type == "cpu":
            self.upper = np.zeros((d, d), order="F")  # syrk fills the upper triangle
        else:
            self.full = torch.zeros(d, d, dtype=torch.float64, device=device)

    def add(self, centred: torch.Tensor) -> None:
        if self.device.type == "cpu":
            # a C-order (n, D) array is the Fortran (D, n) matrix Aᵀ: trans=0 gives Aᵀ A
            self.upper = dsyrk(1.0, centred.numpy().T, beta=1.0, c=self.upper, trans=0, lower=0, overwrite_c=1)
        else:
            self.full.addmm_(centred.T, centred)

    def result(self) -> torch.Tensor:
        """The Gram matrix; on CPU only its lower triangle holds values (the transpose of the upper
        triangle syrk filled, a C-order view: no copy). Cholesky and eigh read only that triangle."""
        if self.device.type != "cpu":
            return self.full
        return torch.from_numpy(self.upper.T)


def frechet_distance(feats_a: Any, feats_b: Any) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    Args:
        feats_a, feats_b: (N_a, D) and (N_b, D) features (numpy or torch; computed on the
            device of ``feats_a`` in float64). N may be smaller than D.

    Returns:
        The squared Fréchet distance (the number reported as FID), a float ≥ 0 up to rounding.
    """
    shape_a, shape_b = np.shape(feats_a), np.shape(feats_b)
    dim_a, dim_b = shape_a[-1:], shape_b[-1:]
    if len(shape_a) == len(shape_b) == 2 and dim_a != dim_b:
        raise ValueError(f"feats_a has D={dim_a[0]} features but feats_b has D={dim_b[0]}; "
                         f"both must come from the same extractor")
    # One set at a time, in the features' own precision (float64 happens chunk by chunk).
    a = as_features(feats_a, name="feats_a")
    device = a.device
    mean_a, trace_a, factor_a = _factor_from_features(a)
    del a
    b = as_features(feats_b, name="feats_b", device=device)
    mean_b, trace_b, factor_b = _factor_from_features(b)
    del b
    cross = factor_b.T @ factor_a
    del factor_a, factor_b  # each step keeps only what the next needs
    gram = _smaller_gram(cross)
    del cross
    trace_sqrt = torch.linalg.eigvalsh(gram).clamp_min(0).sqrt().sum()
    diff = mean_a - mean_b
    return float(diff @ diff + trace_a + trace_b - 2 * trace_sqrt)


def frechet_distance_from_stats(mean_a: Any, cov_a: Any, mean_b: Any, cov_b: Any) -> float:
    """Fréchet distance from precomputed statistics (e.g. cached real-image mean and covariance).

    Args:
        mean_a, mean_b: (D,) means. cov_a, cov_b: (D, D) symmetric positive semi-definite covariances.
    """
    cov_a_t = as_tensor(cov_a, dtype=torch.float64, name="cov_a")
    device = cov_a_t.device
    cov_b_t = as_tensor(cov_b, dtype=torch.float64, device=device, name="cov_b")
    mu_a = as_tensor(mean_a, dtype=torch.float64, device=device, name="mean_a").reshape(-1)
    mu_b = as_tensor(mean_b, dtype=torch.float64, device=device, name="mean_b").reshape(-1)
    d = mu_a.shape[0]
    for name, cov in (("cov_a", cov_a_t), ("cov_b", cov_b_t)):
        if cov.shape != (d, d):
            raise ValueError(f"{name}: expected shape ({d}, {d}) to match the means, got {tuple(cov.shape)}")
    if mu_b.shape[0] != d:
        raise ValueError(f"mean_b: expected length {d}, got {mu_b.shape[0]}")
    # Symmetrise: covariances loaded from disk or summed in float32 may be off by rounding.
    cov_a_t = (cov_a_t + cov_a_t.T) / 2
    cov_b_t = (cov_b_t + cov_b_t.T) / 2
    trace_sqrt = _trace_sqrt_product(_psd_factor(cov_a_t), _psd_factor(cov_b_t))
    diff = mu_a - mu_b
    return float(diff @ diff + torch.diagonal(cov_a_t).sum() + torch.diagonal(cov_b_t).sum() - 2 * trace_sqrt)
