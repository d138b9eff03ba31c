"""PSNR and SSIM for 2-D images and 3-D volumes, with an explicit data range.

``data_range`` is never guessed from the data: a CT slice scored in a [-1000, 400] HU window
has data_range=1400; a PET volume scored up to a declared SUV ceiling of 15 has data_range=15.

SSIM follows Wang et al. 2004 as scikit-image (``gaussian_weights=True, sigma=1.5,
use_sample_covariance=False``) and torchmetrics do: an 11-tap Gaussian window (σ = 1.5) per
spatial axis, K1 = 0.01, K2 = 0.03, and the SSIM map averaged over the region where the
window fits entirely inside the image (no padding artefacts).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medgan.metrics._arrays import as_tensor

__all__ = ["psnr", "ssim"]


def _pair(pred: Any, target: Any, data_range: float) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Both arrays as float64 (N, C, *spatial) tensors; flag whether the input was batched."""
    p = as_tensor(pred, dtype=torch.float64, name="pred")
    t = as_tensor(target, dtype=torch.float64, name="target", device=p.device)
    if p.shape != t.shape:
        raise ValueError(f"pred has shape {tuple(p.shape)} but target has {tuple(t.shape)}")
    if data_range is None or not np.isfinite(data_range) or data_range <= 0:
        raise ValueError(f"data_range must be a positive number (e.g. the HU window width), got {data_range}")
    if p.ndim in (2, 3):  # one 2-D image (H, W) or one volume (D, H, W)
        return p[None, None], t[None, None], False
    if p.ndim in (4, 5):  # (N, C, H, W) or (N, C, D, H, W)
        return p, t, True
    raise ValueError(f"pred/target: expected (H, W), (D, H, W), (N, C, H, W) or (N, C, D, H, W); got {tuple(p.shape)}")


def _reduce(per_sample: torch.Tensor, batched: bool, reduction: str) -> float | np.ndarray:
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    if not batched:
        return float(per_sample[0])
    return float(per_sample.mean()) if reduction == "mean" else per_sample.cpu().numpy()


def psnr(pred: Any, target: Any, data_range: float, *, reduction: str = "mean") -> float | np.ndarray:
    """Peak signal-to-noise ratio in dB: 10·log10(data_range² / MSE).

    Args:
        pred, target: same shape; (H, W) or (D, H, W) for one image/volume, or batched
            (N, C, H, W) / (N, C, D, H, W) — then PSNR is computed per sample (over C and space).
        data_range: max - min of the intensity scale (HU window width, SUV ceiling, 2 for [-1, 1]).
        reduction: 'mean' over the batch (float) or 'none' (array of N values).

    Identical inputs give +inf.
    """
    p, t, batched = _pair(pred, target, data_range)
    mse = (p - t).square().flatten(1).mean(dim=1)
    per_sample = 10 * torch.log10(data_range ** 2 / mse)
    return _reduce(per_sample, batched, reduction)


def _gaussian_taps(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    offsets = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    taps = torch.exp(-offsets.square() / (2 * sigma ** 2))
    return taps / taps.sum()


def _separable_valid_filter(x: torch.Tensor, taps: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """Gaussian-filter (N·C, 1, *spatial) with valid (unpadded) convolution along each spatial axis."""
    conv = F.conv2d if spatial_dims == 2 else F.conv3d
    for axis in range(spatial_dims):
        shape = [1, 1] + [1] * spatial_dims
        shape[2 + axis] = taps.shape[0]
        x = conv(x, taps.reshape(shape))
    return x


def ssim(pred: Any, target: Any, data_range: float, *, win_size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03, reduction: str = "mean") -> float | np.ndarray:
    """Structural similarity (Wang et al. 2004), Gaussian-weighted, 2-D or 3-D.

    Args:
        pred, target: same shape; (H, W), (D, H, W), (N, C, H, W) or (N, C, D, H, W). Channels are
            scored separately and averaged. Every spatial size must be ≥ ``win_size``.
        data_range: max - min of the intensity scale (explicit, never inferred).
        win_size, sigma: Gaussian window taps per axis and its σ in pixels/voxels.
        k1, k2: stabilising constants, C1 = (k1·data_range)², C2 = (k2·data_range)².
        reduction: 'mean' over the batch (float) or 'none' (array of N values).

    Returns:
        SSIM in [-1, 1]; 1 for identical inputs.
    """
    p, t, batched = _pair(pred, target, data_range)
    spatial_dims = p.ndim - 2
    if win_size % 2 == 0 or win_size < 3:
        raise ValueError(f"win_size must be odd and ≥ 3, got {win_size}")
    if min(p.shape[2:]) < win_size:
        raise ValueError(f"ssim: every spatial size must be ≥ win_size={win_size}, got {tuple(p.shape[2:])}")
    n, c = p.shape[:2]
    taps = _gaussian_taps(win_size, sigma, p.device)
    x = p.reshape(n * c, 1, *p.shape[2:])
    y = t.reshape(n * c, 1, *t.shape[2:])
    # One filtering pass over the five moments stacked along the batch axis.
    stacked = torch.cat([x, y, x * x, y * y, x * y])
    mu_x, mu_y, xx, yy, xy = _separable_valid_filter(stacked, taps, spatial_dims).chunk(5)
    var_x, var_y, cov = xx - mu_x.square(), yy - mu_y.square(), xy - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
    per_sample = ssim_map.reshape(n, -1).mean(dim=1)
    return _reduce(per_sample, batched, reduction)
