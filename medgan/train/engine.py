"""The one training loop every model in medgan runs through.

A model supplies a :class:`~medgan.train.step.TrainingStep`; :func:`train` does the rest:
device choice, seeding, data order (a ``DistributedSampler`` over the global batch),
precision, gradient averaging across ranks, progress bars, a JSONL log the notebooks plot,
sample grids, atomic checkpoints and bit-exact resume.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision.utils import save_image
from tqdm.auto import tqdm

from medgan import atomic
from medgan.train import distributed
from medgan.train.checkpoint import CheckpointError, CheckpointIO, capture_rng, restore_rng
from medgan.train.fingerprint import digest, run_fingerprint
from medgan.train.step import StepContext, TrainingStep

log = logging.getLogger(__name__)

LOG_FILE = "log.jsonl"


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; with ``deterministic`` also force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def select_device(device: str = "auto", dist_info: distributed.DistInfo | None = None) -> torch.device:
    """``"auto"`` picks this rank's CUDA device, else Apple MPS, else the CPU."""
    dist_info = dist_info or distributed.info()
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        torch.cuda.set_device(dist_info.local_rank)
        return torch.device("cuda", dist_info.local_rank)
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class TrainResult:
    run_dir: Path
    step: int  # iterations completed
    trained_steps: int  # iterations run by this call (0 when a finished run was reloaded)
    wall_time_s: float
    history: pd.DataFrame

    @property
    def steps_per_s(self) -> float:
        return self.trained_steps / self.wall_time_s if self.wall_time_s > 0 else float("nan")


def read_log(run_dir: str | Path) -> pd.DataFrame:
    """The training log of a run folder as a DataFrame (one row per logged step)."""
    path = Path(run_dir) / LOG_FILE
    if not path.exists():
        return pd.DataFrame(columns=["step"])
    rows = [row for _, row in _log_entries(path)]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["step"])


