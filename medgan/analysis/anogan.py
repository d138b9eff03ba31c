"""AnoGAN-style anomaly detection with a generator trained on normal images only.

:func:`invert` finds, for each query image, the latent whose generated image is closest to
it (Adam on z from several random starts, the thesis' mean squared residual, optionally
AnoGAN's discriminator-feature term). The residual ``query - reconstruction`` marks what the
normal-only generator cannot draw: the anomaly. The rest scores and evaluates it:

- :func:`anomaly_maps` (N, H, W) and :func:`anomaly_scores` (N,) from residuals;
- :func:`threshold_at_specificity`: a threshold chosen on normal validation images only;
- :func:`detection_table`: the thesis' Table 6 (detected / total per finding), with
  trained vs untrained findings;
- :func:`localisation`: pixel-level AUROC and Dice against lesion masks;
- :func:`mean_image_residual`: the naive baseline (difference from the mean normal image).

Like ``projector.project`` of stylegan2-ada, :func:`invert` is a pure function of a generator
and targets; nothing here trains or loads models. :func:`iter_inversions` is its streaming form,
and :func:`evaluate_anomaly_detection` consumes it chunk by chunk: each chunk of queries is
inverted and reduced at once (scores, latents, the maps of lesion images, a few examples), so
the queries, reconstructions and residuals of a large query set never sit in memory together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from torch import nn
from tqdm.auto import tqdm

from medgan.metrics.bootstrap import bootstrap_ci
from medgan.metrics.roc import auroc, delong_test

__all__ = ["InversionResult", "invert", "iter_inversions", "queries_per_chunk", "UpperQuantile", "smooth_residual",
           "anomaly_maps", "anomaly_scores", "threshold_at_specificity", "detection_table", "localisation", "compare_localisation", "dice", "mean_image_residual", "AnomalyEvaluation",
           "evaluate_anomaly_detection", "AnomalyExamples", "ANOGAN", "BASELINE", "SUPERVISED"]


@dataclass
class InversionResult:
    z: torch.Tensor               # (N, D) best latent per query
    reconstruction: torch.Tensor  # (N, C, H, W) G(z) in [-1, 1]
    residual: torch.Tensor        # (N, C, H, W) query - reconstruction (signed)
    losses: np.ndarray            # (steps, N) objective of the chosen restart at every step
    seconds_per_query: float      # wall time / N (all restarts included)


def queries_per_chunk(batch_size: int, restarts: int) -> int:
    """Queries optimised together: all restarts of a query share a chunk of <= ``batch_size`` latents."""
    return max(1, int(batch_size) // max(1, int(restarts)))


def iter_inversions(G: Callable[[torch.Tensor], torch.Tensor], targets: Any, *, steps: int = 200, lr: float = 0.05,
                    restarts: int = 4, z_dim: int | None = None,
                    discriminator_features: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    feature_weight: float = 0.1, batch_size: int = 64, seed: int = 0,
                    device: str | torch.device = "cpu", progress: bool = False
                    ) -> Iterator[tuple[torch.Tensor, InversionResult]]:
    """:func:`invert`, chunk by chunk: yields ``(queries, result)`` for consecutive chunks of
    :func:`queries_per_chunk` queries, each read from ``targets`` only when its turn comes.

    ``targets``: (N, C, H, W) images in [-1, 1], as a tensor or anything with ``len`` and
    ``targets[i:j]`` -> tensor (a lazy view of images on disk). Memory holds one chunk's queries,
    latents and reconstructions; the random starts of all N queries are drawn up front (small),
    so a query's result does not depend on how the queries are chunked.
    """
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be >= 1, got {steps} and {restarts}")
    z_dim = z_dim or getattr(G, "z_dim", None)
    if z_dim is None:
        raise ValueError("z_dim is needed (the generator has no z_dim attribute)")
    device = torch.device(device)
    n = len(targets)
    gen = torch.Generator().manual_seed(seed)
    z_init = torch.randn(n * restarts, z_dim, generator=gen)
    per_chunk = queries_per_chunk(batch_size, restarts)

    modules = [m for m in (G, discriminator_features) if isinstance(m, nn.Module)]
    saved = [(p, p.requires_grad) for m in modules for p in m.parameters()]
    modes = [(m, m.training) for m in modules]
    for p, _ in saved:
        p.requires_grad_(False)
    for m in modules:
        m.eval()
    try:
        for first in tqdm(range(0, n, per_chunk), disable=not progress, desc="invert"):
            t0 = time.perf_counter()
            query = torch.as_tensor(targets[first:first + per_chunk]).float()
            if query.ndim != 4:
                raise ValueError(f"targets must be (N, C, H, W), got a chunk of shape {tuple(query.shape)}")
            q = len(query)
            tgt = query.to(device).repeat_interleave(restarts, dim=0)
            z = z_init[first * restarts:(first + q) * restarts].clone().to(device).requires_grad_(True)
            opt = torch.optim.Adam([z], lr=lr)
            feat_target = discriminator_features(tgt).detach() if discriminator_features is not None else None
            history = []
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                per_image = _objective(G(z), tgt, discriminator_features, feat_target, feature_weight)
                per_image.sum().backward()
                opt.step()
                history.append(per_image.detach().cpu())
            with torch.no_grad():
                fake = G(z)
                final = _objective(fake, tgt, discriminator_features, feat_target, feature_weight).cpu()
            history[-1] = final  # the objective at the latent we return
            del tgt, feat_target
            losses = torch.stack(history).view(steps, q, restarts)
            best = losses[-1].argmin(1)
            z_best = z.detach().cpu().view(q, restarts, z_dim)[torch.arange(q), best]
            # The objective used G's raw output; the reconstruction shown and subtracted is an image in [-1, 1]:
            # G(z_best), taken from the final forward pass rather than drawn again.
            recon = fake.float().cpu().view(q, restarts, *fake.shape[1:])[torch.arange(q), best].clamp(-1, 1)
            del z, opt, fake
            seconds = time.perf_counter() - t0
            yield query, InversionResult(z=z_best, reconstruction=recon, residual=query - recon,
                                         losses=losses[:, torch.arange(q), best].numpy(), seconds_per_query=seconds / q)
            del query, recon  # before the next chunk is read
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.train(mode)


def invert(G: Callable[[torch.Tensor], torch.Tensor], target: torch.Tensor, *, steps: int = 200, lr: float = 0.05,
           restarts: int = 4, z_dim: int | None = None,
           discriminator_features: Callable[[torch.Tensor], torch.Tensor] | None = None,
           feature_weight: float = 0.1, batch_size: int = 64, seed: int = 0, device: str | torch.device = "cpu",
           progress: bool = False) -> InversionResult:
    """Optimise latents so that ``G(z)`` matches each target image.

    Args:
        G: generator, z (B, D) -> images (B, C, H, W) in [-1, 1] (its weights are not changed).
        target: query images (N, C, H, W) or (C, H, W), in [-1, 1].
        steps, lr: Adam iterations and learning rate on z.
        restarts: random starts per query; the one with the lowest final objective is kept.
        z_dim: latent size (default ``G.z_dim``).
        discriminator_features: optional map images -> features (B, ...) (e.g. D's last hidden
            layer); adds AnoGAN's feature-matching term.
        feature_weight: lambda in ``(1 - lambda) * residual + lambda * feature`` (AnoGAN used 0.1);
            ignored without ``discriminator_features``.
        batch_size: latents optimised together (queries x restarts, chunked by query).
        seed: seeds the random starts (same seed, same result on the same device).
    Returns:
        :class:`InversionResult` of all queries (kept in memory: for many large queries, consume
        :func:`iter_inversions` chunk by chunk instead). The residual objective is the mean
        squared error per image.
    """
    if target.ndim == 3:
        target = target[None]
    if target.ndim != 4:
        raise ValueError(f"target must be (N, C, H, W) or (C, H, W), got {tuple(target.shape)}")
    chunks = [result for _, result in iter_inversions(
        G, target, steps=steps, lr=lr, restarts=restarts, z_dim=z_dim, discriminator_features=discriminator_features,
        feature_weight=feature_weight, batch_size=batch_size, seed=seed, device=device, progress=progress)]
    n = sum(len(c.z) for c in chunks)
    return InversionResult(z=torch.cat([c.z for c in chunks]),
                           reconstruction=torch.cat([c.reconstruction for c in chunks]),
                           residual=torch.cat([c.residual for c in chunks]),
                           losses=np.concatenate([c.losses for c in chunks], axis=1),
                           seconds_per_query=sum(c.seconds_per_query * len(c.z) for c in chunks) / n)


def _objective(fake, target, features, feat_target, weight) -> torch.Tensor:
    residual = ((fake.float() - target) ** 2).flatten(1).mean(1)
    if features is None:
        return residual
    feat = ((features(fake).float() - feat_target) ** 2).flatten(1).mean(1)
    return (1 - weight) * residual + weight * feat


def _as_residual(residual: Any) -> np.ndarray:
    r = np.asarray(residual.detach().cpu() if torch.is_tensor(residual) else residual, dtype=np.float64)
    if r.ndim != 4:
        raise ValueError(f"residual must be (N, C, H, W), got shape {r.shape}")
    return r


def smooth_residual(residual: Any, sigma: float = 0.0) -> np.ndarray:
    """The residual low-pass filtered in each image plane (Gaussian, ``sigma`` pixels; 0 = unchanged).

    Filtering the signed residual before taking its size lets pixel noise and one-pixel
    misalignments of ribs and vessels (signs alternating) cancel, while a lesion, which moves
    intensity one way over its whole extent, survives.
    """
    r = _as_residual(residual)
    if sigma < 0:
        raise ValueError(f"smoothing sigma must be >= 0, got {sigma}")
    return ndimage.gaussian_filter(r, (0, 0, sigma, sigma), mode="mirror") if sigma > 0 else r


def anomaly_maps(residual: Any, *, sigma: float = 0.0) -> np.ndarray:
    """Size of the (optionally smoothed) residual averaged over channels: (N, C, H, W) -> (N, H, W), >= 0."""
    return np.abs(smooth_residual(residual, sigma)).mean(1)


def anomaly_scores(residual: Any, *, kind: str = "mse", sigma: float = 0.0) -> np.ndarray:
    """One score per image from the (optionally smoothed) residual: ``"mse"`` (the thesis' mean squared
    residual) or ``"top1pct"`` (mean of the largest 1% |residual|, for small lesions)."""
    smoothed = smooth_residual(residual, sigma)
    flat = smoothed.reshape(len(smoothed), -1)
    if kind == "mse":
        return (flat ** 2).mean(1)
    if kind == "top1pct":
        k = max(1, int(round(flat.shape[1] * 0.01)))
        return np.sort(np.abs(flat), axis=1)[:, -k:].mean(1)
    raise ValueError(f"kind must be 'mse' or 'top1pct', not {kind!r}")


def threshold_at_specificity(normal_scores: Any, *, specificity: float = 0.95) -> float:
    """The ``specificity`` quantile of scores on normal validation images: at most 1 - specificity
    of them score strictly above it (calls are ``score > threshold``)."""
    s = np.asarray(normal_scores, dtype=np.float64).ravel()
    if s.size == 0:
        raise ValueError("no normal validation scores to choose a threshold from")
    if not 0 < specificity < 1:
        raise ValueError(f"specificity must be in (0, 1), got {specificity}")
    return float(np.quantile(s, specificity, method="higher"))


def detection_table(scores: Any, findings: Sequence[str], threshold: float, *,
                    trained_findings: Sequence[str] = (), normal_name: str = "normal") -> pd.DataFrame:
    """Detected / total per finding (the thesis' Table 6), at calls ``score > threshold``.

    scores (N,); findings (N,) the finding name of each query (``normal_name`` rows give the
    false-positive rate). Rows: each finding, then "trained findings", "untrained findings",
    "all abnormal" totals; a "trained" column marks findings a supervised model was trained on.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    f = np.asarray(findings, dtype=object).ravel()
    if len(s) != len(f):
        raise ValueError(f"{len(s)} scores but {len(f)} finding names")
    detected = s > threshold
    trained = set(trained_findings)
    rows = []
    for name in sorted(set(f) - {normal_name}):
        sel = f == name
        rows.append({"finding": name, "trained": name in trained, "n": int(sel.sum()),
                     "detected": int(detected[sel].sum())})
    table = pd.DataFrame(rows)
    totals = []
    if len(table):
        for label, sel in (("trained findings", table["trained"]), ("untrained findings", ~table["trained"]),
                           ("all abnormal", table["n"] > -1)):
            if sel.any():
                totals.append({"finding": label, "trained": None, "n": int(table.loc[sel, "n"].sum()),
                               "detected": int(table.loc[sel, "detected"].sum())})
    if (f == normal_name).any():
        sel = f == normal_name
        totals.append({"finding": f"{normal_name} (false positives)", "trained": None, "n": int(sel.sum()),
                       "detected": int(detected[sel].sum())})
    table = pd.concat([table, pd.DataFrame(totals)], ignore_index=True)
    table["rate"] = table["detected"] / table["n"].where(table["n"] > 0)
    return table.set_index("finding")


def dice(prediction: Any, mask: Any) -> float:
    """Dice = 2|A∩B| / (|A| + |B|) of two boolean arrays (1.0 when both are empty)."""
    a, b = np.asarray(prediction, dtype=bool), np.asarray(mask, dtype=bool)
    denom = a.sum() + b.sum()
    return 1.0 if denom == 0 else float(2 * np.logical_and(a, b).sum() / denom)


def localisation(maps: Any, masks: Any, *, threshold: float) -> dict[str, float]:
    """Pixel-level quality of anomaly maps against lesion masks.

    maps (N, H, W) >= 0; masks (N, H, W) or (N, 1, H, W) in {0, 1}, images with at least one
    lesion pixel. ``threshold`` binarises the maps for Dice (choose it on normal images, e.g.
    the 99th percentile of their pixel values, never on the masks).
    Returns pixel AUROC (all pixels of all images pooled), mean per-image Dice, and the threshold.
    """
    (m,), k = _lesion_images([maps], masks)
    dices = [dice(mi >= threshold, ki) for mi, ki in zip(m, k)]
    return {"pixel_auroc": auroc(k.ravel().astype(int), m.ravel()), "dice": float(np.mean(dices)),
            "dice_sd": float(np.std(dices)), "threshold": float(threshold), "n_images": len(k)}


def _lesion_images(maps: Sequence[Any], masks: Any) -> tuple[list[np.ndarray], np.ndarray]:
    """The maps and boolean masks (N', H, W) of the images whose mask has a lesion pixel."""
    k = np.asarray(masks, dtype=np.float64)
    if k.ndim == 4:
        k = k.max(1)
    out = [np.asarray(m, dtype=np.float64) for m in maps]
    for m in out:
        if m.shape != k.shape:
            raise ValueError(f"maps {m.shape} and masks {k.shape} differ in shape")
    has_lesion = k.reshape(len(k), -1).max(1) > 0
    if not has_lesion.any():
        raise ValueError("no mask has a lesion pixel; localisation needs abnormal images with masks")
    return [m[has_lesion] for m in out], k[has_lesion] > 0.5


def compare_localisation(maps_a: Any, maps_b: Any, masks: Any, *, thresholds: tuple[float, float],
                         n_boot: int = 300, seed: int = 0) -> pd.DataFrame:
    """Is map ``a`` better than map ``b`` at localising lesions? Paired bootstrap over images.

    Both maps are scored on the same images (those with a lesion); each resample draws images
    with replacement and recomputes the pooled pixel AUROC and the mean Dice of both (Dice at each
    map's own ``thresholds``). Rows "pixel AUROC" and "Dice"; columns a, b, a - b and the 95%
    percentile CI of a - b.
    """
    (a, b), k = _lesion_images([maps_a, maps_b], masks)
    dice_a = np.array([dice(m >= thresholds[0], t) for m, t in zip(a, k)])
    dice_b = np.array([dice(m >= thresholds[1], t) for m, t in zip(b, k)])

    def pixel_auroc_difference(idx):
        labels = k[idx].ravel().astype(int)
        return auroc(labels, a[idx].ravel()) - auroc(labels, b[idx].ravel())

    rows = {}
    for name, fn, value_a, value_b in (
            ("pixel AUROC", pixel_auroc_difference, auroc(k.ravel().astype(int), a.ravel()),
             auroc(k.ravel().astype(int), b.ravel())),
            ("Dice", lambda idx: dice_a[idx].mean() - dice_b[idx].mean(), dice_a.mean(), dice_b.mean())):
        ci = bootstrap_ci(fn, np.arange(len(k)), n_boot=n_boot, seed=seed)
        rows[name] = {"a": value_a, "b": value_b, "a - b": ci.estimate, "low": ci.low, "high": ci.high}
    return pd.DataFrame(rows).T


def mean_image_residual(queries: Any, normal_images: Any) -> np.ndarray:
    """Naive baseline residual: each query minus the mean normal (training) image, (N, C, H, W)."""
    q = np.asarray(queries.detach().cpu() if torch.is_tensor(queries) else queries, dtype=np.float64)
    ref = np.asarray(normal_images.detach().cpu() if torch.is_tensor(normal_images) else normal_images,
                     dtype=np.float64).mean(0, keepdims=True)
    return q - ref


def summary_row(name: str, *, labels: Any, scores: Any, loc: Mapping[str, float], seconds_per_query: float,
                reference_scores: Any = None, n_boot: int = 1000, seed: int = 0) -> dict:
    """One row of the anomaly-detection comparison table: image AUROC with its 95% bootstrap CI,
    DeLong's p against ``reference_scores`` (AnoGAN's, on the same queries), localisation, time."""
    ci = bootstrap_ci(auroc, np.asarray(labels), np.asarray(scores), n_boot=n_boot, seed=seed)
    p = float("nan") if reference_scores is None else delong_test(labels, reference_scores, scores)[2]
    return {"method": name, "image AUROC": ci.estimate, "AUROC low": ci.low, "AUROC high": ci.high,
            "DeLong p vs AnoGAN": p, "pixel AUROC": loc["pixel_auroc"], "Dice": loc["dice"],
            "s / query": seconds_per_query}


ANOGAN = "AnoGAN (PGGAN inversion)"
BASELINE = "mean normal image (baseline)"
SUPERVISED = "supervised multi-label classifier"


class UpperQuantile:
    """The exact ``q``-quantile (numpy's linear rule) of ``total`` values that arrive in batches,
    keeping only the values that can still be it: the largest ``total - floor((total - 1) q)``
    (1% of them for q = 0.99), so the normal validation maps are never all in memory."""

    def __init__(self, q: float, total: int):
        if not 0 <= q <= 1 or total < 1:
            raise ValueError(f"need 0 <= q <= 1 and total >= 1, got q={q}, total={total}")
        self.q, self.total, self.seen = float(q), int(total), 0
        self.position = (self.total - 1) * self.q
        self.keep = self.total - int(np.floor(self.position))
        self.top = np.zeros(0, np.float64)

    def add(self, values: Any) -> None:
        v = np.asarray(values, dtype=np.float64).ravel()
        self.seen += v.size
        if self.seen > self.total:
            raise ValueError(f"{self.seen} values added, {self.total} announced")
        merged = np.concatenate([self.top, v])
        self.top = np.partition(merged, len(merged) - self.keep)[len(merged) - self.keep:] \
            if len(merged) > self.keep else merged

    def value(self) -> float:
        if self.seen != self.total:
            raise ValueError(f"{self.seen} of {self.total} values added")
        top = np.sort(self.top)
        low = top[0]
        high = top[1] if len(top) > 1 else top[0]
        return float(low + (self.position - np.floor(self.position)) * (high - low))


@dataclass
class AnomalyExamples:
    """The few test queries a figure shows, kept while everything else streamed past."""

    indices: list[int]                 # positions among the test queries
    queries: torch.Tensor              # (n, C, H, W)
    reconstructions: torch.Tensor      # (n, C, H, W) AnoGAN's G(z*)
    maps: dict[str, np.ndarray]        # method -> (n, H, W) anomaly maps
    masks: torch.Tensor | None         # (n, 1, H, W) lesion masks, or None


@dataclass
class AnomalyEvaluation:
    """Everything the notebook shows for part (c)."""

    summary: pd.DataFrame          # one row per method: image AUROC, pixel AUROC, Dice, time per query
    detection: pd.DataFrame        # detected / n per finding, one column block per method
    thresholds: dict[str, float]   # image-score threshold per method (chosen on normal validation images)
    scores: dict[str, np.ndarray]  # test-query scores per method
    findings: np.ndarray           # (N,) finding name per test query
    localisation_test: pd.DataFrame | None = None  # AnoGAN - baseline, paired bootstrap CIs (needs masks)
    latents: np.ndarray | None = None              # (N, D) AnoGAN's best latent per test query
    losses: np.ndarray | None = None               # (steps, N) AnoGAN's objective along each test inversion
    examples: AnomalyExamples | None = None        # the queries kept for figures
    # extra_scores[name][method] = (normal validation scores, test scores) of a further image score
    extra_scores: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)


