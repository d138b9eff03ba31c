"""DCGAN training step: BCE (non-saturating) GAN loss, Adam(2e-4, betas (0.5, 0.999)) as in the paper."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from medgan import losses
from medgan.models.dcgan import DCGANConfig, DCGANGenerator, build_dcgan, init_dcgan_weights
from medgan.train.step import StepContext, TrainingStep, set_requires_grad

__all__ = ["DCGANStep", "untrained_generator"]


class DCGANStep(TrainingStep):
    """Alternating D / G updates; nets ``G`` and ``D``.

    D sees a real and a fake batch in separate forwards (separate batch-norm statistics, as in the
    PyTorch example); G minimises -log D(G(z)) on the same fakes.
    """

    def __init__(self, config: DCGANConfig, *, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999)):
        nets = build_dcgan(config)
        super().__init__(nets=nets, optimizers={
            "G": torch.optim.Adam(nets["G"].parameters(), lr=lr, betas=tuple(betas)),
            "D": torch.optim.Adam(nets["D"].parameters(), lr=lr, betas=tuple(betas))})
        self.config = config
        self.z_dim = config.z_dim

    def train_step(self, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, float]:
        G, D = self.nets["G"], self.nets["D"]
        real = batch["image"].float()
        n = real.shape[0]
        with ctx.autocast():
            fake = G(ctx.randn(n, self.z_dim))
        set_requires_grad(D, True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with ctx.autocast():
            d_real, d_fake = D(real).float(), D(fake.detach()).float()
            loss_d = losses.d_nonsaturating(d_real, d_fake)
        ctx.backward(loss_d)
        ctx.optimizer_step(self.optimizers["D"])

        set_requires_grad(D, False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with ctx.autocast():
            loss_g = losses.g_nonsaturating(D(fake).float())
        ctx.backward(loss_g)
        ctx.optimizer_step(self.optimizers["G"])
        set_requires_grad(D, True)
        return {"loss_D": loss_d.item(), "loss_G": loss_g.item(),
                "D(x)": torch.sigmoid(d_real).mean().item(), "D(G(z))": torch.sigmoid(d_fake).mean().item()}

    def sample(self, n: int, ctx: StepContext) -> torch.Tensor:
        return self.nets["G"](ctx.fixed_randn(n, self.z_dim))

    def generator(self) -> torch.nn.Module:
        """The trained generator in eval mode (batch norm uses running statistics), z -> [-1, 1] images."""
        return self.nets["G"].eval()


def untrained_generator(config: DCGANConfig, *, seed: int = 0) -> torch.nn.Module:
    """A freshly initialised generator (the 'untrained' baseline row), eval mode."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        G = DCGANGenerator(image_size=config.image_size, channels=config.channels, z_dim=config.z_dim,
                           width=config.g_width)
        init_dcgan_weights(G)
    return G.eval()
