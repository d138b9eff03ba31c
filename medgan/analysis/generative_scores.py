"""Score unconditional generators against real features with the whole fidelity/diversity suite.

The protocol: N generated images per generation seed are embedded with one feature extractor and
compared with N reference real images; the "Real" row compares another set of real images with
the same reference (the ceiling). Scores: IS (from the extractor's
class probabilities), FID, KID, PRD (Sajjadi et al. 2018: k-means on the union, F_8 ~ recall,
F_1/8 ~ precision), improved precision/recall (Kynkäänniemi et al. 2019, k = 3), density/coverage
(Naeem et al. 2020). Every function here but :func:`run_protocol` is pure: features in, tables
out; the metric implementations come from :mod:`medgan.metrics`.

Images stream: generated images go from the generator to the feature extractor one batch at a
time (:func:`generate_batches`), and real sets given as datasets are read batch by batch, so only
features (and a few images to show) stay in memory, whatever the number of images scored.

A generator whose images depend on the batch they are made in (batch norm on batch statistics:
:class:`medgan.train.dcgan.BatchStatisticsGenerator`) says so with a ``statistics_batch_size``
attribute; it is then always run on batches of that size (the last one shorter), so image ``i`` of
a seed is one fixed image, remade identically by :func:`generate_at`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from medgan import metrics
from medgan.data.base import iter_batches
from medgan.metrics import extract_features
from medgan.train.fingerprint import network_identity

__all__ = ["generate", "generate_batches", "generate_at", "generation_batch_size", "embed", "score_features",
           "score_table", "summarise",
           "k_sweep", "prd_spread", "prd_curves", "METRIC_ORDER", "subsample", "run_protocol", "ProtocolResult"]

METRIC_ORDER = ["IS", "FID", "KID", "PRD F_8 (recall)", "PRD F_1/8 (precision)", "Improved precision",
                "Improved recall", "Density", "Coverage"]
LOWER_IS_BETTER = {"FID", "KID"}


Generator = Callable[[torch.Tensor], torch.Tensor]
ImageSource = Any  # (N, C, H, W) tensor in [-1, 1], or a dataset whose items hold "image" (read per batch)


def _latents(n: int, z_dim: int, seed: int) -> torch.Tensor:
    # all n latents drawn at once from a seeded CPU generator: the same images for any device and batch
    # size (n x z_dim floats: small beside the images they make)
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(int(seed)))


def _device_of(generator: Generator, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    params = list(generator.parameters()) if isinstance(generator, torch.nn.Module) else []
    return params[0].device if params else torch.device("cpu")


def generation_batch_size(generator: Generator, batch_size: int) -> int:
    """The batch ``generator`` runs on: its ``statistics_batch_size`` when its images depend on their
    batch, else ``batch_size``."""
    fixed = getattr(generator, "statistics_batch_size", None)
    return int(fixed) if fixed else int(batch_size)


def generate_batches(generator: Generator, *, n: int, z_dim: int, seed: int, batch_size: int = 128,
                     device: str | torch.device | None = None) -> Iterator[torch.Tensor]:
    """The ``n`` images of :func:`generate`, as CPU batches (B, C, H, W) in [-1, 1], made as they are used.

    ``batch_size`` gives way to the generator's ``statistics_batch_size`` when it has one."""
    if n < 1:
        raise ValueError(f"generate: n must be >= 1, got {n}")
    batch_size = generation_batch_size(generator, batch_size)
    device = _device_of(generator, device)
    z = _latents(n, z_dim, seed)
    for i in range(0, n, batch_size):
        with torch.no_grad():
            batch = generator(z[i:i + batch_size].to(device)).float().clamp(-1, 1).cpu()
        yield batch


def generate(generator: Generator, *, n: int, z_dim: int, seed: int, batch_size: int = 128,
             device: str | torch.device | None = None) -> torch.Tensor:
    """``n`` images (n, C, H, W) in [-1, 1] on the CPU from latents z ~ N(0, 1) drawn with ``seed``.

    The latents come from a CPU generator seeded with ``seed``, so the same seed gives the same
    images on any device and batch size. For many images use :func:`generate_batches`.
    """
    return torch.cat(list(generate_batches(generator, n=n, z_dim=z_dim, seed=seed, batch_size=batch_size,
                                           device=device)))


