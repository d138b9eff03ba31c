"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with a polynomial kernel,
averaged over random subsets.

Subsets are drawn exactly as torch-fidelity draws them (``numpy.random.RandomState(seed)``,
for each subset first ``choice(N_a, subset_size, replace=False)`` then the same for B), so with
the same seed both give the same subsets and the same numbers. Unlike a loop over subsets, which
computes a pair's kernel once for every subset holding it, the kernel of every pair is computed
once and summed over all subsets at once (see :func:`_subset_sums_numpy`), in float64 sums: the values
agree with an all-float64 computation to about 1e-9, closer than torch-fidelity's float32 sums.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from medgan.metrics._arrays import as_features, same_dim

__all__ = ["kernel_inception_distance"]

# Kernel entries per tile: bounds the working memory at any N (two float64 buffers of 8 MiB). Much
# smaller tiles run the GEMMs (and the products with the subset indicators) well below their peak.
BLOCK_ELEMENTS = 1 << 20
# float64 entries per row chunk of the subset loop's power and sums: two such buffers stay in L2
CHUNK_ELEMENTS = 1 << 15


def _polynomial_kernel(x, y, *, degree: int, gamma: float, coef0: float):
    """(gamma·x yᵀ + coef0)^degree for numpy arrays (CPU) or torch tensors (GPU), whole.

    The dot products stay in the input precision (float32 features: float32 GEMM, as the
    references do); the power and the sums run in float64 because MMD² is a small difference
    of large sums.
    """
    if isinstance(x, np.ndarray):
        kernel = (x @ y.T).astype(np.float64)
    else:
        kernel = torch.mm(x, y.T).to(torch.float64)
    kernel *= gamma
    kernel += coef0
    return kernel ** degree


def _power_in(dots: np.ndarray, base: np.ndarray, power: np.ndarray, *, degree, gamma: float,
              coef0: float) -> np.ndarray:
    """(gamma·dots + coef0)^degree in float64, in the flat buffers ``base`` and ``power`` (at least
    ``dots.size`` entries each; ``dots`` may live in ``power``'s memory). An integer power is a chain
    of in-place products (``np.power`` is ~20x slower than a multiply)."""
    size = dots.size
    k = base[:size].reshape(dots.shape)
    np.multiply(dots, np.float64(gamma), out=k)  # a float64 scalar: the product runs in float64
    k += coef0
    if float(degree) != int(degree) or degree < 1:
        return np.power(k, degree, out=k)
    if degree == 1:
        return k
    result = power[:size].reshape(dots.shape)  # the dots are no longer needed
    np.multiply(k, k, out=result)
    for _ in range(int(degree) - 2):
        result *= k
    return result


def _kernel_block(x: np.ndarray, y: np.ndarray, base: np.ndarray, power: np.ndarray, *, degree, gamma: float,
                  coef0: float) -> np.ndarray:
    """(gamma·x yᵀ + coef0)^degree like :func:`_polynomial_kernel`, in the flat float64 buffers
    ``base`` and ``power`` instead of new arrays: the dot products (input precision) are written
    into ``power``'s memory, read once into ``base`` in float64, then overwritten by the power."""
    shape = (x.shape[0], y.shape[0])
    dots = power.view(np.result_type(x, y))[:shape[0] * shape[1]].reshape(shape)  # float32 dots fit in float64 memory
    np.matmul(x, y.T, out=dots)
    return _power_in(dots, base, power, degree=degree, gamma=gamma, coef0=coef0)


