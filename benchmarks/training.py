"""Training-step speed: medgan's steps against reference-architecture steps, same settings, same run.

    .venv/bin/python benchmarks/training.py                      # all four models, fp32 and bf16
    .venv/bin/python benchmarks/training.py --models cyclegan --precision fp32 --steps 5
    .venv/bin/python benchmarks/training.py --engine              # also the engine-overhead section

The reference steps are written in this file from the published architectures and official
training code (not imported from medgan):

- **cyclegan**: ResNet-9 generators and 70x70 PatchGAN discriminators, one iteration of
  junyanz/pytorch-CycleGAN-and-pix2pix ``CycleGANModel.optimize_parameters``: G_A, G_B with LSGAN,
  cycle and identity L1 (lambda 10, identity 0.5), then D_A, D_B on 50-image pools.
- **pix2pix**: the U-Net of the same repository (``unet_256`` at 256 px; at S px the same layout with
  log2(S) levels) and the conditional PatchGAN, batch norm, dropout; vanilla GAN + 100 * L1.
- **pggan**: tkarras/progressive_growing_of_gans at its final resolution (fully grown, lod 0):
  equalised-LR convs, pixel norm, minibatch stddev; WGAN-GP (lambda 10) + drift (0.001), one D and
  one G update, EMA 0.999. The default 64 px with channels x0.25 (128 maps up to 32 px, 64 at 64 px)
  keeps a step to a few seconds on one core; ``--pggan-width 1`` is the paper's.
- **stargan_v2**: clovaai/stargan-v2 ``Solver.train`` for one iteration: D latent- and
  reference-guided (adversarial + R1), G latent-guided (adversarial, style reconstruction,
  diversity, cycle) and reference-guided, EMA of G, F and E. Small images (32 px) and widths
  (``--stargan-width``, official is 2**14 / size, capped at 512) keep it to seconds.

medgan's side is the step class the studies train with (``CycleGANStep``, ``Pix2PixStep``,
``PGGANStep`` at its last iteration, ``StarGANv2Step``) under a ``StepContext`` as the engine
builds it. Both sides get the same batch, image size, channels, optimiser settings and threads
(one by default: on a shared machine, multi-threaded steps stall on descheduled threads);
the parameter count of every network is printed and must match. Each (model, precision) warms
up, then alternates reference and medgan steps so the machine's load falls on both, and prints
the median seconds per step and

    <model>  step speed ratio reference/medgan = X (precision P)

(> 1: medgan's step is faster), then, for each study whose default profile trains the model,

    <model>  default-profile step speed ratio reference fp32 / medgan P = X (<notebook> <key>: P)

the reference in float32 (as the official code trains) against medgan at that profile's
precision: the issue's "≥ 1.3 with the precision the default profile uses". bf16 is CPU autocast (``torch.autocast("cpu", torch.bfloat16)``)
on both sides. The load average is printed with the results: the machine is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medgan.config import load_params  # noqa: E402
from medgan.data.toy_shapes import ToyShapes  # noqa: E402
from medgan.models.image_to_image import define_discriminator, define_generator  # noqa: E402
from medgan.models.pggan import PGGANConfig  # noqa: E402
from medgan.models.stargan_v2 import StarGANv2Config  # noqa: E402
from medgan.studies import build_job  # noqa: E402
from medgan.train import StepContext, seed_everything, train  # noqa: E402
from medgan.train.cyclegan import CycleGANStep  # noqa: E402
from medgan.train.pggan import PGGANStep  # noqa: E402
from medgan.train.pix2pix import Pix2PixStep  # noqa: E402
from medgan.train.stargan_v2 import StarGANv2Step  # noqa: E402

MODELS = ("cyclegan", "pix2pix", "pggan", "stargan_v2")
# The default-profile jobs that train each model, and the parameter naming their precision.
DEFAULT_JOBS = {"cyclegan": [("03_brain_ct_mri_cyclegan", "train.precision"), ("04_pet_early_to_delayed", "train.precision")],
                "pix2pix": [("04_pet_early_to_delayed", "train.precision")],
                "pggan": [("02_ct_fidelity_diversity", "pggan.precision"), ("05_cxr_pggan", "pggan.precision")],
                "stargan_v2": [("01_rxrx19a_stargan_v2", "train.precision")]}


def default_precision(notebook: str, key: str) -> str:
    value = load_params(notebook, "default")
    for part in key.split("."):
        value = getattr(value, part)
    return str(value)
DEFAULT_SIZE = {"cyclegan": 64, "pix2pix": 64, "pggan": 64, "stargan_v2": 32}
DEFAULT_BATCH = {"cyclegan": 2, "pix2pix": 2, "pggan": 4, "stargan_v2": 4}


def autocast(precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)


def normal_init(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """The reference's ``init_weights(net, 'normal', 0.02)``: conv/linear N(0, gain), norm weights N(1, gain)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


# === CycleGAN / Pix2pix reference networks (pytorch-CycleGAN-and-pix2pix, models/networks.py) ===

