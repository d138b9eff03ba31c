"""Pieces every architecture family shares."""

from __future__ import annotations

from torch import nn


def count_parameters(module: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of parameters of ``module`` (only those that require grad, unless ``trainable_only=False``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
