"""Speed and memory of medgan.metrics against the reference implementations, same features, same run.

    .venv/bin/python benchmarks/metrics.py            # CT study size: 6,080 vs 6,080, 2,048-d
    .venv/bin/python benchmarks/metrics.py --quick    # 1,000 vs 1,000, 256-d
    .venv/bin/python benchmarks/metrics.py --only kid --scale-n 0   # one family, no 60k rows

After the main table come scaling rows at 60,000 vs 60,000 (study 5's size) for Fréchet and KID.

Features are random but structured like Inception pool features (non-negative, correlated,
low intrinsic dimension plus noise). Each measurement runs in a fresh subprocess so its peak
resident memory is its own: the peak RSS during the call above the RSS before it, after imports,
loading the features and a warm-up (the kernel's peak counter is reset after the warm-up).
Prints a table of seconds, speed ratios (reference / ours), values and peak memory.
Targets: Fréchet ≥ 3× faster than pytorch-fid's scipy sqrtm route with the same value;
improved P&R + density/coverage ≥ 2× faster than prdc with the same values and no more memory;
KID ≥ 2× torch-fidelity; every peak memory at most the reference's.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_features(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    latent_dim = 64
    mixing = rng.normal(size=(latent_dim, dim)) / np.sqrt(latent_dim)
    bias = rng.normal(size=dim) * 0.5

    def sample(shift: float, stretch: float, mix: np.ndarray) -> np.ndarray:
        z = rng.normal(size=(n, latent_dim)) * stretch + shift
        pre = z @ mix + bias + 0.3 * rng.normal(size=(n, dim))
        return np.logaddexp(0, pre).astype(np.float32)  # softplus: non-negative like pooled ReLU maps

    real = sample(0.0, 1.0, mixing)
    fake = sample(0.1, 1.15, mixing + 0.05 * rng.normal(size=mixing.shape))
    return real, fake


# --- what each subprocess runs ---------------------------------------------------------------

def _ours_frechet(real, fake):
    from medgan.metrics import frechet_distance
    return {"fid": frechet_distance(real, fake)}


def _ref_frechet(real, fake):
    from pytorch_fid.fid_score import calculate_frechet_distance
    r, f = real.astype(np.float64), fake.astype(np.float64)
    value = calculate_frechet_distance(r.mean(0), np.cov(r, rowvar=False), f.mean(0), np.cov(f, rowvar=False))
    return {"fid": float(value)}


def _ours_prdc(real, fake):
    from medgan.metrics import manifold_metrics
    m = manifold_metrics(real, fake, k_precision_recall=3, k_density_coverage=5)
    return {"precision": m.precision, "recall": m.recall, "density": m.density, "coverage": m.coverage}


def _ref_prdc(real, fake):
    from prdc import compute_prdc
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the sample counts
        k3, k5 = compute_prdc(real, fake, nearest_k=3), compute_prdc(real, fake, nearest_k=5)
    return {"precision": float(k3["precision"]), "recall": float(k3["recall"]),
            "density": float(k5["density"]), "coverage": float(k5["coverage"])}


def _ours_prdc_k5(real, fake):
    from medgan.metrics import manifold_metrics
    m = manifold_metrics(real, fake, k_precision_recall=5, k_density_coverage=5)
    return {"precision": m.precision, "recall": m.recall, "density": m.density, "coverage": m.coverage}


def _ref_prdc_k5(real, fake):
    from prdc import compute_prdc
    with contextlib.redirect_stdout(io.StringIO()):
        out = compute_prdc(real, fake, nearest_k=5)
    return {k: float(v) for k, v in out.items()}


def _ours_kid(real, fake, subsets):
    from medgan.metrics import kernel_inception_distance
    mean, std = kernel_inception_distance(real, fake, subsets=subsets, subset_size=min(1000, len(real) // 2))
    return {"kid_mean": mean, "kid_std": std}


def _ref_kid(real, fake, subsets):
    import torch
    from torch_fidelity.metric_kid import kid_features_to_metric
    out = kid_features_to_metric(torch.from_numpy(real), torch.from_numpy(fake), kid_subsets=subsets,
                                 kid_subset_size=min(1000, len(real) // 2), verbose=False)
    return {"kid_mean": out["kernel_inception_distance_mean"], "kid_std": out["kernel_inception_distance_std"]}


def _probs(real):
    logits = (real[:, :10] - real[:, :10].mean(0)) * 3
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def _ours_is(real, fake):
    from medgan.metrics import inception_score
    mean, std = inception_score(_probs(real), splits=10, shuffle_seed=2020)
    return {"is_mean": mean, "is_std": std}


def _ref_is(real, fake):
    import torch
    from torch_fidelity.metric_isc import isc_features_to_metric
    out = isc_features_to_metric(torch.log(torch.from_numpy(_probs(real))), splits=10, shuffle=True, rng_seed=2020)
    return {"is_mean": out["inception_score_mean"], "is_std": out["inception_score_std"]}


TASKS = {
    "frechet/ours": _ours_frechet, "frechet/pytorch-fid": _ref_frechet,
    "prdc k3+k5/ours": _ours_prdc, "prdc k3+k5/prdc": _ref_prdc,
    "prdc k5/ours": _ours_prdc_k5, "prdc k5/prdc": _ref_prdc_k5,
    "kid/ours": _ours_kid, "kid/torch-fidelity": _ref_kid,
    "is/ours": _ours_is, "is/torch-fidelity": _ref_is,
}


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise KeyError(field)


def _reset_peak_rss() -> float:
    """Reset this process's peak RSS to its current RSS (Linux ``clear_refs``) and return the latter:
    the warm-up's own peak then does not hide the measured call's."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mib("VmRSS")


