"""torch.distributed plumbing for the engine: process group, ranks, gradient averaging.

Under ``torchrun --nproc_per_node=N`` every process runs the same training loop. The engine
averages each optimizer's gradients across ranks right before ``optimizer.step`` (an
all-reduce, the arithmetic DistributedDataParallel performs) instead of wrapping modules in
``DistributedDataParallel``. GAN steps alternate updates, run the discriminator with frozen
parameters inside the generator update and take double-backward gradient penalties (R1,
WGAN-GP) — patterns DDP's bucketed reducer rejects or mis-times. Averaging at the optimizer
keeps every model step plain PyTorch and identical on 1 or N processes; StyleGAN2-ADA's
training loop takes the same route.
"""

from __future__ import annotations

import atexit
import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init(backend: str | None = None) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op for one process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    if not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        # However the script ends (an exception, sys.exit, no cleanup() call), a gloo group goes
        # before the interpreter does (see cleanup()). Not NCCL: tearing it down while a peer
        # still waits in a collective can hang a failing job instead of ending it.
        if dist.get_backend() == "gloo":
            atexit.register(_destroy)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(),
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def info() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def cleanup() -> None:
    """Leave the process group: wait for every rank, then tear it down (call once at the end).

    The barrier keeps a rank from tearing down its connections while a peer still works in the
    group. Tearing down before the interpreter exits matters: gloo's worker threads release their
    last tensors, and a thread that needs the GIL while Python is finalizing is ended with
    ``pthread_exit``, which aborts the process ("terminate called without an active exception",
    SIGABRT) when it unwinds through C++. ``init`` registers the same teardown, without the
    barrier, for a script that exits without calling this.
    """
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
    _destroy()


def _destroy() -> None:
    """Destroy the process group now, and its gloo/NCCL threads with it (no collective)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    gc.collect()  # a group kept alive by a reference cycle would otherwise die at interpreter exit


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (DDP does this at construction)."""
    if not info().enabled:
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=src)


def broadcast_object(value, src: int = 0):
    """Rank ``src``'s copy of a picklable value, on every rank (the value itself on one process)."""
    if not info().enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def average_gradients(optimizer: torch.optim.Optimizer) -> None:
    """All-reduce and average the gradients of every parameter ``optimizer`` updates.

    Every rank runs the same step code, so the same parameters carry a gradient on every rank;
    those without one are left alone (Adam then skips them, as it would on one process).
    """
    world = info().world_size
    if world <= 1:
        return
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not params:
        return
    grads = [p.grad for p in params]
    # One flat buffer per optimizer: a single collective instead of one per tensor.
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def barrier() -> None:
    if info().enabled:
        dist.barrier()
