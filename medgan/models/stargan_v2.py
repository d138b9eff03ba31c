"""StarGAN v2 (Choi et al., CVPR 2020) for any number of image channels.

Follows the official definition (clovaai/stargan-v2, ``core/model.py``), written anew:

- :class:`ResBlk` — pre-activation residual block (instance norm optional, LeakyReLU 0.2,
  3x3 convs, average-pool downsampling, 1x1 learned shortcut), output divided by sqrt(2).
- :class:`AdaIN` / :class:`AdainResBlk` — the decoder block: adaptive instance norm whose scale
  and shift come from the style code, ``(1 + gamma) * IN(x) + beta``, nearest upsampling.
- :class:`Generator` — from_rgb conv, ``n_down`` down blocks + 2 bottleneck blocks (encoder),
  mirrored AdaIN blocks (decoder), to_rgb (IN, LeakyReLU, 1x1 conv). Width starts at
  ``base_width`` (official: 2**14 / image size) and doubles per level up to ``max_width`` (512).
- :class:`MappingNetwork` — 4 shared layers of ``hidden`` (512) units and, per domain, 3 more
  hidden layers + a linear output to ``style_dim``: z (latent_dim = 16) -> s (style_dim = 64).
- :class:`StyleEncoder` — conv + log2(size) - 2 down blocks, LeakyReLU, 4x4 conv, one linear head
  per domain.
- :class:`Discriminator` — the same trunk with one real/fake logit per domain (multi-task).

Not included: the face-specific high-pass filter skip (``w_hpf``, needs a pretrained landmark
network; the official AFHQ configuration does not use it either).

Shapes: images (N, C, H, W) in [-1, 1] with H = W = ``image_size`` (a power of two >= 16);
domain labels ``y`` (N,) long; latent ``z`` (N, latent_dim); style ``s`` (N, style_dim).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medgan.models.blocks import count_parameters  # noqa: F401  (re-exported)
from medgan.models.registry import portable

__all__ = ["AdaIN", "AdainResBlk", "Discriminator", "Generator", "MappingNetwork", "ResBlk", "StarGANv2Config",
           "StyleEncoder", "build_stargan_v2", "count_parameters", "he_init"]


def he_init(module: nn.Module) -> None:
    """Kaiming-normal (fan_in, ReLU gain) weights and zero biases for conv and linear layers (as the official code)."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _check_size(image_size: int) -> int:
    levels = int(round(math.log2(image_size)))
    if image_size < 16 or 2 ** levels != image_size:
        raise ValueError(f"image_size must be a power of two >= 16, got {image_size}")
    return levels


class ResBlk(nn.Module):
    """Pre-activation residual block: (x_shortcut + residual) / sqrt(2); halves H, W with ``downsample``."""

    def __init__(self, dim_in: int, dim_out: int, *, normalize: bool = False, downsample: bool = False):
        super().__init__()
        self.actv = nn.LeakyReLU(0.2)
        self.normalize = normalize
        self.downsample = downsample
        self.learned_sc = dim_in != dim_out
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        if normalize:
            self.norm1 = nn.InstanceNorm2d(dim_in, affine=True)
            self.norm2 = nn.InstanceNorm2d(dim_in, affine=True)
        if self.learned_sc:
            self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.learned_sc:
            x = self.conv1x1(x)
        return F.avg_pool2d(x, 2) if self.downsample else x

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = self.norm1(x)
        x = self.conv1(self.actv(x))
        if self.downsample:
            x = F.avg_pool2d(x, 2)
        if self.normalize:
            x = self.norm2(x)
        return self.conv2(self.actv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self._shortcut(x) + self._residual(x)) / math.sqrt(2)


