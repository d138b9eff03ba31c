"""Array plumbing shared by the metric modules: numpy or torch in, torch on the right device."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def as_tensor(array: Any, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
              name: str = "array") -> torch.Tensor:
    """Return ``array`` as a torch tensor, keeping a tensor's device unless ``device`` is given.

    numpy arrays, lists and tensors are accepted; anything else raises ``TypeError`` naming ``name``.
    """
    if isinstance(array, torch.Tensor):
        tensor = array.detach()
    elif isinstance(array, (np.ndarray, list, tuple, float, int, np.generic)):
        tensor = torch.as_tensor(np.asarray(array))
    else:
        raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(array).__name__}")
    if device is not None:
        tensor = tensor.to(device)
    if dtype is not None:
        tensor = tensor.to(dtype)
    return tensor


def as_features(array: Any, *, name: str, dtype: torch.dtype | None = None,
                device: torch.device | str | None = None) -> torch.Tensor:
    """A (N, D) floating feature matrix; a clear error when the shape or values are wrong."""
    tensor = as_tensor(array, device=device, name=name)
    if tensor.ndim != 2:
        raise ValueError(f"{name}: features must be 2-D (N, D), got shape {tuple(tensor.shape)}")
    if tensor.shape[0] < 2:
        raise ValueError(f"{name}: need at least 2 samples, got {tensor.shape[0]}")
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float64)
    if dtype is not None:
        tensor = tensor.to(dtype)
    if not _all_finite(tensor):
        raise ValueError(f"{name}: features contain NaN or infinite values")
    return tensor


def _all_finite(tensor: torch.Tensor) -> bool:
    """``torch.isfinite(tensor).all()`` without its temporaries (about 7x the input's size on a CPU).

    A NaN or an infinity makes the sum non-finite, so a finite sum proves every entry finite; only
    a sum that overflows needs the entry-by-entry check, done in row chunks.
    """
    if bool(torch.isfinite(tensor.sum())):
        return True
    rows = max(1, (1 << 20) // max(1, tensor[0].numel()))
    return all(bool(torch.isfinite(tensor[i:i + rows]).all()) for i in range(0, tensor.shape[0], rows))


def same_dim(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{name_a} has D={a.shape[1]} features but {name_b} has D={b.shape[1]}; "
                         f"both must come from the same extractor")