def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class RefResnetBlock(nn.Module):
    def __init__(self, dim: int, norm: str):
        super().__init__()
        bias = norm == "instance"  # convs before a batch norm carry no bias
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _norm(norm, dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _norm(norm, dim))

    def forward(self, x):
        return x + self.conv_block(x)


class RefResnetGenerator(nn.Module):
    """c7s1-64, d128, d256, 9 x R256, u128, u64, c7s1-out, tanh."""

    def __init__(self, input_nc: int, output_nc: int, ngf: int = 64, n_blocks: int = 9, norm: str = "instance"):
        super().__init__()
        bias = norm == "instance"
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias), _norm(norm, ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2 ** i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=bias),
                      _norm(norm, ngf * mult * 2), nn.ReLU(True)]
        model += [RefResnetBlock(ngf * 4, norm) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            model += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                         bias=bias), _norm(norm, ngf * mult // 2), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


class RefNLayerDiscriminator(nn.Module):
    """70x70 PatchGAN: C64 (no norm), C128, C256, C512 (stride 1), 1-channel output."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance"):
        super().__init__()
        bias = norm == "instance"
        seq = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        nf_mult = 1
        for n in range(1, n_layers):
            prev, nf_mult = nf_mult, min(2 ** n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * nf_mult, 4, stride=2, padding=1, bias=bias),
                    _norm(norm, ndf * nf_mult), nn.LeakyReLU(0.2, True)]
        prev, nf_mult = nf_mult, min(2 ** n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * nf_mult, 4, stride=1, padding=1, bias=bias),
                _norm(norm, ndf * nf_mult), nn.LeakyReLU(0.2, True),
                nn.Conv2d(ndf * nf_mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


class RefUnetBlock(nn.Module):
    """X -> [down -> submodule -> up] concatenated with X (the outermost block returns the branch only)."""

    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False, innermost=False,
                 norm="batch", use_dropout=False):
        super().__init__()
        self.outermost = outermost
        bias = norm == "instance"
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=bias)
        if outermost:
            model = [downconv, submodule, nn.ReLU(True),
                     nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1), nn.Tanh()]
        elif innermost:
            model = [nn.LeakyReLU(0.2, True), downconv, nn.ReLU(True),
                     nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=bias), _norm(norm, outer_nc)]
        else:
            model = [nn.LeakyReLU(0.2, True), downconv, _norm(norm, inner_nc), submodule, nn.ReLU(True),
                     nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=bias),
                     _norm(norm, outer_nc)]
            if use_dropout:
                model.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class RefUnetGenerator(nn.Module):
    def __init__(self, input_nc, output_nc, num_downs, ngf=64, norm="batch", use_dropout=True):
        super().__init__()
        block = RefUnetBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = RefUnetBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout)
        block = RefUnetBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = RefUnetBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = RefUnetBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = RefUnetBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm=norm)

    def forward(self, x):
        return self.model(x)


class RefImagePool:
    def __init__(self, size: int = 50):
        self.size, self.images = size, []

    def query(self, images):
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif torch.rand(1).item() > 0.5:
                i = int(torch.randint(0, self.size, (1,)).item())
                out.append(self.images[i].clone())
                self.images[i] = image
            else:
                out.append(image)
        return torch.cat(out, 0)


def _lsgan(pred, real: bool):
    return F.mse_loss(pred, torch.full_like(pred, 1.0 if real else 0.0))


class RefCycleGAN:
    def __init__(self, channels: int, ngf: int = 64, ndf: int = 64, lr=2e-4, betas=(0.5, 0.999),
                 lambda_cycle=10.0, lambda_identity=0.5):
        self.G_A = normal_init(RefResnetGenerator(channels, channels, ngf))
        self.G_B = normal_init(RefResnetGenerator(channels, channels, ngf))
        self.D_A = normal_init(RefNLayerDiscriminator(channels, ndf))
        self.D_B = normal_init(RefNLayerDiscriminator(channels, ndf))
        self.opt_G = torch.optim.Adam(itertools.chain(self.G_A.parameters(), self.G_B.parameters()), lr=lr, betas=betas)
        self.opt_D = torch.optim.Adam(itertools.chain(self.D_A.parameters(), self.D_B.parameters()), lr=lr, betas=betas)
        self.pool_A, self.pool_B = RefImagePool(50), RefImagePool(50)
        self.lam, self.lam_idt = lambda_cycle, lambda_identity
        self.nets = {"G_A": self.G_A, "G_B": self.G_B, "D_A": self.D_A, "D_B": self.D_B}

    def step(self, batch, precision):
        real_A, real_B = batch["A"], batch["B"]
        with autocast(precision):
            fake_B = self.G_A(real_A)
            rec_A = self.G_B(fake_B)
            fake_A = self.G_B(real_B)
            rec_B = self.G_A(fake_A)
        for p in itertools.chain(self.D_A.parameters(), self.D_B.parameters()):
            p.requires_grad_(False)
        self.opt_G.zero_grad()
        with autocast(precision):
            idt_A = self.G_A(real_B)
            loss_idt_A = F.l1_loss(idt_A, real_B) * self.lam * self.lam_idt
            idt_B = self.G_B(real_A)
            loss_idt_B = F.l1_loss(idt_B, real_A) * self.lam * self.lam_idt
            loss_G = (_lsgan(self.D_A(fake_B), True) + _lsgan(self.D_B(fake_A), True)
                      + F.l1_loss(rec_A, real_A) * self.lam + F.l1_loss(rec_B, real_B) * self.lam
                      + loss_idt_A + loss_idt_B)
        loss_G.backward()
        self.opt_G.step()
        for p in itertools.chain(self.D_A.parameters(), self.D_B.parameters()):
            p.requires_grad_(True)
        self.opt_D.zero_grad()
        for D, real, fake in ((self.D_A, real_B, self.pool_B.query(fake_B)), (self.D_B, real_A, self.pool_A.query(fake_A))):
            with autocast(precision):
                loss_D = (_lsgan(D(real), True) + _lsgan(D(fake.detach()), False)) * 0.5
            loss_D.backward()
        self.opt_D.step()


class RefPix2Pix:
    def __init__(self, channels: int, size: int, ngf: int = 64, ndf: int = 64, lr=2e-4, betas=(0.5, 0.999),
                 lambda_l1=100.0):
        self.G = normal_init(RefUnetGenerator(channels, channels, int(math.log2(size)), ngf, norm="batch"))
        self.D = normal_init(RefNLayerDiscriminator(2 * channels, ndf, norm="batch"))
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=lr, betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=lr, betas=betas)
        self.lambda_l1 = lambda_l1
        self.nets = {"G": self.G, "D": self.D}

    def step(self, batch, precision):
        real_A, real_B = batch["image"], batch["target"]
        bce = nn.BCEWithLogitsLoss()
        with autocast(precision):
            fake_B = self.G(real_A)
        for p in self.D.parameters():
            p.requires_grad_(True)
        self.opt_D.zero_grad()
        with autocast(precision):
            pred_fake = self.D(torch.cat((real_A, fake_B), 1).detach())
            pred_real = self.D(torch.cat((real_A, real_B), 1))
            loss_D = (bce(pred_fake, torch.zeros_like(pred_fake)) + bce(pred_real, torch.ones_like(pred_real))) * 0.5
        loss_D.backward()
        self.opt_D.step()
        for p in self.D.parameters():
            p.requires_grad_(False)
        self.opt_G.zero_grad()
        with autocast(precision):
            pred_fake = self.D(torch.cat((real_A, fake_B), 1))
            loss_G = bce(pred_fake, torch.ones_like(pred_fake)) + F.l1_loss(fake_B, real_B) * self.lambda_l1
        loss_G.backward()
        self.opt_G.step()


# === PGGAN reference (progressive_growing_of_gans, networks.py G_paper / D_paper at lod 0) ========

class RefWSConv(nn.Module):
    """Conv with weights N(0, 1) scaled at run time by gain / sqrt(fan_in) (use_wscale)."""

    def __init__(self, cin, cout, k, gain=math.sqrt(2)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.wscale, self.pad = gain / math.sqrt(cin * k * k), k // 2

    def forward(self, x):
        return F.conv2d(x, self.weight * self.wscale, self.bias, padding=self.pad)


class RefWSDense(nn.Module):
    def __init__(self, fin, fout, gain=math.sqrt(2)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fout, fin))
        self.bias = nn.Parameter(torch.zeros(fout))
        self.wscale = gain / math.sqrt(fin)

    def forward(self, x):
        return F.linear(x, self.weight * self.wscale, self.bias)


def _pixel_norm(x, eps=1e-8):
    return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + eps)


def _lrelu(x):
    return F.leaky_relu(x, 0.2)


def _minibatch_stddev(x, group_size=4):
    b, c, h, w = x.shape
    g = min(group_size, b)
    y = x.reshape(g, -1, c, h, w).float()
    y = y - y.mean(0, keepdim=True)
    y = torch.sqrt(torch.mean(y * y, 0) + 1e-8)
    y = y.mean(dim=(1, 2, 3)).to(x.dtype)
    y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], 1)


def _nf(stage, fmap_base, fmap_max):
    return min(int(fmap_base / 2.0 ** stage), fmap_max)  # fmap_decay = 1


class RefPGGenerator(nn.Module):
    """Latent -> image at 2**resolution_log2 px; every resolution's toRGB exists, lod 0 uses the last."""

    def __init__(self, resolution, channels, latent=512, fmap_base=8192, fmap_max=512):
        super().__init__()
        self.rlog2 = int(math.log2(resolution))
        nf = lambda s: _nf(s, fmap_base, fmap_max)  # noqa: E731
        self.dense = RefWSDense(latent, nf(1) * 16, gain=math.sqrt(2) / 4)
        self.conv4 = RefWSConv(nf(1), nf(1), 3)
        self.blocks = nn.ModuleList(nn.ModuleList([RefWSConv(nf(r - 2), nf(r - 1), 3), RefWSConv(nf(r - 1), nf(r - 1), 3)])
                                    for r in range(3, self.rlog2 + 1))
        self.torgb = nn.ModuleList(RefWSConv(nf(r - 1), channels, 1, gain=1.0) for r in range(2, self.rlog2 + 1))
        self.c4 = nf(1)

    def forward(self, z):
        x = _pixel_norm(z)
        x = _pixel_norm(_lrelu(self.dense(x).view(-1, self.c4, 4, 4)))
        x = _pixel_norm(_lrelu(self.conv4(x)))
        for conv0, conv1 in self.blocks:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = _pixel_norm(_lrelu(conv0(x)))
            x = _pixel_norm(_lrelu(conv1(x)))
        return self.torgb[-1](x)


class RefPGDiscriminator(nn.Module):
    def __init__(self, resolution, channels, fmap_base=8192, fmap_max=512):
        super().__init__()
        self.rlog2 = int(math.log2(resolution))
        nf = lambda s: _nf(s, fmap_base, fmap_max)  # noqa: E731
        self.fromrgb = nn.ModuleList(RefWSConv(channels, nf(r - 1), 1) for r in range(2, self.rlog2 + 1))
        self.blocks = nn.ModuleList(nn.ModuleList([RefWSConv(nf(r - 1), nf(r - 1), 3), RefWSConv(nf(r - 1), nf(r - 2), 3)])
                                    for r in range(self.rlog2, 2, -1))
        self.conv4 = RefWSConv(nf(1) + 1, nf(1), 3)
        self.dense0 = RefWSDense(nf(1) * 16, nf(0 + 1))
        self.dense1 = RefWSDense(nf(1), 1, gain=1.0)

    def forward(self, img):
        x = _lrelu(self.fromrgb[-1](img))
        for conv0, conv1 in self.blocks:
            x = F.avg_pool2d(_lrelu(conv1(_lrelu(conv0(x)))), 2)
        x = _lrelu(self.conv4(_minibatch_stddev(x)))
        x = _lrelu(self.dense0(x.flatten(1)))
        return self.dense1(x)


class RefPGGAN:
    def __init__(self, resolution, channels, width, lr=1e-3, betas=(0.0, 0.99), eps=1e-8):
        base, cap = int(8192 * width), int(512 * width)
        self.G = RefPGGenerator(resolution, channels, 512, base, cap)
        self.D = RefPGDiscriminator(resolution, channels, base, cap)
        self.Gs = RefPGGenerator(resolution, channels, 512, base, cap)
        self.Gs.load_state_dict(self.G.state_dict())
        self.Gs.requires_grad_(False)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=lr, betas=betas, eps=eps)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=lr, betas=betas, eps=eps)
        self.nets = {"G": self.G, "D": self.D, "G_ema": self.Gs}

    def step(self, batch, precision):
        reals = batch["image"]
        n = reals.shape[0]
        self.opt_D.zero_grad()
        with autocast(precision):
            with torch.no_grad():
                fakes = self.G(torch.randn(n, 512))
            real_scores, fake_scores = self.D(reals).float(), self.D(fakes).float()
            loss = fake_scores - real_scores
            mix = torch.rand(n, 1, 1, 1)
            mixed = torch.lerp(reals, fakes.float(), mix).requires_grad_(True)
            mixed_scores = self.D(mixed).float()
            (grads,) = torch.autograd.grad(mixed_scores.sum(), mixed, create_graph=True)
            norms = grads.float().square().sum(dim=(1, 2, 3)).sqrt()
            loss = loss + 10.0 * (norms - 1.0).square().unsqueeze(1) + 0.001 * real_scores.square()
        loss.mean().backward()
        self.opt_D.step()
        self.opt_G.zero_grad()
        self.D.requires_grad_(False)
        with autocast(precision):
            loss_G = -self.D(self.G(torch.randn(n, 512))).float()
        loss_G.mean().backward()
        self.D.requires_grad_(True)
        self.opt_G.step()
        with torch.no_grad():
            for p_s, p in zip(self.Gs.parameters(), self.G.parameters()):
                p_s.copy_(torch.lerp(p, p_s, 0.999))


