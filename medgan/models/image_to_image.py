"""Image-to-image networks of CycleGAN / Pix2pix: ResNet and U-Net generators, PatchGAN critic.

The layouts follow the standard implementation (junyanz/pytorch-CycleGAN-and-pix2pix), so the
parameter counts at its defaults match exactly (3 -> 3 channels, width 64):

=========================  ==============  ==============
network                    instance norm   batch norm
=========================  ==============  ==============
``resnet_9blocks``         11,378,179      11,383,427
``resnet_6blocks``          7,837,699       7,841,411
``unet_256``               54,409,603      54,413,955
``PatchDiscriminator``      2,764,737       2,765,633
=========================  ==============  ==============

(The "54.414 M" printed by the reference code for ``unet_256`` is its Pix2pix default, batch
norm; with instance norm — CycleGAN's default — the same network has 54.410 M.)

As there, convolutions followed by instance norm keep a bias (instance norm is used without
affine parameters) and those followed by batch norm drop it. Any number of input/output
channels works (1 for CT/MRI/PET), and ``width`` (the reference's ``ngf``/``ndf``) scales every
layer for CPU-sized runs.

:func:`forward_in_mode` runs a generator at test time in ``eval`` mode (running batch-norm
statistics, no dropout) or, as the reference's ``test.py`` does without ``--eval``, in ``train``
mode (the test batch's statistics, dropout on with seeded masks), leaving the model unchanged.

>>> G = define_generator("resnet_9blocks", 1, 1, width=16)
>>> G(torch.zeros(2, 1, 64, 64)).shape
torch.Size([2, 1, 64, 64])
"""

from __future__ import annotations

import functools
import hashlib
import re

import torch
from torch import nn

from medgan.models.blocks import count_parameters  # noqa: F401  (re-exported)
from medgan.models.registry import portable

__all__ = ["GENERATORS", "INFERENCE_MODES", "NORMS", "PatchDiscriminator", "ResnetBlock", "ResnetGenerator",
           "UNetGenerator", "count_parameters", "define_discriminator", "define_generator", "depends_on_inference_mode",
           "dropout_seed", "forward_in_mode", "init_weights", "norm_layer"]

GENERATORS = ("resnet_9blocks", "resnet_6blocks", "unet_256", "unet_128")  # the standard names; see define_generator
NORMS = ("instance", "batch")
# How a generator runs at test time: "eval" = batch norm on running statistics, no dropout (``module.eval()``);
# "train" = batch norm on the test batch's statistics, dropout on (the reference's test.py without --eval).
INFERENCE_MODES = ("eval", "train")


def norm_layer(norm: str):
    """A constructor ``f(channels) -> nn.Module`` for ``norm`` in {"instance", "batch"}.

    Instance norm is non-affine with no running statistics (CycleGAN); batch norm is affine with
    running statistics (Pix2pix).
    """
    if norm == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")


def _check_channels(**channels: int) -> None:
    for name, value in channels.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, not {value!r}")


# --- ResNet generator --------------------------------------------------------------------------
class ResnetBlock(nn.Module):
    """Residual block ``x + [pad, conv3x3, norm, ReLU, (dropout 0.5), pad, conv3x3, norm](x)``, reflection padding."""

    def __init__(self, channels: int, *, norm: str = "instance", dropout: bool = False):
        super().__init__()
        make_norm, bias = norm_layer(norm), norm == "instance"
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias),
                                   make_norm(channels), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), make_norm(channels)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


@portable
class ResnetGenerator(nn.Module):
    """Johnson et al. (2016) style generator used by CycleGAN.

    c7s1-w, d2w, d4w, ``n_blocks`` x R4w, u2w, uw, c7s1-out, tanh (reflection padding).
    Input (N, in_channels, H, W) with H, W divisible by 4; output (N, out_channels, H, W) in [-1, 1].
    """

    def __init__(self, in_channels: int, out_channels: int, *, width: int = 64, n_blocks: int = 9,
                 norm: str = "instance", dropout: bool = False):
        super().__init__()
        _check_channels(in_channels=in_channels, out_channels=out_channels, width=width)
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, not {n_blocks}")
        make_norm, bias = norm_layer(norm), norm == "instance"
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, width, 7, bias=bias),
                                   make_norm(width), nn.ReLU(True)]
        for i in range(2):  # two stride-2 downsamplings
            c = width * 2 ** i
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias), make_norm(2 * c), nn.ReLU(True)]
        layers += [ResnetBlock(4 * width, norm=norm, dropout=dropout) for _ in range(n_blocks)]
        for i in range(2):  # two transposed-conv upsamplings
            c = width * 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                       make_norm(c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"ResnetGenerator needs H and W divisible by 4, got {tuple(x.shape[-2:])}")
        return self.model(x)