def _log_entries(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """The lines of a JSONL training log with their rows. A torn last line (the process died mid-write, or a
    reader caught the writer mid-line) is dropped with a warning; any other bad line is an error
    naming the file and the line."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    rows = []
    for i, (n, line) in enumerate(numbered):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError("not an object with an integer 'step'")
        except ValueError as exc:
            if i == len(numbered) - 1:
                log.warning("%s: line %d is cut short (%s); dropped", path, n, exc)
                break
            raise atomic.CorruptFileError(f"{path}: line {n}: not a log row ({exc})") from exc
        rows.append((line, row))
    return rows


class _BatchList(torch.utils.data.Sampler):
    """Fixed list of index batches (lets resume start mid-epoch without touching skipped data)."""

    def __init__(self, batches: list[list[int]]):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class WeightedEpochs:
    """Indices drawn with replacement in proportion to ``weights``, ``len(weights)`` per epoch, from
    a generator seeded like ``DistributedSampler`` (seed + epoch) and dealt out to ranks the same
    way (rank r takes places r, r + N, ...), so N processes see the draws of one."""

    def __init__(self, weights, *, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        if self.weights.ndim != 1 or not len(self.weights) or bool((self.weights < 0).any()) \
                or not float(self.weights.sum()) > 0:
            raise ValueError("sample_weights must be a non-empty 1-D array of non-negative weights, not all zero")
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        n = len(self.weights)
        drawn = torch.multinomial(self.weights, n, replacement=True, generator=g)
        total = n - n % self.num_replicas
        return iter(drawn[:total][self.rank::self.num_replicas].tolist())

    def __len__(self) -> int:
        return len(self.weights) // self.num_replicas


class BatchSchedule:
    """The global batch size of each iteration: one size, or ``[[first_step, size], ...]``."""

    def __init__(self, spec: int | Sequence[Sequence[int]], world_size: int = 1):
        if isinstance(spec, (int, np.integer)):
            pairs = [(0, int(spec))]
        else:
            pairs = sorted((int(first), int(size)) for first, size in spec)
        if not pairs or pairs[0][0] != 0 or len({p[0] for p in pairs}) != len(pairs):
            raise ValueError(f"batch schedule {spec!r} must start at step 0 and name each step once")
        for _, size in pairs:
            if size < 1 or size % world_size:
                raise ValueError(f"batch_size={size} is not a positive multiple of the {world_size} processes")
        self.pairs, self.world_size = pairs, world_size

    @property
    def constant(self) -> bool:
        return len({size for _, size in self.pairs}) == 1

    @property
    def max_batch(self) -> int:
        return max(size for _, size in self.pairs)

    def identity(self) -> int | list[list[int]]:
        return self.pairs[0][1] if self.constant else [list(p) for p in self.pairs]

    def per_rank_at(self, step: int) -> int:
        return [size for first, size in self.pairs if first <= step][-1] // self.world_size

    def consumed(self, step: int) -> int:
        """Items each rank has read before iteration ``step``."""
        ends = [first for first, _ in self.pairs[1:]] + [max(step, self.pairs[-1][0])]
        return sum(max(0, min(step, end) - first) * (size // self.world_size)
                   for (first, size), end in zip(self.pairs, ends))


class _StreamBatches(torch.utils.data.Sampler):
    """Batches of scheduled sizes for iterations ``start..total-1``, read on through the epochs'
    index orders (a batch may span two epochs), so any iteration's batch follows from its number."""

    def __init__(self, sampler, schedule: BatchSchedule, start: int, total: int):
        self.sampler, self.schedule, self.start, self.total = sampler, schedule, start, total

    def __len__(self) -> int:
        return self.total - self.start

    def __iter__(self):
        per_epoch = len(self.sampler)
        epoch, offset = divmod(self.schedule.consumed(self.start), per_epoch)
        self.sampler.set_epoch(epoch)
        order = list(self.sampler)
        for k in range(self.start, self.total):
            want, batch = self.schedule.per_rank_at(k), []
            while len(batch) < want:
                take = order[offset:offset + want - len(batch)]
                batch += take
                offset += len(take)
                if offset == per_epoch:
                    epoch, offset = epoch + 1, 0
                    self.sampler.set_epoch(epoch)
                    order = list(self.sampler)
            yield batch


def _epoch_batches(sampler, epoch: int, per_rank_batch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    indices = list(sampler)
    n = len(indices) // per_rank_batch
    return [indices[i * per_rank_batch:(i + 1) * per_rank_batch] for i in range(n)]


MEMORY_FORMATS = ("auto", "contiguous", "channels_last")


def resolve_memory_format(memory_format: str, device: torch.device, precision: str) -> str:
    """``auto``: ``channels_last`` on CUDA under bf16/fp16 autocast, where tensor-core convolutions
    read NHWC without transposing; ``contiguous`` otherwise (on this project's CPU it made the
    reference CycleGAN step 0.93x as fast, issue 18)."""
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, not {memory_format!r}")
    if memory_format != "auto":
        return memory_format
    return "channels_last" if device.type == "cuda" and precision != "fp32" else "contiguous"


def _to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    if torch.is_tensor(batch):
        if channels_last and batch.dim() == 4 and batch.is_floating_point():
            return batch.to(device, non_blocking=True, memory_format=torch.channels_last)
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and torch.is_tensor(batch[0]):
        return type(batch)(_to_device(v, device, channels_last) for v in batch)
    return batch


def _save_grid(images: torch.Tensor, path: Path, nrow: int) -> None:
    images = images.detach().float().cpu()
    if images.shape[1] not in (1, 3):
        images = images[:, :3] if images.shape[1] > 3 else images[:, :1]
    with atomic.atomic_path(path) as tmp:
        save_image((images.clamp(-1, 1) + 1) / 2, tmp, nrow=nrow, format="png")


def _set_aside(run_dir: Path, reason: str) -> None:
    """Move an earlier run's checkpoints and log out of the way (never delete them)."""
    stale = [p for p in (run_dir / "checkpoints", run_dir / LOG_FILE, run_dir / "samples") if p.exists()]
    if not stale:
        return
    dest = run_dir / f"superseded-{time.strftime('%Y%m%d-%H%M%S')}"
    dest.mkdir(parents=True, exist_ok=True)
    for p in stale:
        shutil.move(str(p), dest / p.name)
    log.warning("%s: %s; earlier checkpoints moved to %s", run_dir, reason, dest)


def train(step: TrainingStep, dataset: Dataset, *, run_dir: str | Path, total_steps: int,
          batch_size: int | Sequence[Sequence[int]],
          seed: int = 0, deterministic: bool = False, device: str = "auto", precision: str = "fp32",
          log_every: int = 10, sample_every: int = 0, sample_count: int = 16,
          checkpoint_every: int = 0, keep_checkpoints: int = 2, resume: bool = True,
          fingerprint: Mapping[str, Any] | None = None, num_workers: int = 0,
          collate_fn=None, progress: bool = True, desc: str = "train",
          require_finished: bool = False, augment=None, sample_weights=None, memory_format: str = "auto",
          cudnn_benchmark: bool | None = None) -> TrainResult:
    """Train ``step`` on ``dataset`` for ``total_steps`` iterations; resumable and multi-process ready.

    Args:
        step: the model's training step (owns networks, optimizers, schedulers).
        dataset: items are dicts of tensors (see ``medgan.data``); batches arrive on the device.
        run_dir: the job's folder. The run itself lands in ``<run_dir>/<key>``, keyed by the
            fingerprint (:mod:`medgan.train.fingerprint`), with ``log.jsonl``, ``samples/``,
            ``checkpoints/`` and ``fingerprint.json``; ``TrainResult.run_dir`` names it. So two
            settings keep two models, and switching back reuses the first.
        total_steps: iterations in the whole run (not in this call).
        batch_size: global batch; under torchrun each of N ranks gets ``batch_size // N``. Or a
            schedule ``[[first_step, batch], ...]`` (PGGAN's per-resolution minibatch): the data
            order is then one stream of epochs that batches of any size read on from.
        seed: seeds data order, noise and the RNGs; resume restores their exact state.
        deterministic: force deterministic kernels (slower on GPU).
        device: ``"auto"`` (cuda > mps > cpu), or an explicit torch device string.
        precision: ``"fp32"``, ``"bf16"`` (autocast to bfloat16, on the CPU or a GPU; weights and
            optimiser state stay float32) or ``"fp16"`` (autocast, with grad scaling on CUDA; fp32 on a CPU).
        log_every: iterations between log lines (scalars averaged over the interval).
        sample_every: iterations between sample grids (0 = only at the end).
        sample_count: images per sample grid.
        checkpoint_every: iterations between checkpoints (0 = only at the end).
        keep_checkpoints: newest checkpoints kept on disk.
        resume: reuse the run's checkpoints. A checkpoint at exactly ``total_steps`` is loaded and
            nothing trains; a shorter finished run is continued (its schedule does not depend on
            the total, or the total would be in the key); a folder holding only longer runs is
            never shortened: this length trains in ``<key>-<total>steps``.
        fingerprint: anything a job adds to what the engine already fingerprints (seed, batch
            size, precision, the step's configuration, the dataset's identity).
        num_workers: DataLoader worker processes.
        collate_fn: DataLoader collate function (default: torch's).
        progress: show a tqdm.auto progress bar (rank 0 only).
        desc: label of the progress bar.
        require_finished: load the finished run of this configuration, or raise
            :class:`RunNotTrainedError` (never train): what an export needs.
        augment: a :class:`medgan.data.augment.Augment` (or None) applied to every batch on the
            device, drawn from (seed, step) and each image's place in the global batch.
        sample_weights: per-item sampling weights (None = a uniform shuffle without replacement).
            Each epoch then draws ``len(dataset)`` items with replacement in proportion to them,
            as ``WeightedRandomSampler`` does (StarGAN v2's balanced domains).
        memory_format: ``"channels_last"`` puts the networks' 4-D weights and every 4-D image batch
            in NHWC order, ``"contiguous"`` keeps NCHW, ``"auto"`` chooses (:func:`resolve_memory_format`:
            channels-last on CUDA with bf16/fp16). A channels-last run has its own run folder.
        cudnn_benchmark: let cuDNN time its convolution algorithms for each new shape and keep the
            fastest (CUDA only). ``None``: on unless ``deterministic``, since the chosen algorithm may
            differ from run to run.
    """
    dist_info = distributed.init()
    schedule = BatchSchedule(batch_size, dist_info.world_size)
    per_rank_batch = schedule.per_rank_at(0)
    if len(dataset) < schedule.max_batch:
        raise ValueError(f"dataset has {len(dataset)} items, fewer than one batch of {schedule.max_batch}")
    dev = select_device(device, dist_info)
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be fp32, bf16 or fp16, not {precision!r}")
    channels_last = resolve_memory_format(memory_format, dev, precision) == "channels_last"
    if cudnn_benchmark is None:
        cudnn_benchmark = dev.type == "cuda" and not deterministic
    # Rank 0's view names the run: the other ranks' initial weights are replaced by its own anyway.
    identity = distributed.broadcast_object(run_fingerprint(step, dataset, seed=seed, batch_size=schedule.identity(),
                                                            precision=precision, total_steps=total_steps,
                                                            extra=fingerprint, augment=augment,
                                                            sample_weights=sample_weights,
                                                            memory_format="channels_last" if channels_last else None))
    fingerprint_json = json.dumps(identity, sort_keys=True, default=str)
    run_dir = choose_run_dir(run_dir, identity, total_steps)
    benchmark_before = torch.backends.cudnn.benchmark
    with RunLock(run_dir, enabled=dist_info.is_main):
        try:
            torch.backends.cudnn.benchmark = bool(cudnn_benchmark and dev.type == "cuda" and not deterministic)
            return _train(step, dataset, run_dir=run_dir, identity=identity, fingerprint_json=fingerprint_json,
                          dist_info=dist_info, dev=dev, per_rank_batch=per_rank_batch, schedule=schedule,
                          total_steps=total_steps,
                          seed=seed, deterministic=deterministic, precision=precision, log_every=log_every,
                          sample_every=sample_every, sample_count=sample_count, checkpoint_every=checkpoint_every,
                          keep_checkpoints=keep_checkpoints, resume=resume, num_workers=num_workers,
                          collate_fn=collate_fn, progress=progress, desc=desc, require_finished=require_finished,
                          augment=augment, sample_weights=sample_weights, channels_last=channels_last)
        finally:
            torch.backends.cudnn.benchmark = benchmark_before


def run_key(identity: Mapping[str, Any]) -> str:
    """The run folder name for a fingerprint: 12 hex digits of its hash."""
    return digest(identity)[:12]


def choose_run_dir(job_dir: str | Path, identity: Mapping[str, Any], total_steps: int) -> Path:
    """``<job_dir>/<key>`` unless it only holds runs longer than ``total_steps`` without a checkpoint
    at exactly that step; then ``<job_dir>/<key>-<total>steps``, so a shorter request never gets
    a longer-trained model and never disturbs the longer run."""
    main = Path(job_dir) / run_key(identity)
    steps = CheckpointIO(main).steps()
    if not steps or total_steps in steps or steps[0] < total_steps:
        return main
    return Path(job_dir) / f"{run_key(identity)}-{total_steps}steps"


class RunLock:
    """An exclusive lock on a run folder for as long as a process trains in it.

    A second process (a notebook kernel while ``make reproduce`` trains the same job) gets a
    clear error instead of interleaving checkpoints and logs. The OS drops the lock when the
    holder dies, so a crash never leaves a folder locked.
    """

    def __init__(self, run_dir: Path, *, enabled: bool = True):
        self.path = Path(run_dir) / ".lock"
        self.enabled = enabled
        self._file = None

    def __enter__(self) -> "RunLock":
        if not self.enabled:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "unknown"
            self._file.close()
            self._file = None
            raise RunFolderBusyError(f"{self.path.parent}: another process (pid {holder}) is training this run; "
                                     "wait for it to finish, then run again to reuse its model") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


class RunFolderBusyError(RuntimeError):
    """The run folder is being trained in by another process."""


class RunNotTrainedError(RuntimeError):
    """``require_finished=True`` and the configuration's run has not reached its last step."""


def _train(step: TrainingStep, dataset: Dataset, *, run_dir: Path, identity: Mapping[str, Any],
           fingerprint_json: str, dist_info, dev, per_rank_batch: int, schedule: "BatchSchedule",
           total_steps: int, seed: int,
           deterministic: bool, precision: str, log_every: int, sample_every: int, sample_count: int,
           checkpoint_every: int, keep_checkpoints: int, resume: bool, num_workers: int, collate_fn,
           progress: bool, desc: str, require_finished: bool = False, augment=None,
           sample_weights=None, channels_last: bool = False) -> TrainResult:
    step.to(dev)
    if channels_last:  # before any optimizer state exists: Adam's moments then take the weights' layout
        for net in step.nets.values():
            net.to(memory_format=torch.channels_last)
    noise_generator = torch.Generator().manual_seed(seed)
    scaler = torch.amp.GradScaler(dev.type) if precision == "fp16" and dev.type == "cuda" else None
    checkpoints = CheckpointIO(run_dir, keep=keep_checkpoints)
    if dist_info.is_main:
        atomic.write_text(run_dir / "fingerprint.json", json.dumps(identity, indent=1, sort_keys=True, default=str))

    start = 0
    # A checkpoint at exactly total_steps (an earlier run of this length) is the answer; otherwise the
    # newest one before it is continued (the folder never holds a later one, see choose_run_dir).
    state = checkpoints.load_latest(max_step=total_steps) if resume else None
    if require_finished and (state is None or int(state["step"]) != total_steps
                             or state.get("fingerprint", "{}") != fingerprint_json):
        raise RunNotTrainedError(f"{run_dir}: this configuration has no finished run of {total_steps} steps; "
                                 f"train it first (its notebook, or `medgan train`)")
    if state is not None and state.get("fingerprint", "{}") != fingerprint_json:
        if dist_info.is_main:
            _set_aside(run_dir, "checkpoint fingerprint differs from this configuration")
        distributed.barrier()
        state = None
    if state is not None:
        _load_state(step, state, scaler)
        start = int(state["step"])
        restore_rng(state["rng"], noise_generator)
        if dist_info.is_main and start < total_steps:
            _truncate_log(run_dir / LOG_FILE, start)
    else:
        if dist_info.is_main and not resume:
            _set_aside(run_dir, "resume=False")
        seed_everything(seed + dist_info.rank, deterministic=deterministic)
        if dist_info.is_main and (run_dir / LOG_FILE).exists():
            _set_aside(run_dir, "starting fresh")
    for net in step.nets.values():
        distributed.broadcast_module(net)
    run_dir.mkdir(parents=True, exist_ok=True)

    sampler = (DistributedSampler(dataset, num_replicas=dist_info.world_size, rank=dist_info.rank,
                                  shuffle=True, seed=seed, drop_last=True) if sample_weights is None else
               WeightedEpochs(sample_weights, num_replicas=dist_info.world_size, rank=dist_info.rank, seed=seed))
    if sample_weights is not None and len(sampler.weights) != len(dataset):
        raise ValueError(f"sample_weights has {len(sampler.weights)} entries for a dataset of {len(dataset)}")
    steps_per_epoch = len(_epoch_batches(sampler, 0, per_rank_batch))
    if steps_per_epoch == 0:
        raise ValueError(f"dataset of {len(dataset)} items yields no full batch of {per_rank_batch} per rank")

    def state_dict(at: int) -> dict[str, Any]:
        return {
            "nets": {k: v.state_dict() for k, v in step.nets.items()},
            "optimizers": {k: v.state_dict() for k, v in step.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in step.schedulers.items()},
            "scaler": scaler.state_dict() if scaler is not None else None,
            "extra": step.extra_state(),
            "rng": capture_rng(noise_generator),
            "fingerprint": fingerprint_json,
            # Scalars accumulated since the last log line, so a resumed run logs the same averages.
            "log_window": {"sums": dict(sums), "count": count},
        }

    t0 = time.time()
    current = start
    quiet = os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true")  # set by the report runner
    bar = tqdm(total=total_steps, initial=start, desc=desc, disable=quiet or not (progress and dist_info.is_main),
               dynamic_ncols=True)
    window = state.get("log_window", {}) if state is not None else {}
    sums: dict[str, float] = dict(window.get("sums", {}))
    count = int(window.get("count", 0))
    step.train(True)
    try:
        while current < total_steps:
            if schedule.constant:
                epoch, offset = divmod(current, steps_per_epoch)
                batches = _BatchList(_epoch_batches(sampler, epoch, per_rank_batch)[offset:])
            else:
                batches = _StreamBatches(sampler, schedule, current, total_steps)
            loader = DataLoader(dataset, batch_sampler=batches, num_workers=num_workers,
                                collate_fn=collate_fn, pin_memory=dev.type == "cuda")
            for batch in loader:
                if current >= total_steps:
                    break
                ctx = StepContext(device=dev, step=current, total_steps=total_steps, precision=precision,
                                  seed=seed, dist=dist_info, scaler=scaler, noise_generator=noise_generator)
                batch = _to_device(batch, dev, channels_last)
                if augment is not None:
                    batch = augment(batch, seed=seed, step=current, rank=dist_info.rank,
                                    world_size=dist_info.world_size)
                scalars = step.train_step(batch, ctx)
                if scaler is not None:
                    scaler.update()
                current += 1
                for k, v in (scalars or {}).items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                count += 1
                bar.update(1)
                last = current == total_steps
                if dist_info.is_main and count and (current % max(1, log_every) == 0 or last):
                    row = {"step": current, "time_s": round(time.time() - t0, 3),
                           **{k: v / count for k, v in sums.items()}}
                    with open(run_dir / LOG_FILE, "a") as f:
                        f.write(json.dumps(row) + "\n")
                    bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k not in ("step", "time_s")},
                                    refresh=False)
                    sums, count = {}, 0
                if dist_info.is_main and ((sample_every and current % sample_every == 0) or last):
                    _write_samples(step, ctx, run_dir / "samples" / f"step_{current:08d}.png", sample_count)
                if (checkpoint_every and current % checkpoint_every == 0) or last:
                    if dist_info.is_main:
                        checkpoints.save(state_dict(current), current, final=last)
                    distributed.barrier()
    except KeyboardInterrupt:
        # An interrupted notebook keeps its progress: the next call with resume=True continues here.
        if dist_info.is_main and current > start:
            checkpoints.save(state_dict(current), current)
            log.warning("interrupted at step %d; checkpoint written", current)
        raise
    finally:
        bar.close()
    step.train(False)  # hand the model back ready for evaluation (batch norm on running statistics)
    history = read_log(run_dir)
    history = history[history["step"] <= current] if len(history) else history
    return TrainResult(run_dir=run_dir, step=current, trained_steps=current - start,
                       wall_time_s=time.time() - t0, history=history.reset_index(drop=True))


