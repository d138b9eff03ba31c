"""LPIPS perceptual distance (Zhang et al. 2018) through the ``lpips`` package, the StarGAN v2
diversity protocol, and an in-domain fallback for machines without ImageNet weights.

The ``lpips`` wheel ships its calibrated linear layers, but the AlexNet/VGG trunk comes from
torchvision's ImageNet weights, which ``lpips`` would download. We build the trunk randomly
(``pnet_rand=True``, no download) and load a LOCAL torchvision state dict:
  alex: ``alexnet-owt-7be5be79.pth``    vgg: ``vgg16-397923af.pth``
given by argument or the env var ``MEDGAN_LPIPS_BACKBONE_WEIGHTS``.

Fallback (``domain_feature_distance``): the same recipe — unit-normalise each feature map along
channels, squared difference, spatial mean — on the feature maps of the study's own
``DomainCNN``, with uniform channel weights (LPIPS's "baseline" variant, no learned linear
layers). It is NOT LPIPS and must be reported as "LPIPS-style distance on <extractor name>".
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from medgan.atomic import torch_load
from medgan.metrics._arrays import as_tensor

__all__ = ["lpips_distance", "lpips_diversity", "load_lpips", "domain_feature_distance",
           "LPIPSWeightsNotFoundError", "LPIPS_BACKBONE_ENV"]

LPIPS_BACKBONE_ENV = "MEDGAN_LPIPS_BACKBONE_WEIGHTS"
_BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


class LPIPSWeightsNotFoundError(FileNotFoundError):
    """The ImageNet trunk weights LPIPS needs are not on this machine."""


def _backbone_path(net: str, backbone_weights: str | os.PathLike | None) -> Path:
    if net not in _BACKBONE_FILES:
        raise ValueError(f"LPIPS net must be one of {sorted(_BACKBONE_FILES)}, got {net!r}")
    given = backbone_weights if backbone_weights is not None else os.environ.get(LPIPS_BACKBONE_ENV)
    if given is None or not Path(given).is_file():
        where = f"'{given}' does not exist" if given is not None else f"no path given and ${LPIPS_BACKBONE_ENV} is not set"
        raise LPIPSWeightsNotFoundError(
            f"LPIPS ({net}) needs torchvision's ImageNet {net} weights and nothing is downloaded at run time: {where}. "
            f"Copy torchvision's '{_BACKBONE_FILES[net]}' onto this machine (e.g. from ~/.cache/torch/hub/checkpoints "
            f"on a machine with internet) and pass its path as backbone_weights= or set {LPIPS_BACKBONE_ENV}=/path/to/"
            f"{_BACKBONE_FILES[net]}. Without it the notebooks fall back to domain_feature_distance on the domain_cnn "
            f"extractor (an LPIPS-style distance, reported under that name).")
    return Path(given)


@functools.lru_cache(maxsize=4)
def _cached_lpips(net: str, path: str, device: str) -> torch.nn.Module:
    import lpips  # local: the package prints on import of some versions and pulls in torchvision

    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=` flag
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False)
    state = torch_load(path)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a torchvision state dict, got {type(state).__name__}")
    # lpips splits torchvision's `features` Sequential into slices whose children keep their
    # original indices as names: features.<i>.<param> -> slice<s>.<i>.<param>.
    loaded = 0
    for slice_module in model.net.children():
        for index, layer in slice_module.named_children():
            for param_name, param in layer.named_parameters(recurse=False):
                key = f"features.{index}.{param_name}"
                if key not in state:
                    raise ValueError(f"{path}: missing '{key}' — not a torchvision {net} state dict")
                if tuple(state[key].shape) != tuple(param.shape):
                    raise ValueError(f"{path}: '{key}' has shape {tuple(state[key].shape)}, "
                                     f"expected {tuple(param.shape)} for torchvision {net}")
                with torch.no_grad():
                    param.copy_(state[key])
                loaded += 1
    if loaded == 0:
        raise ValueError(f"{path}: no trunk parameters were loaded")
    return model.eval().to(device)


def load_lpips(*, net: str = "alex", backbone_weights: str | os.PathLike | None = None,
               device: str | torch.device | None = None) -> torch.nn.Module:
    """An ``lpips.LPIPS`` model with its trunk loaded from a local torchvision file (cached)."""
    path = _backbone_path(net, backbone_weights)
    device = str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    return _cached_lpips(net, str(path.resolve()), device)


def _as_images(x: Any, name: str) -> torch.Tensor:
    t = as_tensor(x, dtype=torch.float32, name=name)
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4:
        raise ValueError(f"{name}: expected (N, C, H, W) or (C, H, W) images in [-1, 1], got {tuple(t.shape)}")
    return t


def _channel_groups(x: torch.Tensor) -> list[torch.Tensor]:
    """3-channel views of x: RGB as is, grey repeated, any other C as C grey channels (averaged later)."""
    c = x.shape[1]
    if c == 3:
        return [x]
    return [x[:, i:i + 1].expand(-1, 3, -1, -1) for i in range(c)]


def lpips_distance(x: Any, y: Any, *, net: str = "alex", backbone_weights: str | os.PathLike | None = None,
                   device: str | torch.device | None = None, batch_size: int = 32) -> np.ndarray:
    """LPIPS between image pairs x[i], y[i].

    Args:
        x, y: (N, C, H, W) (or one (C, H, W)) images in [-1, 1]. C = 3: as is; C = 1: repeated to
            RGB; any other C (e.g. 5 stains): each channel scored as grey and the N distances
            averaged over channels.
        net: 'alex' (the LPIPS default, StarGAN v2 protocol) or 'vgg'.
        backbone_weights: local torchvision trunk weights (else ``$MEDGAN_LPIPS_BACKBONE_WEIGHTS``).

    Returns:
        (N,) float64 distances ≥ 0 (0 for identical images).
    """
    model = load_lpips(net=net, backbone_weights=backbone_weights, device=device)
    model_device = next(model.parameters()).device
    a, b = _as_images(x, "x"), _as_images(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"x has shape {tuple(a.shape)} but y has {tuple(b.shape)}")
    out = []
    with torch.no_grad():
        for s in range(0, a.shape[0], batch_size):
            xa, yb = a[s:s + batch_size].to(model_device), b[s:s + batch_size].to(model_device)
            per_group = [model(ga, gb).reshape(-1) for ga, gb in zip(_channel_groups(xa), _channel_groups(yb))]
            out.append(torch.stack(per_group).mean(dim=0).double().cpu())
    return torch.cat(out).numpy()


def domain_feature_distance(x: Any, y: Any, *, extractor: Any, batch_size: int = 64) -> np.ndarray:
    """LPIPS-style distance on an in-domain CNN's feature maps (fallback when no ImageNet trunk).

    Args:
        x, y: (N, C, H, W) images, preprocessed as the extractor expects.
        extractor: an object with ``feature_maps(images) -> list of (N, C_l, H_l, W_l)`` tensors
            (``medgan.metrics.features.DomainCNN``).

    Returns:
        (N,) distances: Σ_layers mean_{h,w} mean_c (f̂_x - f̂_y)², f̂ = feature map unit-normalised
        along channels. Report it as "LPIPS-style distance on <extractor.name>", never as LPIPS.
    """
    a, b = _as_images(x, "x"), _as_images(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"x has shape {tuple(a.shape)} but y has {tuple(b.shape)}")
    device = next(extractor.parameters()).device
    out = []
    with torch.no_grad():
        for s in range(0, a.shape[0], batch_size):
            maps_a = extractor.feature_maps(a[s:s + batch_size].to(device))
            maps_b = extractor.feature_maps(b[s:s + batch_size].to(device))
            total = 0.0
            for fa, fb in zip(maps_a, maps_b):
                na = fa / (fa.norm(dim=1, keepdim=True) + 1e-10)
                nb = fb / (fb.norm(dim=1, keepdim=True) + 1e-10)
                total = total + (na - nb).square().mean(dim=(1, 2, 3))
            out.append(total.double().cpu())
    return torch.cat(out).numpy()


def lpips_diversity(outputs: Any, *, distance_fn: Callable[[Any, Any], np.ndarray] | None = None,
                    **lpips_kwargs: Any) -> float:
    """Mean LPIPS over all pairs of outputs generated from one input (StarGAN v2 protocol).

    Args:
        outputs: (K, C, H, W) — K outputs of one source image (K ≥ 2) — or (N_inputs, K, C, H, W),
            then the per-input means are averaged over inputs.
        distance_fn: pairwise distance ``f(x, y) -> (N,)``; default ``lpips_distance`` with
            ``lpips_kwargs``; pass ``functools.partial(domain_feature_distance, extractor=...)``
            for the in-domain fallback.

    Returns:
        The mean over the K(K-1)/2 unordered pairs (and over inputs), a float ≥ 0.
    """
    t = as_tensor(outputs, dtype=torch.float32, name="outputs")
    if t.ndim == 4:
        t = t[None]
    if t.ndim != 5 or t.shape[1] < 2:
        raise ValueError(f"outputs: expected (K, C, H, W) or (N_inputs, K, C, H, W) with K ≥ 2, got {tuple(t.shape)}")
    fn = distance_fn if distance_fn is not None else functools.partial(lpips_distance, **lpips_kwargs)
    k = t.shape[1]
    first, second = np.triu_indices(k, k=1)
    per_input = []
    for group in t:
        per_input.append(float(np.mean(fn(group[first], group[second]))))
    return float(np.mean(per_input))
