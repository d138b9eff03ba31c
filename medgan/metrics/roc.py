"""ROC metrics for the anomaly-detection and classification studies: AUROC, sensitivity /
specificity at a threshold, and DeLong's test for two correlated AUCs on the same cases.

DeLong, DeLong & Clarke-Pearson (1988), computed with midranks as in Sun & Xu (2014): for m
positives X and n negatives Y, the structural components are
    V10(x_i) = mean_j ψ(x_i, y_j),   V01(y_j) = mean_i ψ(x_i, y_j),   ψ = 1 if x > y, ½ if equal, 0 else,
AUC = mean V10 = mean V01, and Cov(AUC_a, AUC_b) = S10[a,b]/m + S01[a,b]/n with S the sample
covariances (ddof=1) of the components across cases.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import ndtr
from scipy.stats import rankdata

__all__ = ["auroc", "sensitivity_specificity", "delong_test", "delong_components"]


def _labels_scores(labels: Any, *scores: Any) -> tuple[np.ndarray, list[np.ndarray]]:
    y = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels).ravel()
    values = set(np.unique(y).tolist())
    if not values <= {0, 1, False, True}:
        raise ValueError(f"labels must be binary 0/1 (1 = positive), got values {sorted(values)[:5]}")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError("labels contain only one class; AUROC needs positives and negatives")
    out = []
    for i, s in enumerate(scores):
        s = np.asarray(s.detach().cpu() if hasattr(s, "detach") else s, dtype=np.float64).ravel()
        if s.shape != y.shape:
            raise ValueError(f"scores #{i + 1} has {s.shape[0]} values but labels has {y.shape[0]}")
        if not np.isfinite(s).all():
            raise ValueError(f"scores #{i + 1} contain NaN or infinite values")
        out.append(s)
    return y, out


def delong_components(labels: Any, scores: Any) -> tuple[float, np.ndarray, np.ndarray]:
    """(AUC, V10 per positive (m,), V01 per negative (n,)) — DeLong's structural components."""
    y, (s,) = _labels_scores(labels, scores)
    pos, neg = s[y], s[~y]
    m, n = pos.shape[0], neg.shape[0]
    rank_all = rankdata(np.concatenate([pos, neg]))  # midranks handle ties as ψ = ½
    rank_pos, rank_neg = rankdata(pos), rankdata(neg)
    v10 = (rank_all[:m] - rank_pos) / n          # share of negatives below each positive
    v01 = 1.0 - (rank_all[m:] - rank_neg) / m    # share of positives above each negative
    return float(v10.mean()), v10, v01


def auroc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve; labels 1 = positive, higher score = more positive. Ties count ½."""
    return delong_components(labels, scores)[0]


def sensitivity_specificity(labels: Any, scores: Any, threshold: float) -> tuple[float, float]:
    """(sensitivity, specificity) when a case is called positive iff ``score >= threshold``."""
    y, (s,) = _labels_scores(labels, scores)
    called = s >= threshold
    return float(called[y].mean()), float((~called[~y]).mean())


def delong_test(labels: Any, scores_a: Any, scores_b: Any) -> tuple[float, float, float]:
    """DeLong's two-sided test of AUC_a = AUC_b for two scores on the same cases.

    Returns:
        (auc_a, auc_b, p_value). Identical score vectors give p = 1 (zero difference, zero variance).
    """
    y, (a, b) = _labels_scores(labels, scores_a, scores_b)
    auc_a, v10_a, v01_a = delong_components(y, a)
    auc_b, v10_b, v01_b = delong_components(y, b)
    m, n = v10_a.shape[0], v01_a.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"DeLong's test needs at least 2 positives and 2 negatives, got {m} and {n}")
    s10 = np.cov(np.vstack([v10_a, v10_b]))
    s01 = np.cov(np.vstack([v01_a, v01_b]))
    cov = s10 / m + s01 / n
    var_diff = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = auc_a - auc_b
    if var_diff <= 1e-15:
        # Zero variance of the difference: the two scores rank every case pair the same way.
        return auc_a, auc_b, 1.0 if abs(diff) <= 1e-12 else 0.0
    z = diff / np.sqrt(var_diff)
    return auc_a, auc_b, float(2 * ndtr(-abs(z)))