def generate_at(generator: Generator, indices: Sequence[int], *, n: int, z_dim: int, seed: int,
                batch_size: int = 128, device: str | torch.device | None = None) -> torch.Tensor:
    """Images ``indices`` of the ``n`` that :func:`generate` makes with ``seed``, made again (len(indices), C, H, W).

    Generation is deterministic per latent, so a few chosen images (nearest neighbours, thumbnails)
    are remade instead of keeping every generated image. A generator with a ``statistics_batch_size``
    remakes the whole batches that held the images, so they come out as :func:`generate` made them.
    """
    idx = torch.as_tensor(np.asarray(list(indices), dtype=np.int64))
    if len(idx) and (idx.min() < 0 or idx.max() >= n):
        raise IndexError(f"generate_at: indices must lie in [0, {n})")
    if not len(idx):
        raise ValueError("generate_at: no indices given")
    device = _device_of(generator, device)
    z_all = _latents(n, z_dim, seed)
    fixed = getattr(generator, "statistics_batch_size", None)
    if fixed:
        fixed = int(fixed)
        made = {}
        with torch.no_grad():
            for b in sorted({int(i) // fixed for i in idx}):
                made[b] = generator(z_all[b * fixed:(b + 1) * fixed].to(device)).float().clamp(-1, 1).cpu()
        return torch.stack([made[int(i) // fixed][int(i) % fixed] for i in idx])
    z = z_all[idx]
    with torch.no_grad():
        out = [generator(z[i:i + batch_size].to(device)).float().clamp(-1, 1).cpu()
               for i in range(0, len(z), batch_size)]
    return torch.cat(out)


class _Batches:
    """An iterable of batches with a length (a progress bar's total), made anew on each pass."""

    def __init__(self, make: Callable[[], Iterable[torch.Tensor]], n_batches: int):
        self.make, self.n_batches = make, n_batches

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.make())

    def __len__(self) -> int:
        return self.n_batches


def _digest(values: Any) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(values, dtype=np.int64)).tobytes()).hexdigest()[:16]


def embed(extractor: torch.nn.Module, source: ImageSource, indices: Sequence[int] | None = None, *,
          batch_size: int = 128, cache_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Features (and class probabilities) of ``source``'s images ``indices`` (default: all).

    A tensor is embedded as a tensor (its bytes key the feature cache). A dataset is read batch by
    batch; with a ``fingerprint()`` (item-store datasets: free) it is cached by that and the indices,
    so a cache hit reads no image.
    """
    order = np.arange(len(source)) if indices is None else np.asarray(indices, dtype=np.int64)
    if isinstance(source, (torch.Tensor, np.ndarray)):
        return extract_features(extractor, source[order], batch_size=batch_size, cache_dir=cache_dir)
    identity = None
    if callable(getattr(source, "fingerprint", None)):
        identity = (f"{source.fingerprint()}:{_digest(order)}", len(order))
    batches = _Batches(lambda: iter_batches(source, "image", batch_size=batch_size, indices=order.tolist()),
                       -(-len(order) // batch_size))
    return extract_features(extractor, batches, batch_size=batch_size, cache_dir=cache_dir, stream_identity=identity)


def _generator_identity(generator: Generator, *, z_dim: int, device: torch.device) -> str | None:
    """What fixes a generator's streams besides seed and count: the network (class, architecture,
    weights), the latent size and the device type (numerics differ slightly between devices).
    None for a plain callable: its streams are not cached."""
    if not isinstance(generator, torch.nn.Module):
        return None
    net = network_identity(generator)
    fixed = getattr(generator, "statistics_batch_size", None)
    batch = f":batch{int(fixed)}" if fixed else ""  # batch-statistics images depend on their batch
    return f"generated:{net['class']}:{net['architecture']}:{net['weights']}:z{z_dim}{batch}:{device.type}"


def _source_images(source: ImageSource, indices: Sequence[int]) -> torch.Tensor:
    """The images ``indices`` of a tensor or dataset, stacked (a few, to show)."""
    if isinstance(source, (torch.Tensor, np.ndarray)):
        return torch.as_tensor(source[np.asarray(indices, dtype=np.int64)])
    return torch.stack([source[int(i)]["image"] for i in indices])


def subsample(feats: np.ndarray, n: int, *, seed: int) -> np.ndarray:
    """``n`` rows of ``feats`` without replacement (all rows in a fixed random order when n >= len)."""
    idx = np.random.default_rng(seed).permutation(len(feats))[:n]
    return np.asarray(feats)[np.sort(idx)]


def score_features(reference: np.ndarray, fake: np.ndarray, *, fake_probs: np.ndarray | None = None,
                   k: int = 3, k_density_coverage: int = 5, prd_clusters: int = 20, prd_runs: int = 10,
                   prd_beta: float = 8.0, prd_seed: int = 0, kid_subset_size: int = 1000, kid_subsets: int = 100,
                   is_splits: int = 10) -> dict[str, float]:
    """Every Table 1 metric of ``fake`` (M, D) against ``reference`` (N, D) features.

    PRD needs equally many samples: the larger set is subsampled (seeded) to the smaller size.
    KID uses subsets of ``min(kid_subset_size, N, M)``. IS needs ``fake_probs`` (M, classes);
    NaN without it.
    """
    reference, fake = np.asarray(reference, np.float64), np.asarray(fake, np.float64)
    n = min(len(reference), len(fake))
    out: dict[str, float] = {}
    out["IS"] = (metrics.inception_score(fake_probs, splits=min(is_splits, len(fake_probs)))[0]
                 if fake_probs is not None else float("nan"))
    out["FID"] = metrics.frechet_distance(reference, fake)
    out["KID"] = metrics.kernel_inception_distance(reference, fake, subsets=kid_subsets,
                                                   subset_size=min(kid_subset_size, n))[0]
    curve = metrics.prd(subsample(reference, n, seed=prd_seed), subsample(fake, n, seed=prd_seed + 1),
                        num_clusters=prd_clusters, num_runs=prd_runs, seed=prd_seed)
    out["PRD F_8 (recall)"], out["PRD F_1/8 (precision)"] = curve.max_f_beta(prd_beta)
    m = metrics.manifold_metrics(reference, fake, k_precision_recall=k, k_density_coverage=k_density_coverage)
    out["Improved precision"], out["Improved recall"] = m.precision, m.recall
    out["Density"], out["Coverage"] = m.density, m.coverage
    return out


def score_table(reference: np.ndarray, rows: Mapping[str, Sequence[tuple[np.ndarray, np.ndarray | None]]],
                **score_kwargs: Any) -> pd.DataFrame:
    """Long table: one line per (row name, seed index) with every metric.

    ``rows`` maps a row name ("Real", "DCGAN", ...) to a list of (features, probabilities) per
    generation seed (the Real row: one entry, or several real subsamples).
    """
    lines = []
    for name, entries in rows.items():
        for i, (feats, probs) in enumerate(entries):
            scores = score_features(reference, feats, fake_probs=probs, prd_seed=1000 * i, **score_kwargs)
            lines.append({"row": name, "seed": i, **scores})
    return pd.DataFrame(lines)


def summarise(long: pd.DataFrame, *, digits: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(numbers, text): per row the mean and sd over seeds; text cells read ``mean ± sd``.

    ``numbers`` has a (metric, "mean"/"sd") column MultiIndex; ``text`` one column per metric in
    :data:`METRIC_ORDER`, rows in the order they first appear.
    """
    order = list(dict.fromkeys(long["row"]))
    cols = [c for c in METRIC_ORDER if c in long.columns]
    grouped = long.groupby("row", sort=False)[cols]
    mean, sd = grouped.mean().loc[order], grouped.std(ddof=1).loc[order].fillna(0.0)
    numbers = pd.concat({"mean": mean, "sd": sd}, axis=1).swaplevel(axis=1).sort_index(axis=1, level=0)
    numbers = numbers[[(c, s) for c in cols for s in ("mean", "sd")]]
    counts = long.groupby("row", sort=False).size().loc[order]
    text = pd.DataFrame(index=order, columns=cols, dtype=object)
    for r in order:
        for c in cols:
            m, s = mean.loc[r, c], sd.loc[r, c]
            text.loc[r, c] = f"{m:.{digits}g}" if counts[r] < 2 else f"{m:.{digits}g} ± {s:.2g}"
    text.index.name = "row"
    return numbers, text


def k_sweep(reference: np.ndarray, fakes: Mapping[str, Sequence[np.ndarray]], ks: Sequence[int]) -> pd.DataFrame:
    """Improved precision/recall for each k (paper Fig. 5): columns model, seed, k, precision, recall."""
    lines = []
    for name, per_seed in fakes.items():
        for i, feats in enumerate(per_seed):
            for k in ks:
                p, r = metrics.improved_precision_recall(reference, feats, k=int(k))
                lines.append({"model": name, "seed": i, "k": int(k), "precision": p, "recall": r})
    return pd.DataFrame(lines)


def prd_spread(reference: np.ndarray, fakes: Mapping[str, np.ndarray], *, runs: int = 5, clusters: int = 20,
               beta: float = 8.0, k: int = 3, seed: int = 0) -> pd.DataFrame:
    """Run-to-run spread on fixed features: each run one k-means clustering (seed + run) for PRD,
    and improved precision/recall recomputed (deterministic: k-NN radii have no random start).

    Columns: model, run, PRD F_8 (recall), PRD F_1/8 (precision), Improved precision, Improved recall.
    """
    lines = []
    for name, feats in fakes.items():
        n = min(len(reference), len(feats))
        ref_n, fake_n = subsample(reference, n, seed=seed), subsample(feats, n, seed=seed + 1)
        for run in range(runs):
            curve = metrics.prd(ref_n, fake_n, num_clusters=clusters, num_runs=1, seed=seed + 7919 * (run + 1))
            f8, f18 = curve.max_f_beta(beta)
            p, r = metrics.improved_precision_recall(reference, feats, k=k)
            lines.append({"model": name, "run": run, "PRD F_8 (recall)": f8, "PRD F_1/8 (precision)": f18,
                          "Improved precision": p, "Improved recall": r})
    return pd.DataFrame(lines)


def prd_curves(reference: np.ndarray, fakes: Mapping[str, np.ndarray], *, clusters: int = 20, runs: int = 10,
               seed: int = 0) -> dict[str, metrics.PRDCurve]:
    """The averaged PRD curve of each model (for the PRD figure)."""
    out = {}
    for name, feats in fakes.items():
        n = min(len(reference), len(feats))
        out[name] = metrics.prd(subsample(reference, n, seed=seed), subsample(feats, n, seed=seed + 1),
                                num_clusters=clusters, num_runs=runs, seed=seed)
    return out


# --- the whole protocol ---------------------------------------------------------------------------
@dataclass
class ProtocolResult:
    """Everything :func:`run_protocol` computed (features are (N, D) float32 numpy arrays).

    No set's images are kept beyond the few shown (``images``): the others are read again from
    their source (``reference_index``, ``real_index``) or remade (:func:`generate_at` with
    ``seeds[0]`` and ``n``).
    """

    extractor: str                                   # the feature extractor's .name (show beside every number)
    n: int                                           # images per set
    reference: tuple[np.ndarray, np.ndarray | None]  # (features, class probabilities) of the reference set
    rows: dict[str, list[tuple[np.ndarray, np.ndarray | None]]]  # row -> per seed (features, probs)
    images: dict[str, torch.Tensor]                  # row -> the first ``keep_images`` of its first seed
    long: pd.DataFrame                               # one line per (row, seed), every metric
    numbers: pd.DataFrame                            # mean / sd per row
    text: pd.DataFrame                               # "mean ± sd" cells
    reference_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # reference images scored
    real_index: list[np.ndarray] = field(default_factory=list)  # real images of each Real-row draw
    seeds: list[int] = field(default_factory=list)   # generation seeds, in row order

    def first_seed_features(self) -> dict[str, np.ndarray]:
        return {k: v[0][0] for k, v in self.rows.items()}


def _keeping_first(batches: Iterable[torch.Tensor], kept: list[torch.Tensor], keep: int) -> Iterator[torch.Tensor]:
    """``batches`` passed through, with copies of their first ``keep`` images appended to ``kept``."""
    for batch in batches:
        have = sum(len(k) for k in kept)
        if have < keep:
            kept.append(batch[:keep - have].clone())
        yield batch


def run_protocol(generators: Mapping[str, Mapping[str, Any]], extractor: torch.nn.Module, *,
                 reference_images: ImageSource, real_images: ImageSource, seeds: Sequence[int],
                 n: int | None = None, batch_size: int = 128, sample_seed: int = 0,
                 cache_dir: str | os.PathLike | None = None, keep_images: int = 16,
                 device: str | torch.device | None = None, **score_kwargs: Any) -> ProtocolResult:
    """Generate ``n`` images per generator and seed, embed everything, score every row.

    Generated images stream from the generator to the extractor one batch at a time; real sets
    given as datasets are read batch by batch. Memory holds features, not images.

    Args:
        generators: name -> {"fn": z (B, z_dim) -> images in [-1, 1], "z_dim": int}.
        extractor: a :mod:`medgan.metrics.features` extractor (features, logits).
        reference_images: the reference real set (held-out patients): an (N_ref, C, H, W) tensor
            or a dataset of {"image"} items.
        real_images: real images of other patients (tensor or dataset), scored as the "Real" row
            (subsampled to ``n`` per seed when there are more).
        seeds: generation seeds. n: images per set (None = len(reference_images)).
        cache_dir: the feature cache (:func:`medgan.metrics.extract_features`): real sets are keyed
            by their bytes or dataset fingerprint, generated sets by the generator's weights, seed and
            count, so a second run embeds (and generates) nothing.
        keep_images: images kept per row (first seed), to show.
        device: where the generators run (default: where their weights are).
        score_kwargs: passed to :func:`score_features` (k, prd_clusters, kid_subset_size, ...).
    """
    n = int(n or len(reference_images))
    ref_idx = np.sort(np.random.default_rng(sample_seed).permutation(len(reference_images))[:n])
    reference = embed(extractor, reference_images, ref_idx, batch_size=batch_size, cache_dir=cache_dir)
    rows: dict[str, list] = {}
    images: dict[str, torch.Tensor] = {}
    real_draws = [np.sort(np.random.default_rng(sample_seed + 1 + s).permutation(len(real_images))[:n])
                  for s in (seeds if len(real_images) > n else seeds[:1])]
    rows["Real"] = [embed(extractor, real_images, idx, batch_size=batch_size, cache_dir=cache_dir)
                    for idx in real_draws]
    images["Real"] = _source_images(real_images, real_draws[0][:keep_images])
    for name, g in generators.items():
        rows[name] = []
        fn, z_dim = g["fn"], int(g["z_dim"])
        gen_device = _device_of(fn, device)
        generator_identity = _generator_identity(fn, z_dim=z_dim, device=gen_device)  # hashes the weights once
        for s in seeds:
            kept: list[torch.Tensor] = []
            keep = keep_images if name not in images else 0

            def make(s=s, kept=kept, keep=keep):
                return _keeping_first(generate_batches(fn, n=n, z_dim=z_dim, seed=int(s), batch_size=batch_size,
                                                       device=gen_device), kept, keep)
            identity = (f"{generator_identity}:seed{int(s)}:n{n}", n) if generator_identity else None
            n_batches = -(-n // generation_batch_size(fn, batch_size))
            rows[name].append(extract_features(extractor, _Batches(make, n_batches),
                                               batch_size=batch_size, cache_dir=cache_dir, stream_identity=identity))
            if name not in images:  # a cache hit generated nothing: make the few images shown
                images[name] = torch.cat(kept) if kept else generate_at(
                    fn, range(min(keep_images, n)), n=n, z_dim=z_dim, seed=int(s), batch_size=batch_size,
                    device=gen_device)
    long = score_table(reference[0], rows, **score_kwargs)
    numbers, text = summarise(long)
    return ProtocolResult(extractor=getattr(extractor, "name", type(extractor).__name__), n=n,
                          reference=reference, rows=rows, images=images, long=long, numbers=numbers, text=text,
                          reference_index=ref_idx, real_index=real_draws, seeds=[int(s) for s in seeds])
