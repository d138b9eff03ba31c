"""PGGAN training step (Karras et al. 2018): progressive growing, WGAN-GP + drift, generator EMA.

The growth schedule is a pure function of the iteration (:class:`GrowthSchedule`), so resume and
torchrun need no extra state: at every step the networks are set to the ``(depth, alpha)`` the
schedule gives. Real images are brought to the current resolution the way the paper does it:
average-pooled to ``res`` and, during a fade-in, blended with their own ``res/2`` version
upsampled, so real and fake go through the same low-pass transition.

Defaults are the paper's: Adam(lr 0.001, betas (0, 0.99), eps 1e-8), one critic step per generator
step, gradient-penalty weight 10 (target norm 1), drift 0.001, EMA decay 0.999.

Two growth plans: :class:`GrowthSchedule` splits a step budget into equal shares per resolution
(the default); :class:`ImageGrowthSchedule` is the official code's (tkarras/progressive_growing_of_gans
``train.py`` ``TrainingSchedule``): phases measured in real images shown, with a minibatch per
resolution (the engine's batch-size schedule, :meth:`ImageGrowthSchedule.batch_schedule`). Options
of the official code, off by default so runs without them keep their run keys: a learning rate
per resolution (``G_lrate_dict`` / ``D_lrate_dict``) and resetting Adam when the growth state changes
(``reset_opt_for_new_lod``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from medgan import losses
from medgan.models.pggan import Generator, PGGANConfig, build_pggan, full_resolution
from medgan.train.step import StepContext, TrainingStep, ema_update, set_requires_grad

__all__ = ["GrowthSchedule", "ImageGrowthSchedule", "PGGANStep", "growth_changes", "real_at_resolution"]


@dataclass(frozen=True)
class GrowthSchedule:
    """Which resolution and fade-in ``alpha`` each iteration trains at.

    Training is split into ``max_depth + 1`` phases, one per resolution (4x4 first). Phase 0 is
    stable training at 4x4; every later phase spends ``fade_fraction`` of its steps fading the new
    block in (alpha 0 -> 1), then trains it stably. Phases get equal shares of ``total_steps``
    except the first (``first_weight`` shares) and the last (``final_weight`` shares). The official
    code's plan (train.py: 600k images at 4x4, then 600k fading + 600k stable per resolution; the
    paper's appendix says 800k) in equal steps is ``first_weight=0.5``, ``fade_fraction=0.5``,
    ``final_weight=1``; :class:`ImageGrowthSchedule` follows it in images, with a minibatch per resolution.
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