# === StarGAN v2 reference (stargan-v2, core/model.py and core/solver.py; w_hpf = 0) ===============

class RefResBlk(nn.Module):
    def __init__(self, dim_in, dim_out, normalize=False, downsample=False):
        super().__init__()
        self.actv, self.normalize, self.downsample = nn.LeakyReLU(0.2), normalize, downsample
        self.learned_sc = dim_in != dim_out
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        if normalize:
            self.norm1 = nn.InstanceNorm2d(dim_in, affine=True)
            self.norm2 = nn.InstanceNorm2d(dim_in, affine=True)
        if self.learned_sc:
            self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False)

    def forward(self, x):
        s = self.conv1x1(x) if self.learned_sc else x
        if self.downsample:
            s = F.avg_pool2d(s, 2)
        r = self.norm1(x) if self.normalize else x
        r = self.conv1(self.actv(r))
        if self.downsample:
            r = F.avg_pool2d(r, 2)
        if self.normalize:
            r = self.norm2(r)
        r = self.conv2(self.actv(r))
        return (s + r) / math.sqrt(2)


class RefAdaIN(nn.Module):
    def __init__(self, style_dim, num_features):
        super().__init__()
        self.norm = nn.InstanceNorm2d(num_features, affine=False)
        self.fc = nn.Linear(style_dim, num_features * 2)

    def forward(self, x, s):
        h = self.fc(s).view(s.size(0), -1, 1, 1)
        gamma, beta = torch.chunk(h, chunks=2, dim=1)
        return (1 + gamma) * self.norm(x) + beta