def _peak_rss_mib() -> float:
    return _status_mib("VmHWM")


def worker(task: str, features_path: str, kid_subsets: int, repeats: int) -> None:
    # Import everything any task needs first, so the baseline includes the libraries.
    import prdc  # noqa: F401
    import pytorch_fid.fid_score  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import torch  # noqa: F401
    import torch_fidelity.metric_kid  # noqa: F401

    import medgan.metrics  # noqa: F401

    data = np.load(features_path)
    real, fake = data["real"], data["fake"]
    fn = TASKS[task]
    call = (lambda r, f: fn(r, f, kid_subsets)) if task.startswith("kid/") else fn
    # Warm-up on a small slice (thread pools, lazy imports, BLAS init and its GEMM buffers, which
    # big products allocate once per process) — same for every task.
    if task.startswith("kid/"):
        fn(real[:1500], fake[:1500], 3)
    else:  # more rows than feature dimensions, so the full-rank code paths (and their libraries) warm up
        call(real[:min(len(real), real.shape[1] + 256)], fake[:min(len(fake), fake.shape[1] + 256)])
    baseline = _reset_peak_rss()
    seconds = float("inf")
    for _ in range(repeats):  # best of `repeats`: the machine is shared, the minimum is the least disturbed
        start = time.perf_counter()
        values = call(real, fake)
        seconds = min(seconds, time.perf_counter() - start)
    print(json.dumps({"task": task, "seconds": seconds, "peak_mib": _peak_rss_mib() - baseline,
                      "values": {k: float(v) for k, v in values.items()}}))