@dataclass(frozen=True)
class ImageGrowthSchedule:
    """The official growth plan, in real images shown (tkarras/progressive_growing_of_gans ``train.py``,
    ``TrainingSchedule``: ``lod_training_kimg``, ``lod_transition_kimg``, ``minibatch_dict``).

    4x4 trains stably for ``stable_images``; every later resolution fades in over ``fade_images``,
    then trains stably for ``stable_images``; the last (full) resolution trains stably until
    ``total_images`` have been shown (``total_kimg``). Each resolution has its own minibatch,
    ``batch_sizes[depth]`` (4 px first), used from its fade-in on, as the official code does; a
    stretch of n images at minibatch b takes ``ceil(n / b)`` steps. Alpha follows
    :class:`GrowthSchedule`'s convention ((k + 1) / fade steps at the k-th fade-in step).
    """

    stable_images: int
    fade_images: int
    total_images: int
    batch_sizes: tuple[int, ...]

    def __post_init__(self):
        if self.stable_images < 1 or self.fade_images < 0 or not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"ImageGrowthSchedule needs stable_images >= 1, fade_images >= 0 and batch sizes >= 1, "
                             f"got {self}")
        if self.final_stable_images < 0 or (self.max_depth > 0 and self.final_stable_images + self.fade_images < 1):
            raise ValueError(f"total_images={self.total_images} ends before the growth does "
                             f"({self.total_images - self.final_stable_images} images reach full resolution)")

    @property
    def max_depth(self) -> int:
        return len(self.batch_sizes) - 1

    @property
    def final_stable_images(self) -> int:
        """Images of stable training at full resolution (after its fade-in)."""
        if self.max_depth == 0:
            return self.total_images
        grown = self.stable_images + (self.max_depth - 1) * (self.fade_images + self.stable_images) + self.fade_images
        return self.total_images - grown

    def _phases(self) -> list[tuple[int, int]]:
        """(fade-in steps, stable steps) of each phase, 4x4 first."""
        out = []
        for d, b in enumerate(self.batch_sizes):
            stable = self.final_stable_images if d == self.max_depth else self.stable_images
            fade = 0 if d == 0 else math.ceil(self.fade_images / b)
            out.append((fade, math.ceil(stable / b)))
        return out

    @property
    def total_steps(self) -> int:
        return sum(f + s for f, s in self._phases())

    def boundaries(self) -> list[int]:
        """Start step of each phase, plus ``total_steps`` at the end (length ``max_depth + 2``)."""
        starts = [0]
        for f, s in self._phases():
            starts.append(starts[-1] + f + s)
        return starts

    def at(self, step: int) -> tuple[int, float]:
        """``(depth, alpha)`` for iteration ``step`` (0-based)."""
        b, phases = self.boundaries(), self._phases()
        depth = max(d for d in range(self.max_depth + 1) if step >= b[d] or d == 0)
        fade = phases[depth][0]
        alpha = 1.0 if fade == 0 else min(1.0, (step - b[depth] + 1) / fade)
        return depth, float(alpha)

    def batch_schedule(self) -> list[list[int]]:
        """The engine's ``batch_size=[[first_step, global batch], ...]``: each phase's minibatch from its start."""
        pairs: list[list[int]] = []
        for first, size in zip(self.boundaries(), self.batch_sizes):
            if not pairs or pairs[-1][1] != size:
                pairs.append([first, int(size)])
        return pairs

    def table(self) -> list[dict[str, Any]]:
        """One row per phase: resolution, first/last step, steps, fade-in steps, minibatch, images shown."""
        b, phases = self.boundaries(), self._phases()
        rows = []
        for d, ((fade, stable), size) in enumerate(zip(phases, self.batch_sizes)):
            rows.append({"phase": d, "resolution": 4 * 2 ** d, "first_step": b[d], "last_step": b[d + 1] - 1,
                         "steps": fade + stable, "fade_in_steps": fade, "batch_size": int(size),
                         "images": (fade + stable) * int(size)})
        return rows


