"""Seconds per training iteration of the paper configurations on a GPU, at the paper's batch sizes.

Usage: ``python benchmarks/gpu_steps.py [--steps 60] [--log-every 10] [--cases pggan1024 cyclegan ...]``

Each case builds the study's job from its ``rehearse`` profile (the paper's architecture and image
size on paper-size phantoms) with every batch size put back to the paper's, trains ``--steps``
iterations in a temporary folder and reports the seconds per iteration of the last logged interval
(the first intervals hold CUDA warm-up and, for PGGAN, the lower resolutions). Written to take a
few minutes of a lent GPU in one go; on a CPU use ``--steps 4 --log-every 2`` to check it runs.

``--settings`` times each case under several engine settings (issue 18, goal 5) and prints each one's
speed-up over ``fp32-plain`` (the engine before those settings existed):
``fp32-plain`` fp32, NCHW, no cuDNN autotuning; ``fp32`` fp32 with ``cudnn.benchmark`` (the engine's
default on CUDA); ``bf16`` bf16 autocast, channels-last and ``cudnn.benchmark`` (what ``memory_format:
auto`` chooses on CUDA); ``bf16-nchw`` bf16 without channels-last; ``fp16`` fp16 with grad scaling,
channels-last and ``cudnn.benchmark``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from medgan.config import REHEARSAL_PROFILE, _flatten, load_params, resolve_profile
from medgan.studies import build_job, run_job

CASES = {  # name: (notebook, model, extra overrides)
    "pggan128": ("05_cxr_pggan", "pggan", {"data.image_size": 128}),
    "pggan1024": ("05_cxr_pggan", "pggan", {}),
    "cyclegan": ("03_brain_ct_mri_cyclegan", "resnet", {}),
    "pix2pix": ("04_pet_early_to_delayed", "pix2pix", {}),
    "stargan_v2": ("01_rxrx19a_stargan_v2", "stargan_v2", {}),
}


def paper_batch_sizes(notebook: str) -> dict:
    """Every batch size of the paper profile (a rehearsal may have cut some for a CPU's memory)."""
    return {k: v for k, v in _flatten(resolve_profile(notebook, "paper")).items() if k.endswith("batch_size")}


SETTINGS = {  # name: engine options
    "fp32-plain": dict(precision="fp32", memory_format="contiguous", cudnn_benchmark=False),
    "fp32": dict(precision="fp32", memory_format="auto", cudnn_benchmark=None),
    "bf16": dict(precision="bf16", memory_format="auto", cudnn_benchmark=None),
    "bf16-nchw": dict(precision="bf16", memory_format="contiguous", cudnn_benchmark=None),
    "fp16": dict(precision="fp16", memory_format="auto", cudnn_benchmark=None),
}


def time_case(name: str, steps: int, log_every: int, setting: str | None = None) -> dict:
    notebook, model, extra = CASES[name]
    params = load_params(notebook, REHEARSAL_PROFILE, {**paper_batch_sizes(notebook), **extra})
    job = build_job(notebook, model, params)
    options = SETTINGS[setting] if setting else {}
    with tempfile.TemporaryDirectory(prefix="medgan-gpu-") as tmp:
        start = time.perf_counter()
        result = run_job(job, tmp, total_steps=steps, log_every=log_every, sample_every=0,
                         checkpoint_every=steps, **options)
        wall = time.perf_counter() - start
    times = result.history["time_s"].to_numpy()
    per_iter = (times[-1] - times[-2]) / log_every if len(times) >= 2 else wall / steps
    return {"case": name, "notebook": notebook, "model": model, "batch_size": job.options.get("batch_size"),
            "setting": setting or "profile", "precision": options.get("precision", job.options.get("precision", "fp32")),
            "device": str(params.device),
            "s_per_iter": round(float(per_iter), 4), "wall_s": round(wall, 1), "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--settings", nargs="*", default=None, choices=list(SETTINGS),
                        help="engine settings to compare per case (default: only the profile's own)")
    args = parser.parse_args()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (CPU)"
    print(f"device: {gpu}; torch {torch.__version__}", flush=True)
    for name in args.cases:
        rows = [time_case(name, args.steps, args.log_every, setting) for setting in (args.settings or [None])]
        for row in rows:
            print(json.dumps(row), flush=True)
        if args.settings and "fp32-plain" in args.settings:
            plain = next(r["s_per_iter"] for r in rows if r["setting"] == "fp32-plain")
            print(f"{name}: " + ", ".join(f"{r['setting']} {plain / r['s_per_iter']:.2f}x" for r in rows)
                  + " (speed-up over fp32-plain)", flush=True)


if __name__ == "__main__":
    main()
