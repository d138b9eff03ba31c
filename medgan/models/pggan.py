"""Progressive growing of GANs (Karras et al., ICLR 2018), for any power-of-two size and channel count.

Building blocks follow the paper (and its official code):

- **equalised learning rate**: weights are drawn from N(0, 1) and scaled at run time by He's
  constant ``gain / sqrt(fan_in)`` (:class:`EqualizedConv2d`, :class:`EqualizedLinear`), so Adam's
  per-parameter step sizes are the same for every layer;
- **pixelwise feature normalisation** after every 3x3 conv of the generator (and on the latent);
- **minibatch standard deviation** as an extra feature map in the discriminator's last (4x4) block;
- **fade-in**: while a new resolution is being added, the output is ``(1 - alpha) * upsample(old
  toRGB) + alpha * new toRGB`` (and the mirror image in the discriminator).

The growth state (``depth``: index of the highest active block, 0 = 4x4; ``alpha`` in [0, 1]) lives
in buffers of each network, so it is saved in checkpoints and copied to the EMA generator by
:func:`medgan.train.ema_update`. Channel widths come from :func:`pggan_channels`: the paper's
``min(fmap_base / (res / 2), fmap_max)`` (512 up to 32x32, then halving: 256 at 64, 128 at 128, ...),
multiplied by one ``width`` factor so a CPU profile can shrink the whole network.

The generator's raw output is linear (as in the paper, no tanh); :meth:`Generator.generate` and
:func:`full_resolution` clamp to [-1, 1] for use as images.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medgan.models.blocks import count_parameters  # noqa: F401  (re-exported)
from medgan.models.registry import portable

__all__ = [
    "EqualizedConv2d", "EqualizedLinear", "PixelNorm", "MinibatchStdDev", "Generator", "Discriminator",
    "PGGANConfig", "build_pggan", "pggan_channels", "count_parameters", "full_resolution", "FullResolutionGenerator",
    "CriticFeatures",
]


def _check_resolution(resolution: int) -> int:
    if resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"PGGAN resolution must be a power of two >= 4, got {resolution}")
    return int(math.log2(resolution)) - 2  # number of blocks above 4x4


def pggan_channels(resolution: int, *, fmap_base: int = 8192, fmap_max: int = 512, width: float = 1.0) -> int:
    """Feature maps of the block working at ``resolution`` px: ``min(fmap_base / (res/2), fmap_max) * width``.

    With the defaults: 512 for 4..32 px, 256 at 64, 128 at 128, 64 at 256, 32 at 512, 16 at 1024.
    """
    return max(1, int(round(min(fmap_base / (resolution / 2), fmap_max) * width)))


# --- equalised-LR layers ---------------------------------------------------------------------
class EqualizedLinear(nn.Module):
    """Linear layer whose N(0,1) weight is scaled by ``gain / sqrt(in_features)`` at every forward."""

    def __init__(self, in_features: int, out_features: int, *, gain: float = math.sqrt(2), bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.scale = gain / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class EqualizedConv2d(nn.Module):
    """Conv layer (stride 1, 'same' padding) with run-time He scaling ``gain / sqrt(in * k * k)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, gain: float = math.sqrt(2),
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector to unit average square: ``x / sqrt(mean_c(x^2) + eps)``."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)