def _write_samples(step: TrainingStep, ctx: StepContext, path: Path, n: int) -> None:
    was_training = [net.training for net in step.nets.values()]
    step.train(False)
    with torch.no_grad():
        images = step.sample(n, ctx)
    for net, mode in zip(step.nets.values(), was_training):
        net.train(mode)
    if images is not None:
        _save_grid(images, path, nrow=int(np.ceil(np.sqrt(len(images)))))


_GROUP_NOUN = {"nets": "network", "optimizers": "optimizer", "schedulers": "scheduler"}


def _load_state(step: TrainingStep, state: Mapping[str, Any], scaler) -> None:
    """Load a checkpoint into ``step``; a checkpoint that does not fit the model (other networks,
    other tensor shapes) raises ``CheckpointError`` naming the file and the network."""
    where = state.get("path", "checkpoint")
    for group in ("nets", "optimizers", "schedulers"):
        saved, mine = state.get(group), getattr(step, group)
        if not isinstance(saved, Mapping) or set(saved) != set(mine):
            held = sorted(saved) if isinstance(saved, Mapping) else "nothing"
            raise CheckpointError(f"{where}: field '{group}' holds {held}, the model step has {sorted(mine)}")
        for name, obj in mine.items():
            try:
                obj.load_state_dict(saved[name])
            except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
                cause = " ".join(str(exc).split())  # torch lists each mismatch on its own line
                raise CheckpointError(f"{where}: {_GROUP_NOUN[group]} '{name}' ({type(obj).__name__}) "
                                      f"does not fit this checkpoint: {cause[:1000]}") from exc
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    step.load_extra_state(state.get("extra", {}))


