"""Seconds per training step of every study's default-profile jobs: fp32 against bf16, and one
thread against all cores — what `make reproduce` spends its time on, measured job by job.

    .venv/bin/python benchmarks/study_steps.py                      # every job, fp32 and bf16, 1 and 2 threads
    .venv/bin/python benchmarks/study_steps.py --jobs 04_pet_early_to_delayed:cyclegan --steps 20

Each job is built from ``params/<notebook>/default.yaml`` exactly as its notebook builds it (the
phantom data included; ``make data`` first) with its step count set to ``--steps`` (after an
untimed ``--warmup`` run), trained through the engine, each step timed around the study's own
``train_step``. The means print as

    <notebook>:<job>  bf16/fp32 speed-up = X (1 thread) Y (2 threads);  2 threads/1 thread = Z (fp32)

so the first ratio says whether the default profile should train in bf16 (> 1: bf16 is faster) and
the second whether a notebook gains more from a second thread than from sharing the machine with a
second notebook (< 2: rendering two notebooks at once, one thread each, finishes sooner).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from medgan.config import load_params
from medgan.studies import build_job, run_job

# (notebook, job, the parameter naming the job's precision)
JOBS = [
    ("00_quickstart", "dcgan", "train.precision"),
    ("01_rxrx19a_stargan_v2", "stargan_v2", "train.precision"),
    ("02_ct_fidelity_diversity", "dcgan", "dcgan.precision"),
    ("02_ct_fidelity_diversity", "pggan", "pggan.precision"),
    ("03_brain_ct_mri_cyclegan", "resnet", "train.precision"),
    ("03_brain_ct_mri_cyclegan", "unet", "train.precision"),
    ("04_pet_early_to_delayed", "pix2pix", "train.precision"),
    ("04_pet_early_to_delayed", "cyclegan", "train.precision"),
    ("05_cxr_pggan", "classifier_real", "classifier.precision"),
    ("05_cxr_pggan", "pggan", "pggan.precision"),
]


def seconds_per_step(notebook: str, job_name: str, key: str, precision: str, threads: int, warmup: int,
                     steps: int) -> float:
    """Mean seconds per step of a run whose length (and so whose schedules: PGGAN's growth, the
    learning-rate decay) is ``steps``: the mean over a whole compressed run is the mean over the
    real one, whose phases have the same shares. An untimed run of ``warmup`` steps goes first."""
    torch.set_num_threads(threads)
    steps_key = key.rsplit(".", 1)[0] + ".steps"
    times: list[float] = []
    for n, timed_run in ((warmup, False), (steps, True)):
        P = load_params(notebook, "default", [f"{key}={precision}", f"{steps_key}={n}"])
        job = build_job(notebook, job_name, P)
        inner = job.step.train_step

        def timed(batch, ctx, inner=inner, record=timed_run):
            start = time.perf_counter()
            out = inner(batch, ctx)
            if record:
                times.append(time.perf_counter() - start)
            return out

        job.step.train_step = timed
        with tempfile.TemporaryDirectory() as run_dir:
            # A fresh folder: nothing to resume; no checkpoint, sample grid or log flush in the timing.
            run_job(job, run_dir, progress=False, checkpoint_every=0, sample_every=0, log_every=10 ** 9)
    return statistics.fmean(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", nargs="*", default=None, help="notebook:job pairs (default: all)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, os.cpu_count() or 1])
    args = parser.parse_args()
    os.environ["TQDM_DISABLE"] = "1"  # the loaders' indexing bars, once per run, would bury the results
    chosen = [j for j in JOBS if args.jobs is None or f"{j[0]}:{j[1]}" in args.jobs]
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
          f"mean s/step over a {args.steps}-step run", flush=True)
    for notebook, job_name, key in chosen:
        t = {(p, n): seconds_per_step(notebook, job_name, key, p, n, args.warmup, args.steps)
             for n in args.threads for p in ("fp32", "bf16")}
        lo, hi = min(args.threads), max(args.threads)
        cells = "  ".join(f"{p}/{n}t {t[p, n] * 1000:.1f} ms" for n in args.threads for p in ("fp32", "bf16"))
        ratios = " ".join(f"{t['fp32', n] / t['bf16', n]:.2f} ({n} thread{'s' if n > 1 else ''})" for n in args.threads)
        print(f"{notebook}:{job_name}  bf16/fp32 speed-up = {ratios};  "
              f"{hi} threads/{lo} thread = {t['fp32', lo] / t['fp32', hi]:.2f} (fp32)   [{cells}]", flush=True)
    print(f"load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
