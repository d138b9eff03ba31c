"""Memory and speed of every loader at 1x, 4x and 16x the same phantom set (issue: bounded memory).

Usage: ``python benchmarks/scale.py [--names cxr pet ...] [--scales 1 4 16]``

For each loader and scale, a fresh process builds the dataset (indexing, then decoding into the
item store, cold) and reads every item once, and reports its peak RSS and items per second. The
phantoms are generated beforehand in another process, so their cost is not counted. A loader whose
memory grew with the data (every image decoded into RAM) shows R close to the scale; bounded
memory shows R close to 1. The table's "decoded" column is what the items would take in RAM.
Ends with ``scale: peak RSS 16x/1x = R (worst: LOADER)``; the goal is R <= 1.3.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 1.3

# phantom options per scale s (counts scale, geometry does not), and how the loader is built
PHANTOMS = {
    "cxr": lambda s: {"n_patients": 100 * s, "image_size": 256},
    "chest_ct": lambda s: {"n_subjects": 4 * s, "image_size": 256, "n_slices": 24},
    "brain": lambda s: {"n_train_subjects": 4 * s, "n_test_subjects": 1 * s, "slices_per_subject": 8, "image_size": 256},
    "pet": lambda s: {"n_subjects": 2 * s, "image_size": 128, "n_slices": 48},
    "cells": lambda s: {"cell_types": ["HRCE"], "wells_per_condition": 1 * s, "sites_per_well": 2, "field_size": 256,
                        "concentrations_um": [10.0]},
}


def _datasets(name: str, root: str) -> list:
    # imported here so that the parent process (which only spawns) stays small
    if name == "cxr":
        from medgan.data.chest_xray import ChestXray
        return [ChestXray(root, image_size=256)]
    if name == "chest_ct":
        from medgan.data.nsclc_radiomics import NSCLCRadiomics
        return [NSCLCRadiomics(root, crop_size=256, image_size=256)]
    if name == "brain":
        from medgan.data.brain_ct_mri import BrainCTMRI
        return [BrainCTMRI(root, domain=d, part=p, image_size=256) for d in "AB" for p in ("train", "test")]
    if name == "pet":
        from medgan.data.pet_early_delayed import PETEarlyDelayed
        return [PETEarlyDelayed(root)]
    from medgan.data.rxrx19a import RxRx19a
    return [RxRx19a(root, crop_size=128, image_size=128)]


def _peak_rss_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def measure(name: str, root: str) -> dict:
    """In this (fresh) process: build the loader's datasets, then read every item once."""
    import numpy as np
    import torch  # noqa: F401  (the baseline every study process pays)
    start = time.perf_counter()
    datasets = _datasets(name, root)
    built = time.perf_counter()
    items, decoded = 0, 0
    for ds in datasets:
        for i in range(len(ds)):
            item = ds[i]
            items += 1
            decoded += sum(v.numel() * v.element_size() for v in item.values() if hasattr(v, "numel"))
    done = time.perf_counter()
    del np
    return {"items": items, "build_s": built - start, "iter_s": done - built, "peak_mib": _peak_rss_mib(),
            "decoded_mib": decoded / 2**20}


def _run(args: list[str], env: dict) -> str:
    out = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--names", nargs="*", default=list(PHANTOMS))
    parser.add_argument("--scales", nargs="*", type=int, default=[1, 4, 16])
    parser.add_argument("--_generate", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--_measure", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._generate:
        from medgan.data.phantoms import ensure
        name, scale, parent = args._generate
        print(ensure(name, root=parent, **PHANTOMS[name](int(scale))))
        return
    if args._measure:
        print(json.dumps(measure(*args._measure)))
        return
    worst = (0.0, "")
    with tempfile.TemporaryDirectory(prefix="medgan-scale-") as tmp:
        env = {**os.environ, "MEDGAN_WORKDIR": str(Path(tmp) / "work"), "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
        print(f"{'loader':10s} {'scale':>5s} {'items':>6s} {'decoded MiB':>11s} {'peak RSS MiB':>12s} "
              f"{'build items/s':>13s} {'read items/s':>12s}")
        for name in args.names:
            peaks = {}
            for scale in args.scales:
                root = _run(["--_generate", name, str(scale), str(Path(tmp) / "data")], env)
                r = json.loads(_run(["--_measure", name, root], env))
                peaks[scale] = r["peak_mib"]
                print(f"{name:10s} {scale:>4d}x {r['items']:>6d} {r['decoded_mib']:>11.0f} {r['peak_mib']:>12.0f} "
                      f"{r['items'] / r['build_s']:>13.1f} {r['items'] / r['iter_s']:>12.0f}", flush=True)
            ratio = peaks[max(args.scales)] / peaks[min(args.scales)]
            print(f"{name:10s} peak RSS {max(args.scales)}x/{min(args.scales)}x = {ratio:.2f}", flush=True)
            worst = max(worst, (ratio, name))
    lo, hi = min(args.scales), max(args.scales)
    print(f"scale: peak RSS {hi}x/{lo}x = {worst[0]:.2f} (worst: {worst[1]}); goal <= {GOAL}")


if __name__ == "__main__":
    main()
