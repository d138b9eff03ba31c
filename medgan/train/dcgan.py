"""DCGAN training step: BCE (non-saturating) GAN loss, Adam(2e-4, betas (0.5, 0.999)) as in the paper.

Sampling has two inference modes (:data:`INFERENCE_MODES`): ``"eval"`` normalises with batch norm's
running statistics, so each image depends on its latent alone; ``"train"`` normalises each forward
batch with its own statistics, as the PyTorch DCGAN example samples (pytorch/examples
``dcgan/main.py`` and the pytorch.org DCGAN tutorial never call ``netG.eval()``: ``netG(fixed_noise)``
runs on a batch of 64 latents in train mode). In train mode an image depends on the latents it
shares its batch with, so :class:`BatchStatisticsGenerator` fixes that batch size.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from medgan import losses
from medgan.models.dcgan import DCGANConfig, DCGANGenerator, build_dcgan, init_dcgan_weights
from medgan.train.step import StepContext, TrainingStep, set_requires_grad

__all__ = ["BatchStatisticsGenerator", "DCGANStep", "INFERENCE_MODES", "sampling_generator", "untrained_generator"]

INFERENCE_MODES = ("eval", "train")


class BatchStatisticsGenerator(torch.nn.Module):
    """A generator sampled in train mode: every batch norm layer normalises with the statistics of
    the batch it is given, and its running statistics are left untouched (scoring never changes the model).

    ``statistics_batch_size`` is the number of latents that share statistics; the scoring code
    (:mod:`medgan.analysis.generative_scores`) generates in batches of exactly that size, so image
    ``i`` of a seed is the same whichever images are asked for and whatever the evaluation batch.
    """

    def __init__(self, generator: torch.nn.Module, *, statistics_batch_size: int):
        super().__init__()
        if statistics_batch_size < 2:
            raise ValueError(f"batch statistics need >= 2 images per batch, got {statistics_batch_size}")
        self.generator = generator
        self.statistics_batch_size = int(statistics_batch_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        norms = [m for m in self.generator.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        was_training, tracked = self.generator.training, [m.track_running_stats for m in norms]
        self.generator.train()
        for m in norms:  # train mode without tracking: batch statistics, running buffers not updated
            m.track_running_stats = False
        try:
            return self.generator(z)
        finally:
            for m, t in zip(norms, tracked):
                m.track_running_stats = t
            self.generator.train(was_training)


def sampling_generator(G: torch.nn.Module, *, mode: str = "eval", statistics_batch_size: int = 64) -> torch.nn.Module:
    """``G`` as scoring samples it: in ``eval()`` mode, or wrapped to sample with batch statistics (``"train"``)."""
    if mode not in INFERENCE_MODES:
        raise ValueError(f"inference_mode must be one of {INFERENCE_MODES}, not {mode!r}")
    if mode == "eval":
        return G.eval()
    return BatchStatisticsGenerator(G, statistics_batch_size=statistics_batch_size)


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

    def generator(self, *, mode: str = "eval", statistics_batch_size: int = 64) -> torch.nn.Module:
        """The trained generator, z -> [-1, 1] images, in inference ``mode`` (see :func:`sampling_generator`)."""
        return sampling_generator(self.nets["G"], mode=mode, statistics_batch_size=statistics_batch_size)


def untrained_generator(config: DCGANConfig, *, seed: int = 0, mode: str = "eval",
                        statistics_batch_size: int = 64) -> torch.nn.Module:
    """A freshly initialised generator (the 'untrained' baseline row), in inference ``mode``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        G = DCGANGenerator(image_size=config.image_size, channels=config.channels, z_dim=config.z_dim,
                           width=config.g_width)
        init_dcgan_weights(G)
    return sampling_generator(G, mode=mode, statistics_batch_size=statistics_batch_size)