class AdaIN(nn.Module):
    """Adaptive instance norm: ``(1 + gamma(s)) * IN(x) + beta(s)`` with gamma, beta from a linear map of s."""

    def __init__(self, style_dim: int, num_features: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(num_features, affine=False)
        self.fc = nn.Linear(style_dim, num_features * 2)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.fc(s)[:, :, None, None].chunk(2, dim=1)
        return (1 + gamma) * self.norm(x) + beta


class AdainResBlk(nn.Module):
    """Decoder block: AdaIN -> LeakyReLU -> (nearest x2 upsample) -> conv, twice, plus a shortcut; / sqrt(2)."""

    def __init__(self, dim_in: int, dim_out: int, *, style_dim: int = 64, upsample: bool = False):
        super().__init__()
        self.actv = nn.LeakyReLU(0.2)
        self.upsample = upsample
        self.learned_sc = dim_in != dim_out
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, 1, 1)
        self.norm1 = AdaIN(style_dim, dim_in)
        self.norm2 = AdaIN(style_dim, dim_out)
        if self.learned_sc:
            self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv1x1(x) if self.learned_sc else x

    def _residual(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        x = self.actv(self.norm1(x, s))
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv1(x)
        x = self.actv(self.norm2(x, s))
        return self.conv2(x)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return (self._residual(x, s) + self._shortcut(x)) / math.sqrt(2)


def _default_width(image_size: int) -> int:
    return 2 ** 14 // image_size


@portable
class Generator(nn.Module):
    """Image (N, C, S, S) + style (N, style_dim) -> image (N, C, S, S) (unbounded; trained towards [-1, 1]).

    Args:
        image_size: S. channels: C. style_dim: style code length.
        base_width: channels after from_rgb (official 2**14 // S: 64 at 256 px).
        max_width: channel cap (512). n_down: down/up-sampling levels (official log2(S) - 4).
        n_bottleneck: resolution-keeping blocks in encoder and decoder each (2).
    """

    def __init__(self, *, image_size: int = 256, channels: int = 3, style_dim: int = 64,
                 base_width: int | None = None, max_width: int = 512, n_down: int | None = None,
                 n_bottleneck: int = 2):
        super().__init__()
        levels = _check_size(image_size)
        n_down = max(1, levels - 4) if n_down is None else n_down
        if not 1 <= n_down <= levels - 1:
            raise ValueError(f"n_down must be in [1, {levels - 1}] for image_size {image_size}, got {n_down}")
        dim_in = base_width or _default_width(image_size)
        self.from_rgb = nn.Conv2d(channels, dim_in, 3, 1, 1)
        self.encode = nn.ModuleList()
        self.decode = nn.ModuleList()
        self.to_rgb = nn.Sequential(nn.InstanceNorm2d(dim_in, affine=True), nn.LeakyReLU(0.2),
                                    nn.Conv2d(dim_in, channels, 1, 1, 0))
        dim_out = dim_in
        for _ in range(n_down):
            dim_out = min(dim_in * 2, max_width)
            self.encode.append(ResBlk(dim_in, dim_out, normalize=True, downsample=True))
            self.decode.insert(0, AdainResBlk(dim_out, dim_in, style_dim=style_dim, upsample=True))
            dim_in = dim_out
        for _ in range(n_bottleneck):
            self.encode.append(ResBlk(dim_out, dim_out, normalize=True))
            self.decode.insert(0, AdainResBlk(dim_out, dim_out, style_dim=style_dim))
        self.image_size, self.channels, self.style_dim = image_size, channels, style_dim
        self.apply(he_init)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        x = self.from_rgb(x)
        for block in self.encode:
            x = block(x)
        for block in self.decode:
            x = block(x, s)
        return self.to_rgb(x)


def _pick_domain(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """out (N, K, ...) -> out[i, y_i] (N, ...)."""
    y = torch.as_tensor(y, device=out.device).long().view(-1)
    if len(y) != out.shape[0]:
        raise ValueError(f"{len(y)} domain labels for a batch of {out.shape[0]}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= out.shape[1]):
        raise ValueError(f"domain label out of range [0, {out.shape[1]}): {y.tolist()}")
    return out[torch.arange(out.shape[0], device=out.device), y]


@portable
class MappingNetwork(nn.Module):
    """z (N, latent_dim) + domain y (N,) -> style s (N, style_dim); ``forward_all`` gives (N, K, style_dim).

    4 shared Linear+ReLU layers of ``hidden`` units; per domain 3 Linear+ReLU layers and a linear output.
    """

    def __init__(self, *, latent_dim: int = 16, style_dim: int = 64, num_domains: int = 2, hidden: int = 512,
                 n_shared: int = 4, n_unshared: int = 4):
        super().__init__()
        layers = [nn.Linear(latent_dim, hidden), nn.ReLU()]
        for _ in range(n_shared - 1):
            layers += [nn.Linear(hidden, hidden), nn.ReLU()]
        self.shared = nn.Sequential(*layers)
        self.unshared = nn.ModuleList()
        for _ in range(num_domains):
            head = []
            for _ in range(n_unshared - 1):
                head += [nn.Linear(hidden, hidden), nn.ReLU()]
            self.unshared.append(nn.Sequential(*head, nn.Linear(hidden, style_dim)))
        self.latent_dim, self.style_dim, self.num_domains = latent_dim, style_dim, num_domains
        self.apply(he_init)

    def forward_all(self, z: torch.Tensor) -> torch.Tensor:
        h = self.shared(z)
        return torch.stack([head(h) for head in self.unshared], dim=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _pick_domain(self.forward_all(z), y)


def _trunk(image_size: int, channels: int, base_width: int, max_width: int) -> tuple[list[nn.Module], int]:
    levels = _check_size(image_size)
    dim_in = base_width
    blocks: list[nn.Module] = [nn.Conv2d(channels, dim_in, 3, 1, 1)]
    dim_out = dim_in
    for _ in range(levels - 2):  # down to 4x4
        dim_out = min(dim_in * 2, max_width)
        blocks.append(ResBlk(dim_in, dim_out, downsample=True))
        dim_in = dim_out
    blocks += [nn.LeakyReLU(0.2), nn.Conv2d(dim_out, dim_out, 4, 1, 0), nn.LeakyReLU(0.2)]
    return blocks, dim_out


@portable
class StyleEncoder(nn.Module):
    """Image (N, C, S, S) + domain y (N,) -> style s (N, style_dim); one linear head per domain."""

    def __init__(self, *, image_size: int = 256, channels: int = 3, style_dim: int = 64, num_domains: int = 2,
                 base_width: int | None = None, max_width: int = 512):
        super().__init__()
        blocks, dim_out = _trunk(image_size, channels, base_width or _default_width(image_size), max_width)
        self.shared = nn.Sequential(*blocks)
        self.unshared = nn.ModuleList(nn.Linear(dim_out, style_dim) for _ in range(num_domains))
        self.style_dim, self.num_domains = style_dim, num_domains
        self.apply(he_init)

    def forward_all(self, x: torch.Tensor) -> torch.Tensor:
        h = self.shared(x).flatten(1)
        return torch.stack([head(h) for head in self.unshared], dim=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _pick_domain(self.forward_all(x), y)


class Discriminator(nn.Module):
    """Multi-task discriminator: image (N, C, S, S) + domain y (N,) -> real/fake logit (N,) for domain y."""

    def __init__(self, *, image_size: int = 256, channels: int = 3, num_domains: int = 2,
                 base_width: int | None = None, max_width: int = 512):
        super().__init__()
        blocks, dim_out = _trunk(image_size, channels, base_width or _default_width(image_size), max_width)
        blocks.append(nn.Conv2d(dim_out, num_domains, 1, 1, 0))
        self.main = nn.Sequential(*blocks)
        self.num_domains = num_domains
        self.apply(he_init)

    def forward_all(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for every domain, (N, K)."""
        return self.main(x).flatten(1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _pick_domain(self.forward_all(x), y)


@dataclass
class StarGANv2Config:
    """Architecture of one StarGAN v2 (the official AFHQ setting is the default, with 3 channels)."""

    image_size: int = 256
    channels: int = 3
    num_domains: int = 3
    latent_dim: int = 16
    style_dim: int = 64
    mapping_hidden: int = 512
    base_width: int | None = None  # None = 2**14 // image_size (official)
    max_width: int = 512
    n_down: int | None = None  # None = log2(image_size) - 4 (official)

    def to_dict(self) -> dict:
        return asdict(self)


def build_stargan_v2(config: StarGANv2Config) -> dict[str, nn.Module]:
    """The four networks: ``{"generator", "mapping_network", "style_encoder", "discriminator"}``."""
    c = config
    return {
        "generator": Generator(image_size=c.image_size, channels=c.channels, style_dim=c.style_dim,
                               base_width=c.base_width, max_width=c.max_width, n_down=c.n_down),
        "mapping_network": MappingNetwork(latent_dim=c.latent_dim, style_dim=c.style_dim, num_domains=c.num_domains,
                                          hidden=c.mapping_hidden),
        "style_encoder": StyleEncoder(image_size=c.image_size, channels=c.channels, style_dim=c.style_dim,
                                      num_domains=c.num_domains, base_width=c.base_width, max_width=c.max_width),
        "discriminator": Discriminator(image_size=c.image_size, channels=c.channels, num_domains=c.num_domains,
                                       base_width=c.base_width, max_width=c.max_width),
    }