class RefAdainResBlk(nn.Module):
    def __init__(self, dim_in, dim_out, style_dim=64, upsample=False):
        super().__init__()
        self.actv, self.upsample, self.learned_sc = nn.LeakyReLU(0.2), upsample, dim_in != dim_out
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, 1, 1)
        self.norm1, self.norm2 = RefAdaIN(style_dim, dim_in), RefAdaIN(style_dim, dim_out)
        if self.learned_sc:
            self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False)

    def forward(self, x, s):
        sc = F.interpolate(x, scale_factor=2, mode="nearest") if self.upsample else x
        sc = self.conv1x1(sc) if self.learned_sc else sc
        r = self.actv(self.norm1(x, s))
        if self.upsample:
            r = F.interpolate(r, scale_factor=2, mode="nearest")
        r = self.conv2(self.actv(self.norm2(self.conv1(r), s)))
        return (r + sc) / math.sqrt(2)


class RefSGGenerator(nn.Module):
    def __init__(self, img_size, channels, style_dim, dim_in, max_conv_dim, repeat_num):
        super().__init__()
        self.from_rgb = nn.Conv2d(channels, dim_in, 3, 1, 1)
        self.encode, self.decode = nn.ModuleList(), nn.ModuleList()
        self.to_rgb = nn.Sequential(nn.InstanceNorm2d(dim_in, affine=True), nn.LeakyReLU(0.2),
                                    nn.Conv2d(dim_in, channels, 1, 1, 0))
        dim_out = dim_in
        for _ in range(repeat_num):
            dim_out = min(dim_in * 2, max_conv_dim)
            self.encode.append(RefResBlk(dim_in, dim_out, normalize=True, downsample=True))
            self.decode.insert(0, RefAdainResBlk(dim_out, dim_in, style_dim, upsample=True))
            dim_in = dim_out
        for _ in range(2):
            self.encode.append(RefResBlk(dim_out, dim_out, normalize=True))
            self.decode.insert(0, RefAdainResBlk(dim_out, dim_out, style_dim))

    def forward(self, x, s):
        x = self.from_rgb(x)
        for block in self.encode:
            x = block(x)
        for block in self.decode:
            x = block(x, s)
        return self.to_rgb(x)