class MinibatchStdDev(nn.Module):
    """Append one feature map: the std over groups of ``group_size`` samples, averaged over features and pixels.

    The batch is split into groups of ``min(group_size, B)`` (the largest divisor of B not above it),
    as in the official code; the statistic is replicated over each group's members and all pixels.
    """

    def __init__(self, group_size: int = 4, eps: float = 1e-8):
        super().__init__()
        self.group_size = group_size
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = min(self.group_size, b)
        while b % g:
            g -= 1
        y = x.reshape(g, b // g, c, h, w).float()
        y = (y - y.mean(0, keepdim=True)).pow(2).mean(0).add(self.eps).sqrt()  # (B/g, C, H, W)
        y = y.mean(dim=(1, 2, 3)).to(x.dtype)  # (B/g,)
        y = y.repeat(g).reshape(b, 1, 1, 1).expand(b, 1, h, w)
        return torch.cat([x, y], dim=1)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class _Growing(nn.Module):
    """Shared growth state: ``depth`` (0 = 4x4 only) and fade-in ``alpha``, stored as buffers."""

    def _init_growth(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.register_buffer("depth", torch.tensor(max_depth, dtype=torch.long))
        self.register_buffer("alpha", torch.tensor(1.0))

    def set_growth(self, depth: int, alpha: float = 1.0) -> None:
        """Work at resolution ``4 * 2**depth``; ``alpha`` < 1 blends in the newest block (needs depth > 0)."""
        if not 0 <= depth <= self.max_depth:
            raise ValueError(f"depth must be in [0, {self.max_depth}], got {depth}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.depth.fill_(int(depth))
        self.alpha.fill_(float(alpha) if depth > 0 else 1.0)

    @property
    def current_resolution(self) -> int:
        return 4 * 2 ** int(self.depth)


@portable
class Generator(_Growing):
    """PGGAN generator: z (B, z_dim) -> images (B, channels, res, res) at the current growth state.

    Args (keyword-only): resolution (final, power of two >= 4), channels (image channels), z_dim
    (paper: 512), fmap_base / fmap_max / width (see :func:`pggan_channels`), normalize_latent
    (pixel-norm the input z, as the paper).
    """

    def __init__(self, *, resolution: int = 128, channels: int = 1, z_dim: int = 512, fmap_base: int = 8192,
                 fmap_max: int = 512, width: float = 1.0, normalize_latent: bool = True):
        super().__init__()
        max_depth = _check_resolution(resolution)
        self.resolution, self.channels, self.z_dim = resolution, channels, z_dim
        nf = [pggan_channels(4 * 2 ** d, fmap_base=fmap_base, fmap_max=fmap_max, width=width)
              for d in range(max_depth + 1)]
        self.features = nf
        self.norm = PixelNorm()
        self.normalize_latent = normalize_latent
        # 4x4: dense z -> 4x4xC (gain sqrt(2)/4 as in the official code), then a 3x3 conv.
        self.dense = EqualizedLinear(z_dim, nf[0] * 16, gain=math.sqrt(2) / 4)
        self.blocks = nn.ModuleList([nn.ModuleList([EqualizedConv2d(nf[0], nf[0], 3)])])
        for d in range(1, max_depth + 1):
            self.blocks.append(nn.ModuleList([EqualizedConv2d(nf[d - 1], nf[d], 3), EqualizedConv2d(nf[d], nf[d], 3)]))
        self.to_rgb = nn.ModuleList([EqualizedConv2d(nf[d], channels, 1, gain=1.0) for d in range(max_depth + 1)])
        self._init_growth(max_depth)

    def _block(self, d: int, x: torch.Tensor) -> torch.Tensor:
        if d > 0:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        for conv in self.blocks[d]:
            x = self.norm(_lrelu(conv(x)))
        return x

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Raw (unclamped) images at the current resolution and fade-in; what the discriminator sees."""
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be (B, {self.z_dim}), got {tuple(z.shape)}")
        depth, alpha = int(self.depth), float(self.alpha)
        x = self.norm(z) if self.normalize_latent else z
        x = self.norm(_lrelu(self.dense(x)).view(z.shape[0], -1, 4, 4))
        x = self._block(0, x)
        prev = x
        for d in range(1, depth + 1):
            prev = x
            x = self._block(d, x)
        out = self.to_rgb[depth](x)
        if depth > 0 and alpha < 1.0:
            low = F.interpolate(self.to_rgb[depth - 1](prev), scale_factor=2, mode="nearest")
            out = torch.lerp(low, out, alpha)
        return out

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] at the current resolution and fade-in (clamped raw output)."""
        return self(z).clamp(-1.0, 1.0)


class Discriminator(_Growing):
    """PGGAN critic (WGAN-GP): images (B, channels, res, res) at the current growth state -> scores (B,).

    Inputs larger than the current resolution are average-pooled down to it.
    """

    def __init__(self, *, resolution: int = 128, channels: int = 1, fmap_base: int = 8192, fmap_max: int = 512,
                 width: float = 1.0, mbstd_group_size: int = 4):
        super().__init__()
        max_depth = _check_resolution(resolution)
        self.resolution, self.channels = resolution, channels
        nf = [pggan_channels(4 * 2 ** d, fmap_base=fmap_base, fmap_max=fmap_max, width=width)
              for d in range(max_depth + 1)]
        self.features = nf
        self.from_rgb = nn.ModuleList([EqualizedConv2d(channels, nf[d], 1) for d in range(max_depth + 1)])
        # Block d (d > 0): conv nf[d] -> nf[d], conv nf[d] -> nf[d-1], 2x average pool.
        self.blocks = nn.ModuleList([nn.ModuleList()])
        for d in range(1, max_depth + 1):
            self.blocks.append(nn.ModuleList([EqualizedConv2d(nf[d], nf[d], 3), EqualizedConv2d(nf[d], nf[d - 1], 3)]))
        self.mbstd = MinibatchStdDev(mbstd_group_size)
        self.final_conv = EqualizedConv2d(nf[0] + 1, nf[0], 3)
        self.final_dense = EqualizedLinear(nf[0] * 16, nf[0])
        self.out = EqualizedLinear(nf[0], 1, gain=1.0)
        self._init_growth(max_depth)

    def _block(self, d: int, x: torch.Tensor) -> torch.Tensor:
        for conv in self.blocks[d]:
            x = _lrelu(conv(x))
        return F.avg_pool2d(x, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mbstd(self._trunk(x))
        h = _lrelu(self.final_conv(h))
        h = _lrelu(self.final_dense(h.flatten(1)))
        return self.out(h).squeeze(1)

    def hidden_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 4x4 feature maps before the minibatch-stddev layer, flattened: (B, nf[0] * 16).

        AnoGAN's feature-matching term uses an intermediate critic layer; this is the deepest one
        that sees each image alone (minibatch stddev mixes the batch).
        """
        return self._trunk(x).flatten(1)

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        depth, alpha = int(self.depth), float(self.alpha)
        res = 4 * 2 ** depth
        if x.shape[-1] != res:
            if x.shape[-1] < res or x.shape[-1] % res:
                raise ValueError(f"discriminator at {res}px got images of {tuple(x.shape[-2:])}")
            x = F.adaptive_avg_pool2d(x, res)
        h = _lrelu(self.from_rgb[depth](x))
        if depth > 0:
            h = self._block(depth, h)
            if alpha < 1.0:
                low = _lrelu(self.from_rgb[depth - 1](F.avg_pool2d(x, 2)))
                h = torch.lerp(low, h, alpha)
        for d in range(depth - 1, 0, -1):
            h = self._block(d, h)
        return h


@dataclass
class PGGANConfig:
    """Architecture of a PGGAN pair (the ``model:`` section of a params file)."""

    resolution: int = 128
    channels: int = 1
    z_dim: int = 512
    fmap_base: int = 8192
    fmap_max: int = 512
    width: float = 1.0
    mbstd_group_size: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


def build_pggan(config: PGGANConfig) -> dict[str, nn.Module]:
    """``{"G": Generator, "D": Discriminator, "G_ema": copy of G}``, all at full resolution (depth = max)."""
    c = config
    G = Generator(resolution=c.resolution, channels=c.channels, z_dim=c.z_dim, fmap_base=c.fmap_base,
                  fmap_max=c.fmap_max, width=c.width)
    D = Discriminator(resolution=c.resolution, channels=c.channels, fmap_base=c.fmap_base, fmap_max=c.fmap_max,
                      width=c.width, mbstd_group_size=c.mbstd_group_size)
    G_ema = copy.deepcopy(G)
    for p in G_ema.parameters():
        p.requires_grad_(False)
    return {"G": G, "D": D, "G_ema": G_ema}


class FullResolutionGenerator(nn.Module):
    """A generator frozen at full resolution (alpha = 1) returning clamped images in [-1, 1].

    Shares the wrapped generator's weights; ``z`` (B, z_dim) -> (B, C, resolution, resolution).
    """

    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = generator
        self.z_dim = generator.z_dim
        self.resolution = generator.resolution

    @torch.no_grad()
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        g = self.generator
        saved = (int(g.depth), float(g.alpha))
        g.set_growth(g.max_depth, 1.0)
        try:
            return g(z).clamp(-1.0, 1.0)
        finally:
            g.set_growth(*saved)


def full_resolution(generator: Generator) -> FullResolutionGenerator:
    """The final full-resolution generator for evaluation (use the EMA copy ``nets["G_ema"]``)."""
    return FullResolutionGenerator(generator).eval()


class CriticFeatures(nn.Module):
    """A critic's :meth:`Discriminator.hidden_features` as a module of its own, at full resolution,
    so that callers can freeze it and switch it to eval like any network (AnoGAN's feature term)."""

    def __init__(self, discriminator: Discriminator):
        super().__init__()
        self.discriminator = discriminator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.discriminator.set_growth(self.discriminator.max_depth, 1.0)
        return self.discriminator.hidden_features(x)
