"""DCGAN (Radford et al., ICLR 2016), as in the PyTorch DCGAN example the study used, for any power-of-two size.

Generator: z (B, z_dim) -> transposed conv 4x4 (stride 1) to 4x4, then ``log2(size/4)`` transposed
convs (4x4 kernel, stride 2) doubling the size; batch norm + ReLU after every layer but the last,
Tanh output in [-1, 1]. Feature maps: ``g_width * 2**(n_up - 1 - i)`` (64 px: 512, 256, 128, 64 with
``g_width=64``); 128 px adds one block (1024 at 4x4) — the study's "one extra layer".
Discriminator: strided 4x4 convs halving the size down to 4x4 (``d_width * 2**i`` maps), batch norm
on every layer but the first and last, LeakyReLU(0.2), a final 4x4 valid conv to one logit
(the example's Sigmoid is folded into the BCE-with-logits loss). Weights N(0, 0.02), BN gamma N(1, 0.02).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from medgan.models.blocks import count_parameters  # noqa: F401  (re-exported)
from medgan.models.registry import portable

__all__ = ["DCGANConfig", "DCGANGenerator", "DCGANDiscriminator", "build_dcgan", "init_dcgan_weights",
           "count_parameters"]


def _n_levels(image_size: int) -> int:
    if image_size < 8 or image_size & (image_size - 1):
        raise ValueError(f"DCGAN image_size must be a power of two >= 8, got {image_size}")
    return int(math.log2(image_size)) - 2


@portable
class DCGANGenerator(nn.Module):
    """z (B, z_dim) -> images (B, channels, image_size, image_size) in [-1, 1]."""

    def __init__(self, *, image_size: int = 64, channels: int = 1, z_dim: int = 100, width: int = 64):
        super().__init__()
        n = _n_levels(image_size)
        self.image_size, self.channels, self.z_dim = image_size, channels, z_dim
        widths = [width * 2 ** (n - 1 - i) for i in range(n)]
        layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim, widths[0], 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU(True)]
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be (B, {self.z_dim}), got {tuple(z.shape)}")
        return self.main(z[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    """images (B, channels, image_size, image_size) -> real/fake logits (B,)."""

    def __init__(self, *, image_size: int = 64, channels: int = 1, width: int = 64):
        super().__init__()
        n = _n_levels(image_size)
        self.image_size, self.channels = image_size, channels
        widths = [width * 2 ** i for i in range(n)]
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"discriminator expects {self.image_size}px images, got {tuple(x.shape[-2:])}")
        return self.main(x).flatten()


def init_dcgan_weights(module: nn.Module) -> None:
    """The DCGAN paper's init: conv weights N(0, 0.02); batch-norm gamma N(1, 0.02), beta 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


@dataclass
class DCGANConfig:
    """Architecture of a DCGAN pair (study: z 100, 128 px; G wider than D)."""

    image_size: int = 128
    channels: int = 1
    z_dim: int = 100
    g_width: int = 64
    d_width: int = 64

    def to_dict(self) -> dict:
        return asdict(self)


def build_dcgan(config: DCGANConfig) -> dict[str, nn.Module]:
    """``{"G": DCGANGenerator, "D": DCGANDiscriminator}``, initialised as in the paper."""
    c = config
    G = DCGANGenerator(image_size=c.image_size, channels=c.channels, z_dim=c.z_dim, width=c.g_width)
    D = DCGANDiscriminator(image_size=c.image_size, channels=c.channels, width=c.d_width)
    init_dcgan_weights(G)
    init_dcgan_weights(D)
    return {"G": G, "D": D}