class RefMapping(nn.Module):
    def __init__(self, latent_dim, style_dim, num_domains, hidden=512):
        super().__init__()
        layers = [nn.Linear(latent_dim, hidden), nn.ReLU()]
        for _ in range(3):
            layers += [nn.Linear(hidden, hidden), nn.ReLU()]
        self.shared = nn.Sequential(*layers)
        self.unshared = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                          nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, style_dim))
            for _ in range(num_domains))

    def forward(self, z, y):
        h = self.shared(z)
        out = torch.stack([layer(h) for layer in self.unshared], dim=1)
        return out[torch.arange(y.size(0)), y]


def _ref_trunk(img_size, channels, dim_in, max_conv_dim):
    blocks = [nn.Conv2d(channels, dim_in, 3, 1, 1)]
    dim_out = dim_in
    for _ in range(int(math.log2(img_size)) - 2):
        dim_out = min(dim_in * 2, max_conv_dim)
        blocks.append(RefResBlk(dim_in, dim_out, downsample=True))
        dim_in = dim_out
    blocks += [nn.LeakyReLU(0.2), nn.Conv2d(dim_out, dim_out, 4, 1, 0), nn.LeakyReLU(0.2)]
    return blocks, dim_out


class RefStyleEncoder(nn.Module):
    def __init__(self, img_size, channels, style_dim, num_domains, dim_in, max_conv_dim):
        super().__init__()
        blocks, dim_out = _ref_trunk(img_size, channels, dim_in, max_conv_dim)
        self.shared = nn.Sequential(*blocks)
        self.unshared = nn.ModuleList(nn.Linear(dim_out, style_dim) for _ in range(num_domains))

    def forward(self, x, y):
        h = self.shared(x).view(x.size(0), -1)
        out = torch.stack([layer(h) for layer in self.unshared], dim=1)
        return out[torch.arange(y.size(0)), y]


