"""The contract between the engine and a model: a :class:`TrainingStep`.

A model family supplies one subclass that owns its networks and optimizers and runs one
iteration in :meth:`TrainingStep.train_step`; the engine does everything else (device, data
order, seeding, precision, distributed gradient averaging, logging, samples, checkpoints,
resume).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from medgan.train import distributed
from medgan.train.fingerprint import step_config


@dataclass
class StepContext:
    """What a step may ask the engine for during one iteration."""

    device: torch.device
    step: int  # 0-based index of the iteration being run
    total_steps: int
    precision: str = "fp32"  # "fp32" | "bf16" (CPU or GPU) | "fp16" (GPU; fp32 on a CPU)
    seed: int = 0
    dist: distributed.DistInfo = field(default_factory=distributed.DistInfo)
    scaler: torch.amp.GradScaler | None = None
    noise_generator: torch.Generator | None = None  # same seed and state on every rank

    @property
    def progress(self) -> float:
        """Fraction of training done before this iteration, in [0, 1)."""
        return self.step / max(1, self.total_steps)

    def randn(self, *shape: int) -> torch.Tensor:
        """Standard normal noise of ``shape`` (first dim = this rank's batch) on ``device``.

        Noise for the whole global batch is drawn from a generator shared by all ranks and each
        rank keeps the rows of its images' places, so N processes pair each image with exactly
        the noise one process would.
        """
        return self._global_draw(torch.randn, shape)

    def rand(self, *shape: int) -> torch.Tensor:
        """Uniform [0, 1) noise, drawn like :meth:`randn`."""
        return self._global_draw(torch.rand, shape)

    def _global_draw(self, fn, shape) -> torch.Tensor:
        world, rank = self.dist.world_size, self.dist.rank
        full = fn((shape[0] * world, *shape[1:]), generator=self.noise_generator)
        # Rank r holds the global batch's places r, r + N, ... (DistributedSampler's deal), so its
        # noise rows are the ones one process would pair with the same images.
        return full[rank::world].to(self.device)

    def fixed_randn(self, *shape: int, seed: int = 1234) -> torch.Tensor:
        """The same noise every call (for sample grids that track one set of latents)."""
        g = torch.Generator().manual_seed(self.seed * 1000 + seed)
        return torch.randn(shape, generator=g).to(self.device)

    def autocast(self):
        """Mixed-precision context for forward passes: bfloat16 autocast for ``bf16`` on any device
        (CPUs with AVX-512 BF16 / AMX run it natively), float16 for ``fp16`` on a GPU; a no-op in fp32
        and for fp16 on a CPU."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        if self.device.type == "cpu" and dtype is torch.float16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, scaled when training in fp16."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Average gradients across ranks, then step (through the fp16 scaler when there is one).

        Always call this instead of ``optimizer.step()``: it is where multi-GPU training syncs.
        """
        distributed.average_gradients(optimizer)
        if self.scaler is not None:
            self.scaler.step(optimizer)
        else:
            optimizer.step()


class TrainingStep:
    """Base class for a model's training step.

    Subclasses set ``self.nets`` (every network, EMA copies included), ``self.optimizers`` and
    optionally ``self.schedulers``, and implement :meth:`train_step`. Everything in them is
    saved in checkpoints and restored on resume.
    """

    nets: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]
    # True when a schedule reads ``ctx.progress`` (a decay, a growth plan): a run of N steps is then
    # not the first N steps of a longer run, so the engine keys the run folder by the total too.
    schedule_uses_total_steps: bool = False

    def __init__(self, nets: Mapping[str, nn.Module], optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
                 schedulers: Mapping[str, Any] | None = None):
        self.nets = dict(nets)
        self.optimizers = dict(optimizers or {})
        self.schedulers = dict(schedulers or {})

    def train_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        """Run one iteration on ``batch`` (tensors already on ``ctx.device``); return scalars to log."""
        raise NotImplementedError

    def sample(self, n: int, ctx: StepContext) -> torch.Tensor | None:
        """Images in [-1, 1], shape (n, C, H, W), for the periodic sample grid (optional)."""
        return None

    def initial_config(self) -> dict[str, Any]:
        """This step's configuration as built (networks, initial weights, optimisers, settings).

        Computed on the first call and kept, so a step that has since trained (a re-run notebook
        cell) still names the run it started as. See :mod:`medgan.train.fingerprint`.
        """
        if "_initial_config" not in self.__dict__:
            self._initial_config = step_config(self)
        return self._initial_config

    def extra_state(self) -> dict[str, Any]:
        """Anything else to checkpoint (tensors, numbers, strings, containers only)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        pass

    def to(self, device: torch.device) -> "TrainingStep":
        for net in self.nets.values():
            net.to(device)
        # Optimizer state created before the move (resume loads it later) must follow too.
        for opt in self.optimizers.values():
            for state in opt.state.values():
                for key, value in state.items():
                    if torch.is_tensor(value) and key != "step":
                        state[key] = value.to(device)
        return self

    def train(self, mode: bool = True) -> None:
        for net in self.nets.values():
            net.train(mode)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * model`` for parameters; buffers are copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p.detach(), 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    """Freeze or unfreeze a network (frozen D during the G update saves its backward)."""
    for p in module.parameters():
        p.requires_grad_(flag)


def max_weight_difference(a: TrainingStep, b: TrainingStep) -> float:
    """Largest absolute difference between the two steps' network weights (0.0 = bit-identical)."""
    worst = 0.0
    for name, net in a.nets.items():
        other = b.nets[name].state_dict()
        for key, value in net.state_dict().items():
            if value.is_floating_point():
                worst = max(worst, (value.detach().cpu() - other[key].detach().cpu()).abs().max().item())
            elif not torch.equal(value.cpu(), other[key].cpu()):
                worst = float("inf")
    return worst
