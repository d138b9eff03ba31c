"""Engine overhead: medgan.train.train vs a bare PyTorch loop running the same step.

Prints iterations/s of both and their ratio (measured in the same run). The engine adds data
ordering, logging, progress and checkpoints; the ratio says what that costs.

    python benchmarks/training.py [--steps 300] [--batch 64]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medgan.data.toy_shapes import ToyShapes  # noqa: E402
from medgan.train import StepContext, TrainingStep, seed_everything, train  # noqa: E402
from medgan.studies import build_job  # noqa: E402
from medgan.config import load_params  # noqa: E402


def bare_loop(step: TrainingStep, dataset, steps: int, batch: int) -> float:
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    params = load_params("00_quickstart", "default")
    seed_everything(0)
    job = build_job("00_quickstart", "dcgan", params)
    dataset = ToyShapes(2048, size=params.data.image_size)
    t_bare = bare_loop(job.step, dataset, args.steps, args.batch)
    seed_everything(0)
    job = build_job("00_quickstart", "dcgan", params)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(job.step, dataset, run_dir=tmp, total_steps=args.steps, batch_size=args.batch, log_every=10,
              checkpoint_every=100, sample_every=100, progress=False)
        t_engine = time.perf_counter() - t0
    print(f"{'loop':<12}{'it/s':>10}")
    print(f"{'bare torch':<12}{args.steps / t_bare:>10.1f}")
    print(f"{'medgan':<12}{args.steps / t_engine:>10.1f}")
    extras = args.steps // 100
    print(f"engine / bare time ratio: {t_engine / t_bare:.3f} "
          f"(1.0 = no overhead; includes {extras} checkpoints and {extras} sample grids)")


if __name__ == "__main__":
    main()