def _chunks(images: Any, size: int) -> Iterator[torch.Tensor]:
    """Consecutive ``images[i:i + size]`` of a tensor or a lazy sliceable stack, as float tensors."""
    for first in range(0, len(images), size):
        yield torch.as_tensor(images[first:first + size]).float()


@dataclass
class _Pass:
    """One method's reductions over a stream of residual chunks."""

    scores: list[np.ndarray] = field(default_factory=list)
    lesion_maps: list[np.ndarray] = field(default_factory=list)
    example_maps: list[np.ndarray] = field(default_factory=list)
    quantile: UpperQuantile | None = None
    extra: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, residual, *, score_kind: str, sigma: float, lesion=None, examples=None, extra_scores=None) -> None:
        maps = anomaly_maps(residual, sigma=sigma)
        self.scores.append(anomaly_scores(residual, kind=score_kind, sigma=sigma))
        for name, (kind, extra_sigma) in (extra_scores or {}).items():
            self.extra.setdefault(name, []).append(anomaly_scores(residual, kind=kind, sigma=extra_sigma))
        if self.quantile is not None:
            self.quantile.add(maps)
        if lesion is not None and lesion.any():
            self.lesion_maps.append(maps[lesion].astype(np.float32))
        if examples is not None and len(examples):
            self.example_maps.append(maps[examples])


