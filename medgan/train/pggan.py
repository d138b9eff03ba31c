"""PGGAN training step (Karras et al. 2018): progressive growing, WGAN-GP + drift, generator EMA.

The growth schedule is a pure function of the iteration (:class:`GrowthSchedule`), so resume and
torchrun need no extra state: at every step the networks are set to the ``(depth, alpha)`` the
schedule gives. Real images are brought to the current resolution the way the paper does it:
average-pooled to ``res`` and, during a fade-in, blended with their own ``res/2`` version
upsampled, so real and fake go through the same low-pass transition.

Defaults are the paper's: Adam(lr 0.001, betas (0, 0.99), eps 1e-8), one critic step per generator
step, gradient-penalty weight 10 (target norm 1), drift 0.001, EMA decay 0.999.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from medgan import losses
from medgan.models.pggan import Generator, PGGANConfig, build_pggan, full_resolution
from medgan.train.step import StepContext, TrainingStep, ema_update, set_requires_grad

__all__ = ["GrowthSchedule", "PGGANStep", "real_at_resolution"]


@dataclass(frozen=True)
class GrowthSchedule:
    """Which resolution and fade-in ``alpha`` each iteration trains at.

    Training is split into ``max_depth + 1`` phases, one per resolution (4x4 first). Phase 0 is
    stable training at 4x4; every later phase spends ``fade_fraction`` of its steps fading the new
    block in (alpha 0 -> 1), then trains it stably. Phases get equal shares of ``total_steps``
    except the first (``first_weight`` shares) and the last (``final_weight`` shares). Karras et al.
    show 600k images in 4x4, then 600k fading + 600k stable per resolution: ``first_weight=0.5``,
    ``fade_fraction=0.5``, ``final_weight=1``.
    """

    total_steps: int
    max_depth: int
    fade_fraction: float = 0.5
    final_weight: float = 1.0
    first_weight: float = 1.0

    def __post_init__(self):
        if self.total_steps < 1 or self.max_depth < 0:
            raise ValueError(f"GrowthSchedule needs total_steps >= 1 and max_depth >= 0, got {self}")
        if not 0.0 <= self.fade_fraction <= 1.0:
            raise ValueError(f"fade_fraction must be in [0, 1], got {self.fade_fraction}")
        if self.final_weight <= 0 or self.first_weight <= 0:
            raise ValueError(f"final_weight and first_weight must be > 0, got {self}")

    def boundaries(self) -> list[int]:
        """Start step of each phase, plus ``total_steps`` at the end (length ``max_depth + 2``)."""
        if self.max_depth == 0:
            return [0, self.total_steps]
        weights = [self.first_weight] + [1.0] * (self.max_depth - 1) + [self.final_weight]
        total = sum(weights)
        starts, acc = [0], 0.0
        for w in weights:
            acc += w
            starts.append(int(round(self.total_steps * acc / total)))
        starts[-1] = self.total_steps
        return starts

    def at(self, step: int) -> tuple[int, float]:
        """``(depth, alpha)`` for iteration ``step`` (0-based)."""
        b = self.boundaries()
        depth = 0
        for d in range(self.max_depth + 1):
            if step >= b[d]:
                depth = d
        if depth == 0:
            return 0, 1.0
        length = max(1, b[depth + 1] - b[depth])
        fade = self.fade_fraction * length
        alpha = 1.0 if fade <= 0 else min(1.0, (step - b[depth] + 1) / fade)
        return depth, float(alpha)

    def table(self) -> list[dict[str, Any]]:
        """One row per phase: resolution, first/last step, fade-in steps (for the notebook)."""
        b = self.boundaries()
        rows = []
        for d in range(self.max_depth + 1):
            n = b[d + 1] - b[d]
            rows.append({"phase": d, "resolution": 4 * 2 ** d, "first_step": b[d], "last_step": b[d + 1] - 1,
                         "steps": n, "fade_in_steps": 0 if d == 0 else int(round(self.fade_fraction * n))})
        return rows


def real_at_resolution(images: torch.Tensor, depth: int, alpha: float) -> torch.Tensor:
    """Real images (B, C, R, R) brought to ``4 * 2**depth`` px, low-pass blended during a fade-in."""
    res = 4 * 2 ** depth
    x = F.adaptive_avg_pool2d(images, res) if images.shape[-1] != res else images
    if depth > 0 and alpha < 1.0:
        low = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
        x = torch.lerp(low, x, alpha)
    return x


class PGGANStep(TrainingStep):
    """WGAN-GP training of a growing PGGAN pair; nets ``G``, ``D``, ``G_ema``.

    Args (keyword-only): config (architecture), total_steps (the run's length; fixes the growth
    schedule), lr, betas, eps (Adam), gp_weight (lambda, paper 10), drift_weight (epsilon, paper
    0.001), ema_decay (paper 0.999), fade_fraction / final_weight / first_weight (see
    :class:`GrowthSchedule`).
    """

    schedule_uses_total_steps = True  # the growth plan splits total_steps into phases

    def __init__(self, config: PGGANConfig, *, total_steps: int, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.0, 0.99), eps: float = 1e-8, gp_weight: float = 10.0,
                 drift_weight: float = 1e-3, ema_decay: float = 0.999, fade_fraction: float = 0.5,
                 final_weight: float = 1.0, first_weight: float = 1.0):
        nets = build_pggan(config)
        G, D = nets["G"], nets["D"]
        super().__init__(nets=nets, optimizers={
            "G": torch.optim.Adam(G.parameters(), lr=lr, betas=tuple(betas), eps=eps),
            "D": torch.optim.Adam(D.parameters(), lr=lr, betas=tuple(betas), eps=eps)})
        self.config = config
        self.z_dim = config.z_dim
        self.gp_weight, self.drift_weight, self.ema_decay = gp_weight, drift_weight, ema_decay
        self.schedule = GrowthSchedule(total_steps, G.max_depth, fade_fraction, final_weight, first_weight)
        self._set_growth(*self.schedule.at(0))

    def _set_growth(self, depth: int, alpha: float) -> None:
        for net in self.nets.values():
            net.set_growth(depth, alpha)

    def _gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        # Interpolation weights from the engine's shared noise stream (identical on 1 or N ranks).
        a = ctx.rand(real.shape[0], 1, 1, 1).to(real.dtype)
        x_hat = torch.lerp(fake.detach(), real.detach(), a).requires_grad_(True)
        out = self.nets["D"](x_hat)
        (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
        return ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()

    def train_step(self, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, float]:
        G, D, G_ema = self.nets["G"], self.nets["D"], self.nets["G_ema"]
        depth, alpha = self.schedule.at(ctx.step)
        self._set_growth(depth, alpha)
        real = real_at_resolution(batch["image"].float(), depth, alpha)
        n = real.shape[0]

        # Critic: E[D(fake)] - E[D(real)] + lambda * GP + epsilon * E[D(real)^2].
        set_requires_grad(D, True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with torch.no_grad():
            fake = G(ctx.randn(n, self.z_dim))
        with ctx.autocast():
            d_real, d_fake = D(real), D(fake)
            wdist = losses.d_wasserstein(d_real.float(), d_fake.float())
            drift = losses.drift_penalty(d_real.float())
        gp = self._gradient_penalty(real, fake, ctx)
        loss_d = wdist + self.gp_weight * gp + self.drift_weight * drift
        ctx.backward(loss_d)
        ctx.optimizer_step(self.optimizers["D"])

        # Generator, critic frozen.
        set_requires_grad(D, False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with ctx.autocast():
            loss_g = losses.g_wasserstein(D(G(ctx.randn(n, self.z_dim))).float())
        ctx.backward(loss_g)
        ctx.optimizer_step(self.optimizers["G"])
        set_requires_grad(D, True)
        ema_update(G_ema, G, self.ema_decay)
        return {"loss_D": loss_d.item(), "loss_G": loss_g.item(), "wasserstein": -wdist.item(), "gp": gp.item(),
                "resolution": float(4 * 2 ** depth), "alpha": alpha}

    def sample(self, n: int, ctx: StepContext) -> torch.Tensor:
        """EMA generator at the current growth state, upsampled (nearest) to full size for the grid."""
        G = self.nets["G_ema"]
        images = G.generate(ctx.fixed_randn(n, self.z_dim))
        return F.interpolate(images, size=G.resolution, mode="nearest")

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        # Growth buffers come back with the weights; nothing else to restore.
        return None

    def generator(self, *, ema: bool = True) -> torch.nn.Module:
        """The final full-resolution generator, z (B, z_dim) -> images in [-1, 1] (EMA copy by default)."""
        return full_resolution(self.nets["G_ema" if ema else "G"])


def generator_fn(step: PGGANStep, *, ema: bool = True) -> Callable[[torch.Tensor], torch.Tensor]:
    """``z -> images`` in [-1, 1] at full resolution, for evaluation code that wants a plain callable."""
    return step.generator(ema=ema)


def untrained_generator(config: PGGANConfig, *, seed: int = 0) -> torch.nn.Module:
    """A freshly initialised full-resolution generator (the 'untrained' baseline row)."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
        G = Generator(resolution=config.resolution, channels=config.channels, z_dim=config.z_dim,
                      fmap_base=config.fmap_base, fmap_max=config.fmap_max, width=config.width)
    return full_resolution(G)
