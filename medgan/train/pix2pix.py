"""Pix2pix (Isola et al. 2017): a conditional GAN for paired image-to-image translation.

The generator maps input x to G(x); the PatchGAN discriminator sees the pair (x, y) or (x, G(x))
stacked on the channel axis. Objective: BCE adversarial term + lambda * ||G(x) - y||_1 with
lambda = 100; dropout in the U-Net decoder is the generator's only noise. The learning rate is
constant for the first half and decays linearly to zero, as in the reference code.

At test time the reference keeps the generator in train mode (batch statistics, dropout on) unless
``--eval`` is given; ``medgan.train.cyclegan.translate(..., mode="train" | "eval")`` runs either.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from medgan import losses
from medgan.train.cyclegan import apply_linear_decay, linear_decay_factor
from medgan.train.step import StepContext, TrainingStep, set_requires_grad


class Pix2PixStep(TrainingStep):
    """Nets ``G`` (in_channels -> out_channels) and ``D`` (conditional, in + out channels).

    Batches carry ``image`` (input x) and ``target`` (y), both (B, C, H, W) in [-1, 1].
    """

    def __init__(self, G: nn.Module, D: nn.Module, *, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999),
                 lambda_l1: float = 100.0, decay_start: float = 0.5, sample_inputs: torch.Tensor | None = None):
        betas = tuple(float(b) for b in betas)
        super().__init__(nets={"G": G, "D": D}, optimizers={
            "G": torch.optim.Adam(G.parameters(), lr=lr, betas=betas),
            "D": torch.optim.Adam(D.parameters(), lr=lr, betas=betas)})
        self.lr, self.lambda_l1, self.decay_start = float(lr), float(lambda_l1), float(decay_start)
        linear_decay_factor(0.0, decay_start=self.decay_start)  # validates decay_start
        self.sample_inputs = sample_inputs

    @property
    def schedule_uses_total_steps(self) -> bool:
        return self.decay_start < 1.0  # the decay reads ctx.progress

    def _set_lr(self, progress: float) -> float:
        return apply_linear_decay(self.optimizers, self.lr, progress, decay_start=self.decay_start)

    def train_step(self, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, float]:
        G, D = self.nets["G"], self.nets["D"]
        x, y = batch["image"].float(), batch["target"].float()
        lr = self._set_lr(ctx.progress)
        with ctx.autocast():
            fake = G(x)

        set_requires_grad(D, True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with ctx.autocast():
            d_real = D(torch.cat([x, y], 1)).float()
            d_fake = D(torch.cat([x, fake.detach()], 1)).float()
            # Halved, as in the reference: D then learns at half the rate of G.
            loss_d = 0.5 * losses.d_nonsaturating(d_real, d_fake)
        ctx.backward(loss_d)
        ctx.optimizer_step(self.optimizers["D"])

        set_requires_grad(D, False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with ctx.autocast():
            adv = losses.g_nonsaturating(D(torch.cat([x, fake], 1)).float())
            l1 = losses.paired_l1(fake.float(), y)
            loss_g = adv + self.lambda_l1 * l1
        ctx.backward(loss_g)
        ctx.optimizer_step(self.optimizers["G"])
        set_requires_grad(D, True)
        return {"loss_D": loss_d.item(), "adv_G": adv.item(), "l1": l1.item(), "lr": lr}

    def sample(self, n: int, ctx: StepContext) -> torch.Tensor | None:
        if self.sample_inputs is None:
            return None
        x = self.sample_inputs[:n].to(ctx.device)
        return torch.cat([x, self.nets["G"](x)], 0)  # inputs on top, translations below
