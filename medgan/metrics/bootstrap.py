"""Uncertainty: percentile bootstrap confidence intervals and mean ± sd over generation seeds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = ["bootstrap_ci", "BootstrapCI", "mean_sd", "MeanSD"]


@dataclass(frozen=True)
class BootstrapCI:
    estimate: float      # the metric on the full data
    low: float           # alpha/2 percentile of the bootstrap distribution
    high: float          # 1 - alpha/2 percentile
    alpha: float
    n_boot: int          # resamples drawn
    n_valid: int         # resamples where the metric was defined (e.g. AUROC needs both classes)

    def __str__(self) -> str:
        return f"{self.estimate:.4g} [{self.low:.4g}, {self.high:.4g}] ({100 * (1 - self.alpha):g}% CI)"


def bootstrap_ci(metric_fn: Callable[..., float], *arrays: Any, n_boot: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> BootstrapCI:
    """Percentile bootstrap CI of ``metric_fn(*arrays)``, resampling cases (axis 0) jointly.

    Args:
        metric_fn: returns a scalar from arrays that share their first axis (e.g. ``auroc``
            with (labels, scores)).
        arrays: numpy arrays or tensors with the same length N along axis 0.
        n_boot: resamples; alpha: 1 - coverage (0.05 → 95% CI); seed: numpy Generator seed.

    Resamples on which the metric raises ``ValueError`` or returns NaN (e.g. one class only)
    are skipped and counted in ``n_valid``; fewer than half valid raises.
    Resample rows by patient (one row per patient) when a patient contributes several cases.
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    arrays_np = [np.asarray(a.detach().cpu() if hasattr(a, "detach") else a) for a in arrays]
    n = arrays_np[0].shape[0]
    for i, a in enumerate(arrays_np):
        if a.shape[0] != n:
            raise ValueError(f"array #{i + 1} has length {a.shape[0]} along axis 0, array #1 has {n}")
    estimate = float(metric_fn(*arrays_np))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, size=n)
        try:
            value = float(metric_fn(*(a[idx] for a in arrays_np)))
        except ValueError:
            continue
        if np.isfinite(value):
            values.append(value)
    if len(values) < max(1, n_boot // 2):
        raise ValueError(f"bootstrap_ci: the metric was defined on only {len(values)} of {n_boot} resamples")
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return BootstrapCI(estimate, float(low), float(high), alpha, n_boot, len(values))


@dataclass(frozen=True)
class MeanSD:
    mean: float
    sd: float            # sample standard deviation (ddof=1); 0 for a single value
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.sd:.4g} (n={self.n})"


def mean_sd(values: Any) -> MeanSD:
    """Mean ± sd of one metric over generation seeds (as the CT study reports FID over 5 seeds)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0 or not np.isfinite(v).all():
        raise ValueError(f"mean_sd: values must be a non-empty list of finite numbers, got {values!r}")
    return MeanSD(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size))