class RefSGDiscriminator(nn.Module):
    def __init__(self, img_size, channels, num_domains, dim_in, max_conv_dim):
        super().__init__()
        blocks, dim_out = _ref_trunk(img_size, channels, dim_in, max_conv_dim)
        self.main = nn.Sequential(*blocks, nn.Conv2d(dim_out, num_domains, 1, 1, 0))

    def forward(self, x, y):
        out = self.main(x).view(x.size(0), -1)
        return out[torch.arange(y.size(0)), y]


def _he_init(m):
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        if m.bias is not None:
            nn.init.constant_(m.bias, 0)


def _bce(logits, target: float):
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, fill_value=target))


class RefStarGANv2:
    def __init__(self, c: StarGANv2Config, lr=1e-4, f_lr=1e-6, betas=(0.0, 0.99), weight_decay=1e-4,
                 lambda_reg=1.0, lambda_sty=1.0, lambda_ds=1.0, lambda_cyc=1.0):
        repeat = c.n_down if c.n_down is not None else max(1, int(math.log2(c.image_size)) - 4)  # official: log2 - 4
        self.G = RefSGGenerator(c.image_size, c.channels, c.style_dim, c.base_width, c.max_width, repeat)
        self.F = RefMapping(c.latent_dim, c.style_dim, c.num_domains, c.mapping_hidden)
        self.E = RefStyleEncoder(c.image_size, c.channels, c.style_dim, c.num_domains, c.base_width, c.max_width)
        self.D = RefSGDiscriminator(c.image_size, c.channels, c.num_domains, c.base_width, c.max_width)
        for net in (self.G, self.F, self.E, self.D):
            net.apply(_he_init)
        self.ema = {k: self._copy(net) for k, net in (("G", self.G), ("F", self.F), ("E", self.E))}
        self.opt = {k: torch.optim.Adam(net.parameters(), lr=f_lr if k == "F" else lr, betas=betas,
                                        weight_decay=weight_decay)
                    for k, net in (("G", self.G), ("F", self.F), ("E", self.E), ("D", self.D))}
        self.lam = dict(reg=lambda_reg, sty=lambda_sty, ds=lambda_ds, cyc=lambda_cyc)
        self.latent_dim = c.latent_dim
        self.nets = {"generator": self.G, "mapping_network": self.F, "style_encoder": self.E,
                     "discriminator": self.D, **{f"{k}_ema": v for k, v in self.ema.items()}}

    @staticmethod
    def _copy(net):
        return copy.deepcopy(net).requires_grad_(False)

    def _reset_grad(self):
        for opt in self.opt.values():
            opt.zero_grad()

    def _style(self, y, z=None, ref=None):
        return self.F(z, y) if z is not None else self.E(ref, y)

    def _d_loss(self, x_real, y_org, y_trg, z_trg=None, x_ref=None):
        x_real.requires_grad_()
        out = self.D(x_real, y_org)
        loss_real = _bce(out, 1)
        (grad,) = torch.autograd.grad(out.sum(), x_real, create_graph=True, retain_graph=True)
        loss_reg = 0.5 * grad.pow(2).reshape(x_real.size(0), -1).sum(1).mean(0)
        with torch.no_grad():
            x_fake = self.G(x_real, self._style(y_trg, z_trg, x_ref))
        loss_fake = _bce(self.D(x_fake, y_trg), 0)
        return loss_real + loss_fake + self.lam["reg"] * loss_reg

    def _g_loss(self, x_real, y_org, y_trg, zs=None, refs=None):
        first, second = ((zs[0], None), (zs[1], None)) if zs is not None else ((None, refs[0]), (None, refs[1]))
        s_trg = self._style(y_trg, *first)
        x_fake = self.G(x_real, s_trg)
        loss_adv = _bce(self.D(x_fake, y_trg), 1)
        loss_sty = torch.mean(torch.abs(self.E(x_fake, y_trg) - s_trg))
        x_fake2 = self.G(x_real, self._style(y_trg, *second)).detach()
        loss_ds = torch.mean(torch.abs(x_fake - x_fake2))
        x_rec = self.G(x_fake, self.E(x_real, y_org))
        loss_cyc = torch.mean(torch.abs(x_rec - x_real))
        return loss_adv + self.lam["sty"] * loss_sty - self.lam["ds"] * loss_ds + self.lam["cyc"] * loss_cyc

    def step(self, batch, precision):
        x_real, y_org = batch["image"], batch["label"]
        x_ref, x_ref2, y_trg = batch["x_ref"], batch["x_ref2"], batch["y_trg"]
        z_trg, z_trg2 = torch.randn(x_real.size(0), self.latent_dim), torch.randn(x_real.size(0), self.latent_dim)
        for kwargs in (dict(z_trg=z_trg), dict(x_ref=x_ref)):
            with autocast(precision):
                d_loss = self._d_loss(x_real.detach().clone(), y_org, y_trg, **kwargs)
            self._reset_grad()
            d_loss.backward()
            self.opt["D"].step()
        with autocast(precision):
            g_loss = self._g_loss(x_real, y_org, y_trg, zs=(z_trg, z_trg2))
        self._reset_grad()
        g_loss.backward()
        for k in ("G", "F", "E"):
            self.opt[k].step()
        with autocast(precision):
            g_loss = self._g_loss(x_real, y_org, y_trg, refs=(x_ref, x_ref2))
        self._reset_grad()
        g_loss.backward()
        self.opt["G"].step()
        with torch.no_grad():
            for k, net in (("G", self.G), ("F", self.F), ("E", self.E)):
                for p_ema, p in zip(self.ema[k].parameters(), net.parameters()):
                    p_ema.copy_(torch.lerp(p, p_ema, 0.999))


