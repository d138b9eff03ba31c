"""On-the-fly augmentation of training batches, drawn from (seed, step) alone.

The engine applies an :class:`Augment` to every batch once it is on the device. Each image's
draw depends only on the run's seed, the iteration and the image's place in the *global* batch,
so a run is deterministic, exact on resume (nothing to checkpoint), and the same image gets the
same transform on 1 or N processes (rank ``r`` holds global places ``r, r + N, ...``, the order in
which ``DistributedSampler`` deals out indices).

The operations are those of the reference implementations:

- ``hflip`` / ``vflip``: mirror with probability p (PGGAN's ``mirror_augment``, CycleGAN's
  ``RandomHorizontalFlip``, StarGAN v2's ``RandomHorizontalFlip``);
- ``resize_crop``: resize to ``load`` px (bicubic), then a random ``crop`` px window
  (pytorch-CycleGAN-and-pix2pix ``--preprocess resize_and_crop``, 286 -> 256);
- ``random_resized_crop``: with probability p, torchvision's ``RandomResizedCrop`` (area
  fraction in ``scale``, aspect ratio in ``ratio``, ten tries, then the centre) resized back to
  the input size (StarGAN v2 ``data_loader.get_train_loader``: p = 0.5, scale 0.8-1, ratio 0.9-1.1).

``paired=True`` uses one draw for all keys (pix2pix's aligned A and B); otherwise each key gets
its own (unaligned CycleGAN domains, a StarGAN v2 source and its references).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

_OPS = ("hflip", "vflip", "resize_crop", "random_resized_crop")


@dataclass(frozen=True)
class Augment:
    """Batch augmentation; ``__call__(batch, seed=, step=, rank=, world_size=)``."""

    keys: tuple[str, ...]  # batch entries (B, C, H, W) that are augmented
    paired: bool = False  # one draw shared by all keys
    hflip: float = 0.0
    vflip: float = 0.0
    resize_crop: tuple[int, int] | None = None  # (load, crop) in px
    random_resized_crop: tuple[float, tuple[float, float], tuple[float, float]] | None = None  # p, scale, ratio

    @classmethod
    def from_params(cls, spec: Mapping[str, Any] | None, *, keys: Sequence[str],
                    paired: bool = False) -> "Augment | None":
        """An ``Augment`` from a study's ``augment:`` parameters, or None when it does nothing."""
        spec = dict(spec or {})
        unknown = set(spec) - set(_OPS)
        if unknown:
            raise ValueError(f"augment: unknown operation(s) {sorted(unknown)}; known: {list(_OPS)}")
        kwargs: dict[str, Any] = {}
        for flip in ("hflip", "vflip"):
            p = float(spec.get(flip) or 0.0)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"augment.{flip} must be a probability in [0, 1], got {p}")
            kwargs[flip] = p
        rc = spec.get("resize_crop")
        if rc:
            load, crop = int(rc["load"]), int(rc["crop"])
            if crop > load:
                raise ValueError(f"augment.resize_crop: crop {crop} is larger than load {load}")
            kwargs["resize_crop"] = (load, crop)
        rrc = spec.get("random_resized_crop")
        if rrc:
            scale = tuple(float(v) for v in rrc.get("scale", (0.08, 1.0)))
            ratio = tuple(float(v) for v in rrc.get("ratio", (3 / 4, 4 / 3)))
            if not (0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1]):
                raise ValueError(f"augment.random_resized_crop: bad scale {scale} or ratio {ratio}")
            kwargs["random_resized_crop"] = (float(rrc.get("p", 1.0)), scale, ratio)
        aug = cls(keys=tuple(keys), paired=paired, **kwargs)
        return aug if aug.active else None

    @property
    def active(self) -> bool:
        return bool(self.hflip or self.vflip or self.resize_crop or
                    (self.random_resized_crop and self.random_resized_crop[0] > 0))

    def identity(self) -> dict[str, Any]:
        """What the run fingerprint records."""
        return {"keys": list(self.keys), "paired": self.paired, "hflip": self.hflip, "vflip": self.vflip,
                "resize_crop": list(self.resize_crop) if self.resize_crop else None,
                "random_resized_crop": ([self.random_resized_crop[0], list(self.random_resized_crop[1]),
                                         list(self.random_resized_crop[2])] if self.random_resized_crop else None)}

    def describe(self) -> str:
        """The augmentation in words, for a report's method section."""
        parts = []
        if self.random_resized_crop:
            p, (s0, s1), (r0, r1) = self.random_resized_crop
            parts.append(f"random resized crop with probability {p:g} (area {s0:g}-{s1:g}, "
                         f"aspect ratio {r0:g}-{r1:g}, resized back)")
        if self.resize_crop:
            parts.append(f"resize to {self.resize_crop[0]} px and a random {self.resize_crop[1]} px crop")
        if self.hflip:
            parts.append(f"left-right flip with probability {self.hflip:g}")
        if self.vflip:
            parts.append(f"up-down flip with probability {self.vflip:g}")
        how = "the same draw for " if self.paired and len(self.keys) > 1 else ""
        return "; ".join(parts) + f" ({how}{', '.join(self.keys)})"

    def __call__(self, batch: Mapping[str, Any], *, seed: int, step: int, rank: int = 0,
                 world_size: int = 1) -> dict[str, Any]:
        out = dict(batch)
        present = [k for k in self.keys if k in batch]
        if not present:
            raise KeyError(f"augment: batch has none of {list(self.keys)} (it has {sorted(batch)})")
        local = int(batch[present[0]].shape[0])
        places = torch.arange(local) * world_size + rank  # this rank's places in the global batch
        for i, key in enumerate(self.keys):
            if key not in batch:
                continue
            g = torch.Generator().manual_seed(_draw_seed(seed, step, 0 if self.paired else i))
            out[key] = self._apply(batch[key], _draw(self, g, local * world_size, batch[key].shape[-2:]), places)
        return out

    def _apply(self, x: torch.Tensor, draw: dict[str, torch.Tensor], places: torch.Tensor) -> torch.Tensor:
        if self.random_resized_crop:
            boxes = draw["box"][places]
            h, w = x.shape[-2:]
            x = torch.stack([x[j] if not bool(draw["rrc"][p]) else
                             _crop_resize(x[j], *boxes[j].tolist(), size=(h, w))
                             for j, p in enumerate(places.tolist())])
        if self.resize_crop:
            load, crop = self.resize_crop
            x = F.interpolate(x, size=(load, load), mode="bicubic", align_corners=False)
            offsets = draw["offset"][places]
            x = torch.stack([x[j, :, t:t + crop, l:l + crop] for j, (t, l) in enumerate(offsets.tolist())])
        if self.hflip:
            flip = draw["hflip"][places].to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if self.vflip:
            flip = draw["vflip"][places].to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(-2), x)
        return x