# --- U-Net generator ---------------------------------------------------------------------------
class _UNetLevel(nn.Module):
    """One level of the U-Net: down(x) -> inner levels -> up, concatenated with x (except outermost)."""

    def __init__(self, outer: int, inner: int, *, input_channels: int | None = None, submodule: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, norm: str = "instance", dropout: bool = False):
        super().__init__()
        self.outermost = outermost
        make_norm, bias = norm_layer(norm), norm == "instance"
        input_channels = outer if input_channels is None else input_channels
        down_conv = nn.Conv2d(input_channels, inner, 4, stride=2, padding=1, bias=bias)
        if outermost:
            up_conv = nn.ConvTranspose2d(2 * inner, outer, 4, stride=2, padding=1)
            layers = [down_conv, submodule, nn.ReLU(True), up_conv, nn.Tanh()]
        elif innermost:
            up_conv = nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down_conv, nn.ReLU(True), up_conv, make_norm(outer)]
        else:
            up_conv = nn.ConvTranspose2d(2 * inner, outer, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down_conv, make_norm(inner), submodule,
                      nn.ReLU(True), up_conv, make_norm(outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


@portable
class UNetGenerator(nn.Module):
    """U-Net generator of Pix2pix (Isola et al. 2017) with ``num_downs`` stride-2 levels and skips.

    Level i (0 = outermost) has ``width * min(2**i, 8)`` channels, so ``num_downs=8`` is the
    standard ``unet_256`` (256 px -> 1x1 bottleneck) and ``num_downs=7`` is ``unet_128``;
    smaller depths suit smaller images. Dropout 0.5 (when on) sits in the 512-channel middle
    levels as in the reference. Input (N, in_channels, H, W) with H, W divisible by
    ``2**num_downs``; output (N, out_channels, H, W) in [-1, 1].
    """

    def __init__(self, in_channels: int, out_channels: int, *, num_downs: int = 8, width: int = 64,
                 norm: str = "instance", dropout: bool = False):
        super().__init__()
        _check_channels(in_channels=in_channels, out_channels=out_channels, width=width)
        if num_downs < 2:
            raise ValueError(f"num_downs must be >= 2, not {num_downs}")
        self.num_downs = num_downs
        channels = [width * min(2 ** i, 8) for i in range(num_downs)]  # inner channels of level i
        # innermost level first, then wrap outwards
        level = _UNetLevel(channels[-2], channels[-1], innermost=True, norm=norm)
        for i in range(num_downs - 2, 0, -1):
            # the reference puts dropout only in the levels between two 8*width layers
            level = _UNetLevel(channels[i - 1], channels[i], submodule=level, norm=norm,
                               dropout=dropout and channels[i - 1] == channels[i] == 8 * width)
        self.model = _UNetLevel(out_channels, channels[0], input_channels=in_channels, submodule=level,
                                outermost=True, norm=norm)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = 2 ** self.num_downs
        if x.shape[-1] % side or x.shape[-2] % side:
            raise ValueError(f"UNetGenerator with num_downs={self.num_downs} needs H and W divisible by {side}, "
                             f"got {tuple(x.shape[-2:])}")
        return self.model(x)


# --- PatchGAN discriminator --------------------------------------------------------------------
class PatchDiscriminator(nn.Module):
    """PatchGAN critic (Isola et al. 2017); ``n_layers=3`` is the 70x70 receptive-field version.

    Input (N, in_channels, H, W) — Pix2pix feeds the concatenated (input, output) pair, so
    ``in_channels`` = input + output channels there. Output (N, 1, H', W') raw scores, one per
    overlapping patch (30x30 for 256 px input at n_layers=3); use with an LSGAN or BCE loss.
    """

    def __init__(self, in_channels: int, *, width: int = 64, n_layers: int = 3, norm: str = "instance"):
        super().__init__()
        _check_channels(in_channels=in_channels, width=width)
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, not {n_layers}")
        make_norm, bias = norm_layer(norm), norm == "instance"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1  # the last feature layer keeps resolution
            layers += [nn.Conv2d(width * prev, width * mult, 4, stride=stride, padding=1, bias=bias),
                       make_norm(width * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(width * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# --- factories ---------------------------------------------------------------------------------
def init_weights(net: nn.Module, *, gain: float = 0.02) -> nn.Module:
    """Initialise as the reference ("normal" init): conv weights ~ N(0, gain), biases 0, norm scale ~ N(1, gain).

    Uses the global torch RNG (seed it first with ``medgan.train.seed_everything``). Returns ``net``.
    """
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


_RESNET = re.compile(r"^resnet_(\d+)blocks$")
_UNET = re.compile(r"^unet_(\d+)$")


def define_generator(name: str, in_channels: int, out_channels: int, *, width: int = 64, norm: str = "instance",
                     dropout: bool = False, init_gain: float | None = 0.02) -> nn.Module:
    """Build a generator by name, initialised like the reference.

    Args:
        name: ``"resnet_9blocks"``, ``"resnet_6blocks"`` (any ``resnet_<n>blocks``), ``"unet_256"``,
            ``"unet_128"`` (any ``unet_<2**k>``: k stride-2 levels, for 2**k px images, k >= 2).
        in_channels, out_channels: image channels (1 for CT/MRI/PET).
        width: channels of the first layer (the reference's ``ngf``; 64 in the papers).
        norm: ``"instance"`` (CycleGAN) or ``"batch"`` (Pix2pix).
        dropout: dropout 0.5 in the residual blocks / middle U-Net levels (Pix2pix uses it).
        init_gain: std of the N(0, gain) init; ``None`` keeps PyTorch's default init.

    Raises ``ValueError`` on an unknown name (listing the known ones).
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
    if (m := _RESNET.match(name)) is not None:
        net: nn.Module = ResnetGenerator(in_channels, out_channels, width=width, n_blocks=int(m.group(1)),
                                         norm=norm, dropout=dropout)
    elif (m := _UNET.match(name)) is not None and (size := int(m.group(1))) >= 4 and size & (size - 1) == 0:
        net = UNetGenerator(in_channels, out_channels, num_downs=size.bit_length() - 1, width=width,
                            norm=norm, dropout=dropout)
    else:
        raise ValueError(f"unknown generator {name!r}; known: {', '.join(GENERATORS)} "
                         f"(or resnet_<n>blocks, unet_<power of two>)")
    return init_weights(net, gain=init_gain) if init_gain is not None else net


def define_discriminator(in_channels: int, *, width: int = 64, n_layers: int = 3, norm: str = "instance",
                         init_gain: float | None = 0.02) -> PatchDiscriminator:
    """A :class:`PatchDiscriminator` initialised like the reference (``n_layers=3``: 70x70 PatchGAN)."""
    net = PatchDiscriminator(in_channels, width=width, n_layers=n_layers, norm=norm)
    return init_weights(net, gain=init_gain) if init_gain is not None else net


# --- inference ---------------------------------------------------------------------------------
def dropout_seed(seed: int, index: int) -> int:
    """The seed of the dropout masks of the test batch that starts at image ``index`` (a hash of both,
    so neighbouring seeds or indices share no shifted mask sequence)."""
    raw = hashlib.sha256(f"dropout/{int(seed)}/{int(index)}".encode()).digest()
    return int.from_bytes(raw[:8], "little") & ((1 << 63) - 1)


def depends_on_inference_mode(net: nn.Module) -> bool:
    """Whether ``net`` has layers that :func:`forward_in_mode` runs differently in its two modes (batch norm
    with running statistics, dropout); instance norm without running statistics is the same in both."""
    return any(isinstance(m, nn.modules.dropout._DropoutNd) or
               (isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats) for m in net.modules())


@torch.no_grad()
def forward_in_mode(net: nn.Module, x: torch.Tensor, *, mode: str = "eval", seed: int = 0) -> torch.Tensor:
    """``net(x)`` in inference mode ``mode`` (:data:`INFERENCE_MODES`), leaving ``net`` as it was.

    - ``"eval"``: ``net.eval()``: batch norm normalises with its running statistics, dropout is off.
    - ``"train"``: as pytorch-CycleGAN-and-pix2pix ``test.py`` without ``--eval`` (and the Pix2pix paper,
      which keeps dropout as the generator's noise at test time): batch norm normalises with the mean
      and variance of this batch ``x`` (so the output depends on which images share the batch), and
      dropout is on, its masks drawn from a generator seeded with ``seed`` (the global RNG is left as it
      was). The running statistics are restored afterwards, so scoring never changes the model.

    Instance norm without running statistics (CycleGAN's) is the same in both modes; so is a network
    with neither batch norm nor dropout.
    """
    if mode not in INFERENCE_MODES:
        raise ValueError(f"inference mode must be one of {INFERENCE_MODES}, not {mode!r}")
    was_training = net.training
    if mode == "eval":
        net.eval()
        try:
            return net(x)
        finally:
            net.train(was_training)
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False)} for m in norms]
    # torch.manual_seed seeds every GPU: fork (then restore) all their RNG states, not only x's
    devices = list(range(torch.cuda.device_count())) if x.device.type == "cuda" else []
    net.train()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seed))
            return net(x)
    finally:
        for m, buffers in zip(norms, saved):
            for k, v in buffers.items():
                getattr(m, k).copy_(v)
        net.train(was_training)