# === the two sides of each case =================================================================

class MedganSide:
    """A medgan TrainingStep run as the engine runs it (a StepContext per iteration)."""

    def __init__(self, step, total_steps: int, first_step: int = 0):
        self.step, self.total, self.i = step, total_steps, first_step
        self.nets = step.nets
        self.noise = torch.Generator().manual_seed(0)
        step.train(True)

    def run(self, batch, precision):
        ctx = StepContext(device=torch.device("cpu"), step=min(self.i, self.total - 1), total_steps=self.total,
                          precision=precision, noise_generator=self.noise)
        self.step.train_step(batch, ctx)
        self.i += 1


def build_case(model: str, *, size: int, batch: int, channels: int, pggan_width: float, stargan_width: int):
    """(reference, medgan side, batch, description) for one model at equal settings."""
    g = torch.Generator().manual_seed(0)
    image = lambda c=channels: torch.rand(batch, c, size, size, generator=g) * 2 - 1  # noqa: E731
    if model == "cyclegan":
        ref = RefCycleGAN(channels)
        med = CycleGANStep(define_generator("resnet_9blocks", channels, channels),
                           define_generator("resnet_9blocks", channels, channels),
                           define_discriminator(channels), define_discriminator(channels), pool_size=50)
        return ref, MedganSide(med, 10_000), {"A": image(), "B": image()}, \
            f"ResNet-9 G x2 + 70x70 PatchGAN D x2, {channels} ch, {size} px, batch {batch}, Adam 2e-4"
    if model == "pix2pix":
        ref = RefPix2Pix(channels, size)
        med = Pix2PixStep(define_generator(f"unet_{size}", channels, channels, norm="batch", dropout=True),
                          define_discriminator(2 * channels, norm="batch"))
        return ref, MedganSide(med, 10_000), {"image": image(), "target": image()}, \
            f"U-Net ({int(math.log2(size))} levels; unet_256 at 256 px) + PatchGAN, batch norm, {channels} ch, " \
            f"{size} px, batch {batch}"
    if model == "pggan":
        ref = RefPGGAN(size, channels, pggan_width)
        total = 1000
        med = PGGANStep(PGGANConfig(resolution=size, channels=channels, width=pggan_width), total_steps=total)
        depth, alpha = med.schedule.at(total - 1)
        assert 4 * 2 ** depth == size and alpha == 1.0, (depth, alpha)
        return ref, MedganSide(med, total, first_step=total - 1), {"image": image()}, \
            f"PGGAN fully grown at {size} px (channels x{pggan_width}), {channels} ch, batch {batch}, WGAN-GP + drift"
    if model == "stargan_v2":
        c = StarGANv2Config(image_size=size, channels=3, num_domains=3, base_width=stargan_width,
                            max_width=4 * stargan_width)
        ref = RefStarGANv2(c)
        n_refs = 24
        refs = [{"image": torch.rand(3, size, size, generator=g) * 2 - 1} for _ in range(n_refs)]
        labels = [i % 3 for i in range(n_refs)]
        med = StarGANv2Step(c, references=refs, reference_labels=labels)
        b = {"image": image(3), "label": torch.arange(batch) % 3}
        ref_batch = {**b, "x_ref": image(3), "x_ref2": image(3), "y_trg": (torch.arange(batch) + 1) % 3}
        return (ref, ref_batch), MedganSide(med, 10_000), b, \
            f"StarGAN v2 (G, F, E, D), 3 ch, {size} px, widths {stargan_width}..{4 * stargan_width}, 3 domains, " \
            f"batch {batch}, one official iteration (2 D + 2 G updates)"
    raise ValueError(f"unknown model {model!r}; known: {', '.join(MODELS)}")


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def compare_parameters(ref_nets: dict, med_nets: dict) -> str:
    """Per network 'name ref=medgan'; raises when any count differs (the architectures must be equal)."""
    ref_counts = sorted(count(n) for n in ref_nets.values())
    med_counts = sorted(count(n) for n in med_nets.values())
    if ref_counts != med_counts:
        raise SystemExit(f"parameter counts differ: reference {dict((k, count(v)) for k, v in ref_nets.items())} "
                         f"vs medgan {dict((k, count(v)) for k, v in med_nets.items())}")
    return ", ".join(f"{k} {count(v):,}" for k, v in med_nets.items())


