"""Intensity windowing and 2D geometry (crop, pad, resize) on numpy arrays."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def window(values: np.ndarray, *, low: float, high: float) -> np.ndarray:
    """Clip ``values`` to [low, high] and map linearly to float32 [-1, 1]."""
    if not high > low:
        raise ValueError(f"window needs high > low, got low={low}, high={high}")
    values = np.clip(np.asarray(values, dtype=np.float32), low, high)
    return ((values - low) / (high - low) * 2.0 - 1.0).astype(np.float32)


def window_hu(hu: np.ndarray, *, center_hu: float, width_hu: float) -> np.ndarray:
    """CT window (centre/width in HU) -> float32 [-1, 1]."""
    return window(hu, low=center_hu - width_hu / 2.0, high=center_hu + width_hu / 2.0)


def center_crop(array: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Centre crop of the last two axes to ``size`` (must not exceed the array)."""
    th, tw = (size, size) if isinstance(size, int) else size
    h, w = array.shape[-2:]
    if th > h or tw > w:
        raise ValueError(f"crop {th}x{tw} larger than image {h}x{w}")
    top, left = (h - th) // 2, (w - tw) // 2
    return array[..., top:top + th, left:left + tw]


def center_crop_or_pad(array: np.ndarray, size: int | tuple[int, int], *, fill: float = 0.0) -> np.ndarray:
    """Centre crop where larger, pad with ``fill`` where smaller, on the last two axes."""
    th, tw = (size, size) if isinstance(size, int) else size
    h, w = array.shape[-2:]
    if h > th or w > tw:
        array = center_crop(array, (min(h, th), min(w, tw)))
        h, w = array.shape[-2:]
    if h < th or w < tw:
        pad = [(0, 0)] * (array.ndim - 2) + [((th - h) // 2, th - h - (th - h) // 2),
                                             ((tw - w) // 2, tw - w - (tw - w) // 2)]
        array = np.pad(array, pad, mode="constant", constant_values=fill)
    return array


def resize(array: np.ndarray, size: int | tuple[int, int], *, mode: str = "area") -> np.ndarray:
    """Resize the last two axes of a float array (area averaging when shrinking, else bilinear)."""
    th, tw = (size, size) if isinstance(size, int) else size
    if array.shape[-2:] == (th, tw):
        return np.asarray(array, dtype=np.float32)
    lead = array.shape[:-2]
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).reshape(-1, 1, *array.shape[-2:])
    if mode == "area" and (th > array.shape[-2] or tw > array.shape[-1]):
        mode = "bilinear"
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    if mode in ("bilinear", "bicubic"):
        kwargs["antialias"] = True
    out = F.interpolate(tensor, size=(th, tw), mode=mode, **kwargs)
    return out.reshape(*lead, th, tw).numpy().astype(np.float32)


def nearest_resize(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize a label/mask array with nearest neighbour (keeps values in the label set)."""
    th, tw = (size, size) if isinstance(size, int) else size
    if mask.shape[-2:] == (th, tw):
        return np.asarray(mask, dtype=np.float32)
    lead = mask.shape[:-2]
    tensor = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)).reshape(-1, 1, *mask.shape[-2:])
    return F.interpolate(tensor, size=(th, tw), mode="nearest-exact").reshape(*lead, th, tw).numpy()