def evaluate_anomaly_detection(G: Callable[[torch.Tensor], torch.Tensor], *, normal_val: Any, queries: Any,
                               findings: Sequence[str], masks: Any, normal_train: torch.Tensor,
                               invert_options: Mapping[str, Any], specificity: float = 0.95,
                               pixel_quantile: float = 0.99, score_kind: str = "mse", sigma: float = 0.0,
                               trained_findings: Sequence[str] = (), normal_name: str = "normal",
                               classifier_scores: tuple[Any, Any] | None = None,
                               classifier_seconds_per_query: float = float("nan"), n_boot: int = 1000,
                               n_boot_localisation: int = 300, example_indices: Sequence[int] = (),
                               extra_scores: Mapping[str, tuple[str, float]] | None = None
                               ) -> AnomalyEvaluation:
    """AnoGAN against the mean-normal-image baseline (and optionally a supervised classifier).

    Args:
        G: generator trained on normal images only, z -> images in [-1, 1].
        normal_val: normal validation images (M, C, H, W): they fix each method's image threshold
            (at ``specificity``) and pixel threshold (``pixel_quantile`` of their map values).
        queries: test images (N, C, H, W), normal and abnormal; findings: their finding names.
        masks: (N, [1,] H, W) lesion masks of the queries (all zero for normal ones); None on data
            without masks (pixel metrics are then NaN).
        normal_train: the normal training images (or their mean, (1, C, H, W)); the mean is the
            naive baseline's reference.
        invert_options: keyword arguments of :func:`invert` (steps, lr, restarts, seed, ...).
        score_kind, sigma: image score (:func:`anomaly_scores`) and residual smoothing, the same
            for every method (the baseline's residual is smoothed alike).
        classifier_scores: optional (scores on normal_val (M,), scores on queries (N,)) of a
            supervised classifier (e.g. 1 - P(normal)); it gets the same threshold rule.
        n_boot, n_boot_localisation: bootstrap resamples of the image-AUROC CIs and of the
            paired localisation test.
        example_indices: test queries whose images, reconstructions and maps are kept (figures).
        extra_scores: name -> (score kind, sigma) of further image scores computed from the same
            residuals (no second inversion), returned in ``AnomalyEvaluation.extra_scores``.

    Streams: ``normal_val``, ``queries`` and ``masks`` may be tensors or lazy stacks (``len`` and
    ``[i:j]``). Each chunk is inverted, reduced at once to scores, the maps of images with a lesion
    (pixel metrics) and the kept examples, and freed; the pixel threshold is an exact quantile
    kept from the largest validation map values only.
    """
    findings = np.asarray(findings, dtype=object)
    if len(findings) != len(queries):
        raise ValueError(f"{len(queries)} queries but {len(findings)} finding names")
    abnormal = (findings != normal_name).astype(int)
    train = normal_train.detach().cpu() if torch.is_tensor(normal_train) else normal_train
    reference = np.asarray(train, dtype=np.float64).mean(0, keepdims=True)  # the baseline's mean normal image
    options = dict(invert_options)
    chunk = queries_per_chunk(options.get("batch_size", 64), options.get("restarts", 4))
    methods = (ANOGAN, BASELINE)

    # Normal validation images: image scores and the pixel-value quantile of each method.
    val = {m: _Pass() for m in methods}
    for query, result in iter_inversions(G, normal_val, **options):
        for method, residual in ((ANOGAN, result.residual), (BASELINE, mean_image_residual(query, reference))):
            if val[method].quantile is None:
                val[method].quantile = UpperQuantile(pixel_quantile, len(normal_val) * int(np.prod(query.shape[-2:])))
            val[method].add(residual, score_kind=score_kind, sigma=sigma, extra_scores=extra_scores)
        del query, result

    # Test queries: scores, lesion-image maps, examples.
    wanted = sorted(set(int(i) for i in example_indices))
    test = {m: _Pass() for m in methods}
    lesion_masks, latents, losses, seconds = [], [], [], 0.0
    kept_queries, kept_recon, kept_masks = [], [], []
    mask_chunks = _chunks(masks, chunk) if masks is not None else None
    first = 0
    for query, result in iter_inversions(G, queries, **options):
        q = len(query)
        mask = next(mask_chunks) if mask_chunks is not None else None
        lesion = None
        if mask is not None:
            mask = mask.amax(1) if mask.ndim == 4 else mask
            lesion = mask.flatten(1).amax(1).numpy() > 0
            if lesion.any():
                lesion_masks.append(mask[torch.from_numpy(lesion)].numpy() > 0.5)
        here = np.array([i - first for i in wanted if first <= i < first + q], dtype=int)
        for method, residual in ((ANOGAN, result.residual), (BASELINE, mean_image_residual(query, reference))):
            test[method].add(residual, score_kind=score_kind, sigma=sigma, lesion=lesion, examples=here,
                             extra_scores=extra_scores)
        if len(here):
            kept_queries.append(query[here])
            kept_recon.append(result.reconstruction[here])
            if mask is not None:
                kept_masks.append(mask[here][:, None])
        latents.append(result.z.numpy())
        losses.append(result.losses)
        seconds += result.seconds_per_query * q
        first += q
        del query, result, mask

    summary, tables, thresholds, scores, pixel_thresholds, lesion_maps = [], {}, {}, {}, {}, {}
    lesion_truth = np.concatenate(lesion_masks) if lesion_masks else None
    if masks is not None and lesion_truth is None:
        raise ValueError("no mask has a lesion pixel; localisation needs abnormal images with masks")
    for method in methods:
        val_scores = np.concatenate(val[method].scores)
        test_scores = np.concatenate(test[method].scores)
        thresholds[method] = threshold_at_specificity(val_scores, specificity=specificity)
        pixel_thresholds[method] = val[method].quantile.value()
        scores[method] = test_scores
        lesion_maps[method] = np.concatenate(test[method].lesion_maps) if test[method].lesion_maps else None
        loc = (localisation(lesion_maps[method], lesion_truth, threshold=pixel_thresholds[method])
               if masks is not None else {"pixel_auroc": float("nan"), "dice": float("nan")})
        secs = seconds / len(findings) if method == ANOGAN else 0.0
        summary.append(summary_row(method, labels=abnormal, scores=test_scores, loc=loc, seconds_per_query=secs,
                                   reference_scores=None if method == ANOGAN else scores[ANOGAN], n_boot=n_boot))
        tables[method] = detection_table(test_scores, findings, thresholds[method], trained_findings=trained_findings,
                                         normal_name=normal_name)
    if classifier_scores is not None:
        val_scores, test_scores = (np.asarray(s, dtype=np.float64) for s in classifier_scores)
        thresholds[SUPERVISED] = threshold_at_specificity(val_scores, specificity=specificity)
        scores[SUPERVISED] = test_scores
        summary.append(summary_row(SUPERVISED, labels=abnormal, scores=test_scores,
                                   loc={"pixel_auroc": float("nan"), "dice": float("nan")},
                                   seconds_per_query=classifier_seconds_per_query, reference_scores=scores[ANOGAN],
                                   n_boot=n_boot))
        tables[SUPERVISED] = detection_table(test_scores, findings, thresholds[SUPERVISED],
                                             trained_findings=trained_findings, normal_name=normal_name)
    detection = pd.concat({name: t[["detected", "n", "rate"]] for name, t in tables.items()}, axis=1)
    first_table = next(iter(tables.values()))
    detection.insert(0, ("", "trained"), first_table["trained"])
    localisation_test = None
    if masks is not None:
        localisation_test = compare_localisation(lesion_maps[ANOGAN], lesion_maps[BASELINE], lesion_truth,
                                                 thresholds=(pixel_thresholds[ANOGAN], pixel_thresholds[BASELINE]),
                                                 n_boot=n_boot_localisation)
        localisation_test = localisation_test.rename(columns={"a": ANOGAN, "b": BASELINE, "a - b": "difference"})
    examples = None
    if wanted:
        examples = AnomalyExamples(indices=wanted, queries=torch.cat(kept_queries), reconstructions=torch.cat(kept_recon),
                                   maps={m: np.concatenate(test[m].example_maps) for m in methods},
                                   masks=torch.cat(kept_masks) if kept_masks else None)
    extra = {name: {m: (np.concatenate(val[m].extra[name]), np.concatenate(test[m].extra[name])) for m in methods}
             for name in (extra_scores or {})}
    return AnomalyEvaluation(summary=pd.DataFrame(summary).set_index("method"), detection=detection,
                             thresholds=thresholds, scores=scores, findings=findings,
                             localisation_test=localisation_test, latents=np.concatenate(latents),
                             losses=np.concatenate(losses, axis=1), examples=examples, extra_scores=extra)