def time_model(model: str, precisions: list[str], args) -> None:
    size = args.size or DEFAULT_SIZE[model]
    batch = args.batch or DEFAULT_BATCH[model]
    torch.manual_seed(0)
    ref, med, med_batch, description = build_case(model, size=size, batch=batch, channels=args.channels,
                                                   pggan_width=args.pggan_width, stargan_width=args.stargan_width)
    ref, ref_batch = ref if isinstance(ref, tuple) else (ref, med_batch)
    print(f"\n{model}: {description}", flush=True)
    print(f"  parameters (equal on both sides): {compare_parameters(ref.nets, med.nets)}", flush=True)
    medians: dict[str, tuple[float, float]] = {}
    for precision in precisions:
        for _ in range(args.warmup):
            ref.step(ref_batch, precision)
            med.run(med_batch, precision)
        ref_s, med_s = [], []
        for _ in range(args.steps):  # alternate, so load from other processes falls on both
            t0 = time.perf_counter()
            ref.step(ref_batch, precision)
            t1 = time.perf_counter()
            med.run(med_batch, precision)
            t2 = time.perf_counter()
            ref_s.append(t1 - t0)
            med_s.append(t2 - t1)
        r, m = statistics.median(ref_s), statistics.median(med_s)
        load = os.getloadavg()[0]
        print(f"  {precision}: median s/step reference {r:.3f}, medgan {m:.3f} "
              f"({args.steps} steps after {args.warmup} warm-up; load {load:.1f})", flush=True)
        print(f"{model:<11} step speed ratio reference/medgan = {r / m:.2f} (precision {precision})", flush=True)
        medians[precision] = (r, m)
    # The official implementations train in float32; medgan trains at its default profile's precision.
    for notebook, key in DEFAULT_JOBS[model]:
        chosen = default_precision(notebook, key)
        if "fp32" in medians and chosen in medians:
            print(f"{model:<11} default-profile step speed ratio reference fp32 / medgan {chosen} = "
                  f"{medians['fp32'][0] / medians[chosen][1]:.2f} ({notebook} {key}: {chosen})", flush=True)


# === engine overhead (the engine around a step vs a bare loop around the same step) ===============

def engine_overhead(steps: int, batch: int) -> None:
    params = load_params("00_quickstart", "default")
    dataset = ToyShapes(2048, size=params.data.image_size)

    def bare_loop(step) -> float:
        loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True)
        ctx = StepContext(device=torch.device("cpu"), step=0, total_steps=steps,
                          noise_generator=torch.Generator().manual_seed(0))
        done, t0 = 0, time.perf_counter()
        while done < steps:
            for b in loader:
                ctx.step = done
                step.train_step(b, ctx)
                done += 1
                if done == steps:
                    break
        return time.perf_counter() - t0

    seed_everything(0)
    t_bare = bare_loop(build_job("00_quickstart", "dcgan", params).step)
    seed_everything(0)
    job = build_job("00_quickstart", "dcgan", params)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(job.step, dataset, run_dir=tmp, total_steps=steps, batch_size=batch, log_every=10,
              checkpoint_every=100, sample_every=100, progress=False)
        t_engine = time.perf_counter() - t0
    extras = steps // 100
    print(f"\nengine overhead (quickstart DCGAN, {steps} steps, batch {batch}): bare loop {steps / t_bare:.1f} it/s, "
          f"medgan.train.train {steps / t_engine:.1f} it/s; engine / bare time ratio {t_engine / t_bare:.3f} "
          f"(1.0 = no overhead; includes {extras} checkpoints and {extras} sample grids)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per side and precision (median kept)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per side first")
    parser.add_argument("--batch", type=int, default=None, help=f"batch size (default per model: {DEFAULT_BATCH})")
    parser.add_argument("--size", type=int, default=None, help=f"image size, px (default per model: {DEFAULT_SIZE})")
    parser.add_argument("--channels", type=int, default=1, help="image channels of CycleGAN, Pix2pix, PGGAN (StarGAN v2: 3)")
    parser.add_argument("--precision", nargs="*", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads, both sides (default 1: on a shared machine, two threads' barriers wait "
                             "for a descheduled peer and one step took 0.5-24 s; 0 = torch's default)")
    parser.add_argument("--pggan-width", type=float, default=0.25, help="PGGAN channel multiplier (paper: 1)")
    parser.add_argument("--stargan-width", type=int, default=32, help="StarGAN v2 first-layer channels (cap 4x)")
    parser.add_argument("--engine", action="store_true", help="also time the engine around a step vs a bare loop")
    parser.add_argument("--engine-steps", type=int, default=300)
    parser.add_argument("--engine-batch", type=int, default=64)
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    bf16 = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported") \
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    print(f"training-step benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, native bf16: {bf16}; load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}",
          flush=True)
    start = time.perf_counter()
    for model in args.models:
        time_model(model, args.precision, args)
    if args.engine:
        engine_overhead(args.engine_steps, args.engine_batch)
    load = os.getloadavg()
    print(f"\ndone in {time.perf_counter() - start:.0f} s; load average at the end (1/5/15 min) "
          f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
