"""GAN losses and regularisers — pure functions of logits, images and networks.

Each returns a scalar tensor averaged over the batch, so a step reads like the paper's
objective: ``loss_D = d_nonsaturating(real_logits, fake_logits) + gamma / 2 * r1_penalty(...)``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


# --- adversarial terms -------------------------------------------------------------------
def d_nonsaturating(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator BCE (Goodfellow et al. 2014): -log D(x) - log(1 - D(G(z)))."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator non-saturating loss: -log D(G(z))."""
    return F.softplus(-fake_logits).mean()


def d_lsgan(real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN discriminator loss (Mao et al. 2017), targets 1 real / 0 fake, halved as in CycleGAN."""
    return 0.5 * (F.mse_loss(real_out, torch.ones_like(real_out)) + F.mse_loss(fake_out, torch.zeros_like(fake_out)))


def g_lsgan(fake_out: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(fake_out, torch.ones_like(fake_out))


def d_wasserstein(real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
    """WGAN critic loss E[D(G(z))] - E[D(x)] (Arjovsky et al. 2017)."""
    return fake_out.mean() - real_out.mean()


def g_wasserstein(fake_out: torch.Tensor) -> torch.Tensor:
    return -fake_out.mean()


# --- regularisers ------------------------------------------------------------------------
def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     *, target: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(||grad D(x_hat)||_2 - target)^2] on random interpolates."""
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), generator=generator).to(real)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = critic(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - target) ** 2).mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): E[||grad_x D(x)||^2] on real images; ``real`` must require grad.

    Multiply by gamma/2 in the step (StarGAN v2 uses gamma = 1).
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def drift_penalty(real_out: torch.Tensor) -> torch.Tensor:
    """PGGAN's drift term E[D(x)^2] keeping critic outputs near zero (weight 0.001 in the paper)."""
    return real_out.pow(2).mean()


# --- reconstruction terms ----------------------------------------------------------------
def cycle_l1(reconstructed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Cycle-consistency ||F(G(x)) - x||_1 (Zhu et al. 2017); weight lambda = 10 there."""
    return F.l1_loss(reconstructed, original)


def identity_l1(mapped: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Identity term ||G(y) - y||_1 for y already in G's target domain."""
    return F.l1_loss(mapped, original)


def paired_l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pix2pix reconstruction ||G(x) - y||_1 (Isola et al. 2017); weight lambda = 100 there."""
    return F.l1_loss(prediction, target)