def growth_changes(schedule: GrowthSchedule | ImageGrowthSchedule, step: int) -> bool:
    """Whether iteration ``step`` enters a new growth state: a fade-in starts (new layers) or ends.

    The official rule (``train.py``: reset when ``floor(lod)`` or ``ceil(lod)`` changes, with
    ``lod = max_depth - depth + (1 - alpha)``), as a pure function of the step, so a resumed run
    resets exactly where an uninterrupted one does.
    """
    if step <= 0:
        return False
    (d0, a0), (d1, a1) = schedule.at(step - 1), schedule.at(step)
    return (d0, a0 < 1.0) != (d1, a1 < 1.0)


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
    :class:`GrowthSchedule`);
    schedule: an :class:`ImageGrowthSchedule` instead (the official plan in images; ``total_steps``
    then follows from it, and the job trains with its ``batch_schedule()``);
    lr_per_resolution: Adam's learning rate for G and D at each depth (4 px first; the official
    ``G_lrate_dict`` / ``D_lrate_dict``), applied from a resolution's fade-in on; None = ``lr`` throughout;
    reset_adam_at_growth: clear both optimisers' state (moments and step counts) whenever a fade-in
    starts or ends (:func:`growth_changes`; official ``reset_opt_for_new_lod=True``). Default off.
    """

    schedule_uses_total_steps = True  # the growth plan splits total_steps into phases

    def __init__(self, config: PGGANConfig, *, total_steps: int | None = None, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.0, 0.99), eps: float = 1e-8, gp_weight: float = 10.0,
                 drift_weight: float = 1e-3, ema_decay: float = 0.999, fade_fraction: float = 0.5,
                 final_weight: float = 1.0, first_weight: float = 1.0,
                 schedule: ImageGrowthSchedule | None = None, lr_per_resolution: Sequence[float] | None = None,
                 reset_adam_at_growth: bool = False):
        nets = build_pggan(config)
        G, D = nets["G"], nets["D"]
        if schedule is not None:
            if schedule.max_depth != G.max_depth:
                raise ValueError(f"the schedule has {schedule.max_depth + 1} resolutions, the networks "
                                 f"{G.max_depth + 1} (4 -> {config.resolution} px)")
            if total_steps is not None and total_steps != schedule.total_steps:
                raise ValueError(f"total_steps={total_steps}, but the image schedule takes {schedule.total_steps}")
        elif total_steps is None:
            raise ValueError("PGGANStep needs total_steps (equal-share growth) or an ImageGrowthSchedule")
        if lr_per_resolution is not None and len(lr_per_resolution) != G.max_depth + 1:
            raise ValueError(f"lr_per_resolution needs {G.max_depth + 1} values (4 -> {config.resolution} px), "
                             f"got {list(lr_per_resolution)}")
        start_lr = float(lr_per_resolution[0]) if lr_per_resolution is not None else lr
        super().__init__(nets=nets, optimizers={
            "G": torch.optim.Adam(G.parameters(), lr=start_lr, betas=tuple(betas), eps=eps),
            "D": torch.optim.Adam(D.parameters(), lr=start_lr, betas=tuple(betas), eps=eps)})
        self.config = config
        self.z_dim = config.z_dim
        self.gp_weight, self.drift_weight, self.ema_decay = gp_weight, drift_weight, ema_decay
        self.schedule = schedule if schedule is not None else GrowthSchedule(
            total_steps, G.max_depth, fade_fraction, final_weight, first_weight)
        # None when off: the fingerprint leaves None settings out, so runs without them keep their keys.
        self.lr_per_resolution = [float(v) for v in lr_per_resolution] if lr_per_resolution is not None else None
        self.reset_adam_at_growth = True if reset_adam_at_growth else None
        self._set_growth(*self.schedule.at(0))

    @property
    def total_steps(self) -> int:
        """Iterations of the whole growth plan."""
        return self.schedule.total_steps

    def _apply_schedule(self, step: int, depth: int) -> None:
        """Adam state and learning rate for iteration ``step`` (pure functions of the step: exact on resume,
        where the optimiser state restored from the checkpoint is that before this step)."""
        if self.reset_adam_at_growth and growth_changes(self.schedule, step):
            for opt in self.optimizers.values():
                opt.state.clear()  # Adam re-creates zero moments and a zero step count on its next step
        if self.lr_per_resolution is not None:
            for opt in self.optimizers.values():
                for group in opt.param_groups:
                    group["lr"] = self.lr_per_resolution[depth]

    def _set_growth(self, depth: int, alpha: float) -> None:
        for net in self.nets.values():
            net.set_growth(depth, alpha)

    def _gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        # Interpolation weights from the engine's shared noise stream (identical on 1 or N ranks).
        a = ctx.rand(real.shape[0], 1, 1, 1).to(real.dtype)
        x_hat = torch.lerp(fake.detach(), real.detach(), a).requires_grad_(True)
        # The critic runs under autocast like the rest of the step; x_hat and its gradient stay fp32.
        with ctx.autocast():
            out = self.nets["D"](x_hat)
        (grad,) = torch.autograd.grad(out.float().sum(), x_hat, create_graph=True)
        return ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()

    def train_step(self, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, float]:
        G, D, G_ema = self.nets["G"], self.nets["D"], self.nets["G_ema"]
        depth, alpha = self.schedule.at(ctx.step)
        self._set_growth(depth, alpha)
        self._apply_schedule(ctx.step, depth)
        real = real_at_resolution(batch["image"].float(), depth, alpha)
        n = real.shape[0]

        # Critic: E[D(fake)] - E[D(real)] + lambda * GP + epsilon * E[D(real)^2].
        set_requires_grad(D, True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with torch.no_grad(), ctx.autocast():
            fake = G(ctx.randn(n, self.z_dim)).float()
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