def _truncate_log(path: Path, upto: int) -> None:
    """Drop log lines past the resumed step (they belong to work the checkpoint does not hold)."""
    if not path.exists():
        return
    keep = [line for line, row in _log_entries(path) if row["step"] <= upto]  # a torn last line goes too
    atomic.write_text(path, "".join(line + "\n" for line in keep))


def sample_images(step: TrainingStep, n: int, *, seed: int = 0, device: str | None = None) -> torch.Tensor:
    """``step.sample(n)`` in eval mode without gradients, on the CPU: images in [-1, 1], (n, C, H, W)."""
    net = next(iter(step.nets.values()))
    dev = torch.device(device) if device else next(net.parameters()).device
    ctx = StepContext(device=dev, step=0, total_steps=1, seed=seed)
    modes = [m.training for m in step.nets.values()]
    step.train(False)
    try:
        with torch.no_grad():
            images = step.sample(n, ctx)
    finally:
        for m, mode in zip(step.nets.values(), modes):
            m.train(mode)
    if images is None:
        raise NotImplementedError(f"{type(step).__name__} does not implement sample()")
    return images.detach().float().cpu()


def load_trained(step: TrainingStep, run_dir: str | Path, *, device: str = "auto") -> int:
    """Load the newest checkpoint of ``run_dir`` into ``step`` for evaluation; returns its step."""
    state = CheckpointIO(run_dir).load_latest()
    if state is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoint to load")
    step.initial_config()  # the step still names the run it was built as, after the load
    step.to(select_device(device))
    _load_state(step, state, None)
    step.train(False)
    return int(state["step"])