def _draw_seed(seed: int, step: int, stream: int) -> int:
    # A hash, not seed + step: neighbouring seeds must not share shifted draw sequences.
    raw = hashlib.sha256(f"augment/{int(seed)}/{int(step)}/{int(stream)}".encode()).digest()
    return int.from_bytes(raw[:8], "little") & ((1 << 63) - 1)


def _draw(aug: Augment, g: torch.Generator, n: int, size: Sequence[int]) -> dict[str, torch.Tensor]:
    """Every random number of one global batch, in a fixed order (so an op's draws never shift)."""
    draw: dict[str, torch.Tensor] = {}
    if aug.random_resized_crop:
        p, scale, ratio = aug.random_resized_crop
        draw["rrc"] = torch.rand(n, generator=g) < p
        draw["box"] = _resized_crop_boxes(g, n, int(size[0]), int(size[1]), scale, ratio)
    if aug.resize_crop:
        load, crop = aug.resize_crop
        draw["offset"] = torch.randint(0, load - crop + 1, (n, 2), generator=g)
    if aug.hflip:
        draw["hflip"] = torch.rand(n, generator=g) < aug.hflip
    if aug.vflip:
        draw["vflip"] = torch.rand(n, generator=g) < aug.vflip
    return draw


def _resized_crop_boxes(g: torch.Generator, n: int, h: int, w: int, scale, ratio) -> torch.Tensor:
    """(n, 4) boxes (top, left, height, width) as torchvision's ``RandomResizedCrop.get_params``
    chooses them: ten tries of area and log-uniform aspect ratio, else the centre crop."""
    tries = 10
    area = h * w
    target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, tries, generator=g, dtype=torch.float64))
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_r[0] + (log_r[1] - log_r[0]) * torch.rand(n, tries, generator=g, dtype=torch.float64))
    cw = torch.round(torch.sqrt(target * aspect)).long()
    ch = torch.round(torch.sqrt(target / aspect)).long()
    u_top = torch.rand(n, tries, generator=g, dtype=torch.float64)
    u_left = torch.rand(n, tries, generator=g, dtype=torch.float64)
    boxes = torch.empty(n, 4, dtype=torch.long)
    for i in range(n):
        for t in range(tries):
            bw, bh = int(cw[i, t]), int(ch[i, t])
            if 0 < bw <= w and 0 < bh <= h:
                top = int(u_top[i, t] * (h - bh + 1))
                left = int(u_left[i, t] * (w - bw + 1))
                boxes[i] = torch.tensor([top, left, bh, bw])
                break
        else:
            boxes[i] = torch.tensor(_centre_box(h, w, ratio))
    return boxes


def _centre_box(h: int, w: int, ratio) -> tuple[int, int, int, int]:
    in_ratio = w / h
    if in_ratio < ratio[0]:
        bw, bh = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        bh, bw = h, int(round(h * ratio[1]))
    else:
        bw, bh = w, h
    return (h - bh) // 2, (w - bw) // 2, bh, bw


def _crop_resize(x: torch.Tensor, top: int, left: int, height: int, width: int, *, size) -> torch.Tensor:
    patch = x[None, :, top:top + height, left:left + width]
    return F.interpolate(patch, size=size, mode="bilinear", align_corners=False, antialias=True)[0]