def run_task(task: str, features_path: str, kid_subsets: int, repeats: int) -> dict:
    env = dict(os.environ)
    result = subprocess.run([sys.executable, __file__, "--worker", task, "--features", features_path,
                             "--kid-subsets", str(kid_subsets), "--repeats", str(repeats)], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{task} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


SCALING_FAMILIES = ("frechet", "kid")  # the ones whose references fit in memory and minutes at 60k


def run_families(families: list[str], real: np.ndarray, fake: np.ndarray, kid_subsets: int, repeats: int,
                 label: str = "") -> None:
    """One table row per metric family. Ours and the reference alternate repeat by repeat, so load from
    other processes falls on both; the fastest of each is kept (and the largest peak memory)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "features.npz")
        np.savez(path, real=real, fake=fake)
        for family in families:
            tasks = [t for t in TASKS if t.split("/")[0] == family]
            results: dict[str, dict] = {}
            for _ in range(repeats):
                for t in tasks:
                    r, name = run_task(t, path, kid_subsets, 1), t.split("/")[1]
                    best = results.setdefault(name, r)
                    best["seconds"] = min(best["seconds"], r["seconds"])
                    best["peak_mib"] = max(best["peak_mib"], r["peak_mib"])
            ours = results.pop("ours")
            (ref_name, ref), = results.items()
            values = "; ".join(f"{k} {ours['values'][k]:.6g} | {ref['values'][k]:.6g}" for k in ours["values"])
            worst = max(abs(ours["values"][k] - ref["values"][k]) / max(abs(ref["values"][k]), 1e-30)
                        for k in ours["values"])
            print(f"{family + label:<11} {ref_name:<14} {ours['seconds']:>8.2f} {ref['seconds']:>8.2f} "
                  f"{ref['seconds'] / ours['seconds']:>7.1f}x {ours['peak_mib']:>9.0f} {ref['peak_mib']:>8.0f} "
                  f"{worst:>12.1e}  {values}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 vs 1,000 samples, 256-d")
    parser.add_argument("--n", type=int, default=None, help="samples per set (default 6080, quick 1000)")
    parser.add_argument("--dim", type=int, default=None, help="feature dimension (default 2048, quick 256)")
    parser.add_argument("--kid-subsets", type=int, default=None, help="KID subsets (default 100, quick 10)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs per task, ours and the reference alternating, best kept (default 2, quick 3)")
    parser.add_argument("--scale-n", type=int, default=60000,
                        help="samples per set of the scaling rows (Fréchet, KID; 0 = none; not with --quick)")
    parser.add_argument("--only", default=None, help="comma-separated metric families (frechet,prdc,kid,is)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--features", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.features, args.kid_subsets, args.repeats)
        return

    n = args.n or (1000 if args.quick else 6080)
    dim = args.dim or (256 if args.quick else 2048)
    kid_subsets = args.kid_subsets or (10 if args.quick else 100)
    repeats = args.repeats or (3 if args.quick else 2)
    families = ["frechet", "prdc k3+k5", "prdc k5", "kid", "is"]
    if args.only:
        wanted = args.only.split(",")
        families = [f for f in families if f.split()[0] in wanted]
    import torch

    print(f"medgan.metrics benchmark: {n} real vs {n} generated, {dim}-d features, KID {kid_subsets} subsets, best of {repeats}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {'cuda' if torch.cuda.is_available() else 'cpu'}")
    real, fake = make_features(n, dim)
    header = (f"{'metric':<11} {'reference':<14} {'ours s':>8} {'ref s':>8} {'speed-up':>8} {'ours MiB':>9} "
              f"{'ref MiB':>8} {'max rel diff':>12}  values (ours | reference)")
    print(header)
    print("-" * len(header), flush=True)
    run_families(families, real, fake, kid_subsets, repeats)
    del real, fake
    if args.scale_n and not args.quick:
        scaled = [f for f in families if f in SCALING_FAMILIES]
        print(f"\nscaling: {args.scale_n} real vs {args.scale_n} generated, {dim}-d (study 5's size; "
              f"P&R/density/coverage left out: prdc needs N x N distance matrices)", flush=True)
        real, fake = make_features(args.scale_n, dim, seed=1)
        run_families(scaled, real, fake, kid_subsets, repeats, label=f" @{args.scale_n // 1000}k")
    load = os.getloadavg()
    print(f"\nload average at the end (1/5/15 min): {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs "
          f"— ratios are from the same run; absolute seconds depend on what else the machine is doing.")


if __name__ == "__main__":
    main()