def _subset_sums_numpy(x: np.ndarray, y: np.ndarray, in_x: np.ndarray, in_y: np.ndarray, *, kernel: dict,
                       symmetric: bool, tile: int | None = None,
                       buffers: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """For every subset s: Σ_{i∈Sx(s), j∈Sy(s)} k(x_i, y_j), and Σ_{i∈Sx(s)} k(x_i, x_i) when ``symmetric``
    (y is x).

    ``in_x`` (N_x, S) and ``in_y`` (N_y, S) are boolean subset memberships. The kernel of every pair is
    computed once, in square tiles of at most ``BLOCK_ELEMENTS`` entries (square: the float32 GEMM
    runs near its peak, as on torch-fidelity's 1000 x 1000 subsets), and each tile meets every
    subset in one product ``K_tile @ w_y``: the same pairs the per-subset loop forms, each computed
    once instead of once per subset that holds it. When y is x only the tiles on and above the
    diagonal are computed (k is symmetric); those above it count twice. The buffers are allocated once
    (or passed in as ``buffers``, two flat float64 arrays of at least ``tile**2`` entries).
    """
    n_x, n_y = x.shape[0], y.shape[0]
    w_y = in_y.astype(np.float64)  # float64 0/1: exact counts in the products
    tile = max(1, math.isqrt(BLOCK_ELEMENTS)) if tile is None else tile
    size = min(tile, n_x) * min(tile, n_y)
    base, power = buffers if buffers is not None else (np.empty(size), np.empty(size))
    total = np.zeros(in_x.shape[1])
    diagonal = np.zeros(in_x.shape[1]) if symmetric else None
    for r0 in range(0, n_x, tile):
        r1 = min(r0 + tile, n_x)
        per_row = np.zeros((r1 - r0, in_x.shape[1]))  # Σ_j k(x_i, y_j) w_y[j, s] for this tile row
        for c0 in range(r0 if symmetric else 0, n_y, tile):
            c1 = min(c0 + tile, n_y)
            k = _kernel_block(x[r0:r1], y[c0:c1], base, power, **kernel)
            if symmetric and c0 > r0:
                per_row += 2 * (k @ w_y[c0:c1])  # this tile and its mirror image below the diagonal
            else:
                per_row += k @ w_y[c0:c1]
            if symmetric and c0 == r0:
                diagonal += in_x[r0:r1].T.astype(np.float64) @ np.diagonal(k)
        total += np.einsum("rs,rs->s", in_x[r0:r1].astype(np.float64), per_row)
    return total, diagonal


def _subset_sums_torch(x, y, wx, wy, *, kernel: dict, block: int):
    """:func:`_subset_sums_numpy` on a GPU (float64 indicators ``wx``/``wy``; whole rows per block)."""
    total = np.zeros(wx.shape[1])
    diagonal = np.zeros(wx.shape[1]) if y is x else None
    for start in range(0, x.shape[0], block):
        rows = slice(start, start + block)
        k = _polynomial_kernel(x[rows], y, **kernel)
        total += (wx[rows] * (k @ wy)).sum(0).cpu().numpy()
        if diagonal is not None:
            diagonal += (wx[rows].T @ torch.diagonal(k[:, rows])).cpu().numpy()
        del k
    return total, diagonal


def _kernel_total(dots: np.ndarray, chunk: np.ndarray, scratch: np.ndarray, *, degree, gamma: float,
                  coef0: float) -> float:
    """Σ of (gamma·dots + coef0)^degree over a whole float32 dot-product matrix, in float64, a few rows
    at a time: each row chunk's float64 kernel (``chunk``/``scratch``, flat buffers) stays in the cache,
    where whole-matrix float64 passes would stream 8 MiB through memory several times."""
    rows = max(1, chunk.size // dots.shape[1])
    total = 0.0
    for r0 in range(0, dots.shape[0], rows):
        part = dots[r0:r0 + rows]
        total += float(_power_in(part, chunk, scratch, degree=degree, gamma=gamma, coef0=coef0).sum())
    return total


def _per_subset(a, b, draws: list[tuple[np.ndarray, np.ndarray]], *, kernel: dict) -> tuple[float, float]:
    """The subset loop over ``draws`` (index arrays into a and b): cheaper than all pairs when the subsets
    cover few of the pairs. On a CPU each subset's three kernels are one float32 product each, shaped as
    torch-fidelity's (x·xᵀ and y·yᵀ take numpy's BLAS ``syrk`` path: half the products), and their
    sums and traces run in float64 row chunks (:func:`_kernel_total`); the subset copies, the dot
    matrix and the chunk buffers are allocated once for all subsets."""
    mmds = np.empty(len(draws))
    m = len(draws[0][0])
    if isinstance(a, np.ndarray):
        x, y = np.empty((m, a.shape[1]), a.dtype), np.empty((m, b.shape[1]), b.dtype)
        dots = np.empty((m, m), np.result_type(a, b))
        chunk, scratch = (np.empty(max(CHUNK_ELEMENTS, m)) for _ in range(2))  # at least one row
        buffers = dict(chunk=chunk, scratch=scratch, **kernel)

        def total(u, v) -> tuple[float, float]:
            np.matmul(u, v.T, out=dots)
            trace = float(_power_in(np.diagonal(dots)[None], chunk, scratch, **kernel).sum()) if u is v else 0.0
            return _kernel_total(dots, **buffers), trace

        for i, (idx_a, idx_b) in enumerate(draws):
            np.take(a, idx_a, axis=0, out=x, mode="clip")  # clip: unbuffered (the indices are valid)
            np.take(b, idx_b, axis=0, out=y, mode="clip")
            (k_xx, trace_xx), (k_yy, trace_yy), (k_xy, _) = total(x, x), total(y, y), total(x, y)
            mmds[i] = (k_xx - trace_xx + k_yy - trace_yy) / (m * (m - 1)) - 2 * k_xy / (m * m)
        return float(mmds.mean()), float(mmds.std())
    for i, (idx_a, idx_b) in enumerate(draws):
        x, y = a[torch.from_numpy(idx_a).to(a.device)], b[torch.from_numpy(idx_b).to(a.device)]
        k_xx, k_yy = _polynomial_kernel(x, x, **kernel), _polynomial_kernel(y, y, **kernel)
        k_xy = _polynomial_kernel(x, y, **kernel)
        mmds[i] = float((k_xx.sum() - torch.trace(k_xx) + k_yy.sum() - torch.trace(k_yy)) / (m * (m - 1))
                        - 2 * k_xy.sum() / (m * m))
    return float(mmds.mean()), float(mmds.std())


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
    # the subsets torch-fidelity draws (for each subset: A, then B); copies, since each draw is a view
    # of a whole permutation of N (kept, 100 views of 60k would hold 92 MiB)
    draws = [(rng.choice(n_a, subset_size, replace=False).copy(), rng.choice(n_b, subset_size, replace=False).copy())
             for _ in range(subsets)]
    m = subset_size
    # rows that no subset holds are never needed
    used_a, used_b = (np.unique(np.concatenate([d[side] for d in draws])) for side in (0, 1))
    all_pairs = len(used_a) ** 2 / 2 + len(used_b) ** 2 / 2 + len(used_a) * len(used_b)  # k_aa, k_bb symmetric
    if subsets * 3 * m * m < all_pairs:
        return _per_subset(a, b, draws, kernel=kernel)  # few small subsets of a large set
    in_a, in_b = np.zeros((n_a, subsets), dtype=bool), np.zeros((n_b, subsets), dtype=bool)  # memberships
    for i, (idx_a, idx_b) in enumerate(draws):
        in_a[idx_a, i] = True
        in_b[idx_b, i] = True
    if len(used_a) < 0.9 * n_a or len(used_b) < 0.9 * n_b:  # then worth a copy of the features
        a, b, in_a, in_b = a[used_a], b[used_b], in_a[used_a], in_b[used_b]
    if isinstance(a, np.ndarray):
        sum_aa, trace_aa = _subset_sums_numpy(a, a, in_a, in_a, kernel=kernel, symmetric=True)
        sum_bb, trace_bb = _subset_sums_numpy(b, b, in_b, in_b, kernel=kernel, symmetric=True)
        sum_ab, _ = _subset_sums_numpy(a, b, in_a, in_b, kernel=kernel, symmetric=False)
    else:
        wa, wb = (torch.from_numpy(w.astype(np.float64)).to(a.device) for w in (in_a, in_b))
        block = max(1, 2 * BLOCK_ELEMENTS // max(len(a), len(b)))  # float64 kernel only
        sum_aa, trace_aa = _subset_sums_torch(a, a, wa, wa, kernel=kernel, block=block)
        sum_bb, trace_bb = _subset_sums_torch(b, b, wb, wb, kernel=kernel, block=block)
        sum_ab, _ = _subset_sums_torch(a, b, wa, wb, kernel=kernel, block=block)
    mmds = ((sum_aa - trace_aa) + (sum_bb - trace_bb)) / (m * (m - 1)) - 2 * sum_ab / (m * m)
    return float(mmds.mean()), float(mmds.std())
