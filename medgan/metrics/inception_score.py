"""Inception Score (Salimans et al. 2016): exp E_x KL(p(y|x) || p(y)), mean ± std over splits."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.special import entr

__all__ = ["inception_score"]


def _as_array(probs: Any) -> np.ndarray:
    if isinstance(probs, torch.Tensor):
        return probs.detach().cpu().numpy()  # no copy for a CPU tensor
    if isinstance(probs, (np.ndarray, list, tuple)):
        return np.asarray(probs)
    raise TypeError(f"probs: expected a numpy array or torch tensor, got {type(probs).__name__}")


def inception_score(probs: Any, splits: int = 10, *, shuffle_seed: int | None = None,
                    atol: float = 1e-3) -> tuple[float, float]:
    """Inception Score of class probabilities.

    Args:
        probs: (N, C) softmax outputs, rows summing to 1 (checked to ``atol``). Use the classifier
            the number is named after (Inception logits, or the domain CNN's head).
        splits: the N samples are cut into this many consecutive equal chunks (as torch-fidelity:
            chunk i is rows [i·N//splits, (i+1)·N//splits)).
        shuffle_seed: None keeps the given order; an int permutes rows first with
            ``numpy.random.RandomState(seed).permutation(N)`` exactly as torch-fidelity
            (whose default is shuffle with seed 2020).

    Returns:
        (mean, std) over splits, std with ddof=0. Ranges from 1 to C.
    """
    p = _as_array(probs)
    if p.ndim != 2:
        raise ValueError(f"probs: expected shape (N, C), got {tuple(p.shape)}")
    n = p.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits={splits} must be between 1 and the number of samples N={n}")
    order = np.random.RandomState(shuffle_seed).permutation(n) if shuffle_seed is not None else None
    scores = []
    # One split at a time in float64: nothing the size of the whole input is copied.
    for i in range(splits):
        rows = slice(i * n // splits, (i + 1) * n // splits)
        chunk = np.asarray(p[order[rows]] if order is not None else p[rows], dtype=np.float64)
        if (chunk < 0).any() or not np.allclose(chunk.sum(axis=1), 1.0, rtol=0.0, atol=atol):
            raise ValueError("probs: rows must be non-negative and sum to 1 (pass softmax outputs, not logits)")
        # E_x KL(p(y|x) || p(y)) = H(p(y)) - E_x H(p(y|x)); entr keeps 0·log 0 = 0.
        marginal = chunk.mean(axis=0)
        mean_kl = entr(marginal).sum() - entr(chunk).sum(axis=1).mean()
        scores.append(float(np.exp(mean_kl)))
    return float(np.mean(scores)), float(np.std(scores))
