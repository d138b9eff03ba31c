"""Inception Score (Salimans et al. 2016): exp E_x KL(p(y|x) || p(y)), mean ± std over splits."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medgan.metrics._arrays import as_tensor

__all__ = ["inception_score"]


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
    p = as_tensor(probs, dtype=torch.float64, name="probs")
    if p.ndim != 2:
        raise ValueError(f"probs: expected shape (N, C), got {tuple(p.shape)}")
    n = p.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits={splits} must be between 1 and the number of samples N={n}")
    if (p < 0).any() or not torch.allclose(p.sum(dim=1), torch.ones(n, dtype=p.dtype, device=p.device), atol=atol):
        raise ValueError("probs: rows must be non-negative and sum to 1 (pass softmax outputs, not logits)")
    if shuffle_seed is not None:
        p = p[torch.from_numpy(np.random.RandomState(shuffle_seed).permutation(n)).to(p.device)]
    log_p = torch.log(p.clamp_min(1e-300))
    scores = []
    for i in range(splits):
        chunk, log_chunk = p[i * n // splits:(i + 1) * n // splits], log_p[i * n // splits:(i + 1) * n // splits]
        marginal = chunk.mean(dim=0, keepdim=True)
        # 0·log 0 = 0: xlogy-style masking keeps zero probabilities from producing NaN.
        kl = torch.where(chunk > 0, chunk * (log_chunk - torch.log(marginal.clamp_min(1e-300))), 0.0)
        scores.append(float(kl.sum(dim=1).mean().exp()))
    return float(np.mean(scores)), float(np.std(scores))
