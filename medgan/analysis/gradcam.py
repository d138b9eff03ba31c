"""Grad-CAM (Selvaraju et al. 2017) for any convolutional classifier and any target layer.

For a class ``c`` with score ``y_c`` (the logit) and the target layer's activations ``A``
(N, K, h, w), Grad-CAM weighs each channel by its spatially averaged gradient
``alpha_k = mean_ij d y_c / d A_kij`` and keeps the positive evidence:
``L = ReLU(sum_k alpha_k A_k)``. The map is upsampled (bilinear) to the input size and scaled to
[0, 1] per image, so maps of different images are shown on the same colour scale.

Used by study 1 (domain classifier on real and translated cell images, the paper's figure 12)
and study 5 (chest X-ray classifiers).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["grad_cam", "resolve_layer"]


def resolve_layer(model: nn.Module, layer: nn.Module | str | None) -> nn.Module:
    """The module Grad-CAM hooks: a module, a dotted name (``"backbone.layer4"``), or ``None`` =
    ``model.target_layer`` when the model defines one, else its last ``nn.Conv2d``."""
    if isinstance(layer, nn.Module):
        return layer
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError as exc:
            raise ValueError(f"grad_cam: {type(model).__name__} has no submodule {layer!r}") from exc
    target = getattr(model, "target_layer", None)
    if isinstance(target, nn.Module):
        return target
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"grad_cam: {type(model).__name__} has no Conv2d layer; pass target_layer")
    return convs[-1]


def grad_cam(model: nn.Module, images: torch.Tensor | Iterable[torch.Tensor], *,
             target_layer: nn.Module | str | None = None,
             classes: int | Sequence[int] | torch.Tensor | None = None, output_index: int | None = None,
             batch_size: int = 64, relu: bool = True, normalize: bool = True) -> torch.Tensor:
    """Grad-CAM heat maps of ``model`` for ``images``.

    Args:
        model: any module mapping images (N, C, H, W) to logits (N, K) (or (N,) for one output).
            It is run in eval mode (batch-norm running statistics); its mode is restored after.
        images: (N, C, H, W) float, any channel count and value range the model expects; or an
            iterable of such batches, or of item batches with an ``image`` key (a stream: each batch
            is explained and dropped, only the maps are kept).
        target_layer: module or dotted name whose output activations (N, K', h, w) are explained;
            default ``model.target_layer`` or the last Conv2d.
        classes: class index per image ((N,) ints, in stream order) or one int for all; default the
            predicted class (argmax of the logits; for a single output, that output).
        output_index: alias of ``classes`` as one int (kept for readability at call sites).
        batch_size: images per forward/backward pass (a tensor is split into batches of this size;
            a stream's batches are used as they come).
        relu: keep only positive evidence (the paper's definition); False keeps the signed map.
        normalize: scale each map to [0, 1] by its own min and max (a flat map becomes all 0).

    Returns:
        float32 tensor (N, H, W) on the CPU; in [0, 1] with ``normalize``.
    """
    if output_index is not None:
        if classes is not None:
            raise ValueError("grad_cam: give classes or output_index, not both")
        classes = output_index
    layer = resolve_layer(model, target_layer)
    if torch.is_tensor(images):
        if images.ndim != 4:
            raise ValueError(f"grad_cam: images must be (N, C, H, W), got {tuple(images.shape)}")
        n = len(images)
        batches = torch.split(images, batch_size)
    else:
        n, batches = None, images
    if classes is None or isinstance(classes, int):
        class_idx = classes
    else:
        class_idx = torch.as_tensor(classes, dtype=torch.long).view(-1)
        if n is not None and len(class_idx) != n:
            raise ValueError(f"grad_cam: {len(class_idx)} classes for {n} images")

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    captured: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        captured["act"] = output

    handle = layer.register_forward_hook(hook)
    maps = []
    start = 0
    try:
        for batch in batches:
            batch = batch["image"] if isinstance(batch, dict) else batch  # a DataLoader's item batches
            if batch.ndim != 4:
                raise ValueError(f"grad_cam: images must be (N, C, H, W), got {tuple(batch.shape)}")
            x = batch.to(device).float()
            height, width = x.shape[-2:]
            with torch.enable_grad():
                logits = model(x)
                if logits.ndim == 1:
                    logits = logits[:, None]
                if class_idx is None:
                    idx = logits.argmax(1) if logits.shape[1] > 1 else torch.zeros(len(x), dtype=torch.long)
                elif isinstance(class_idx, int):
                    idx = torch.full((len(x),), class_idx, dtype=torch.long)
                else:
                    idx = class_idx[start:start + len(x)]
                    if len(idx) != len(x):
                        raise ValueError(f"grad_cam: fewer classes ({len(class_idx)}) than images")
                if int(idx.max()) >= logits.shape[1] or int(idx.min()) < 0:
                    raise ValueError(f"grad_cam: class index out of range for {logits.shape[1]} outputs")
                score = logits.gather(1, idx.to(logits.device)[:, None]).sum()
                act = captured.get("act")
                if act is None or act.ndim != 4:
                    raise ValueError("grad_cam: the target layer must output (N, K, h, w) activations")
                (grad,) = torch.autograd.grad(score, act)
            weights = grad.mean(dim=(2, 3), keepdim=True)  # alpha_k: global-average-pooled gradients
            cam = (weights * act.detach()).sum(1, keepdim=True)
            if relu:
                cam = F.relu(cam)
            cam = F.interpolate(cam, size=(height, width), mode="bilinear", align_corners=False)[:, 0]
            maps.append(cam.float().cpu())
            captured.clear()
            start += len(x)
    finally:
        handle.remove()
        model.train(was_training)
    if not maps:
        raise ValueError("grad_cam: no images")
    if torch.is_tensor(class_idx) and len(class_idx) != start:
        raise ValueError(f"grad_cam: {len(class_idx)} classes for {start} images")
    out = torch.cat(maps)
    if normalize:
        flat = out.flatten(1)
        low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        span = (high - low)
        flat = torch.where(span > 0, (flat - low) / span.clamp_min(1e-12), torch.zeros_like(flat))
        out = flat.view_as(out)
    return out
