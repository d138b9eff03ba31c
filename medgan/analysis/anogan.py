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
and targets; nothing here trains or loads models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from torch import nn
from tqdm.auto import tqdm

from medgan.metrics.bootstrap import bootstrap_ci
from medgan.metrics.roc import auroc, delong_test

__all__ = ["InversionResult", "invert", "smooth_residual", "anomaly_maps", "anomaly_scores", "threshold_at_specificity",
           "detection_table", "localisation", "compare_localisation", "dice", "mean_image_residual", "AnomalyEvaluation",
           "evaluate_anomaly_detection", "ANOGAN", "BASELINE"]


@dataclass
class InversionResult:
    z: torch.Tensor               # (N, D) best latent per query
    reconstruction: torch.Tensor  # (N, C, H, W) G(z) in [-1, 1]
    residual: torch.Tensor        # (N, C, H, W) query - reconstruction (signed)
    losses: np.ndarray            # (steps, N) objective of the chosen restart at every step
    seconds_per_query: float      # wall time / N (all restarts included)


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
        batch_size: latents optimised together (queries x restarts are chunked by this).
        seed: seeds the random starts (same seed, same result on the same device).
    Returns:
        :class:`InversionResult`. The residual objective is the mean squared error per image.
    """
    if target.ndim == 3:
        target = target[None]
    if target.ndim != 4:
        raise ValueError(f"target must be (N, C, H, W) or (C, H, W), got {tuple(target.shape)}")
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be >= 1, got {steps} and {restarts}")
    z_dim = z_dim or getattr(G, "z_dim", None)
    if z_dim is None:
        raise ValueError("z_dim is needed (the generator has no z_dim attribute)")
    device = torch.device(device)
    n = target.shape[0]
    gen = torch.Generator().manual_seed(seed)
    z_init = torch.randn(n * restarts, z_dim, generator=gen)
    targets = target.to(device, torch.float32).repeat_interleave(restarts, dim=0)

    modules = [m for m in (G, discriminator_features) if isinstance(m, nn.Module)]
    saved = [(p, p.requires_grad) for m in modules for p in m.parameters()]
    modes = [(m, m.training) for m in modules]
    for p, _ in saved:
        p.requires_grad_(False)
    for m in modules:
        m.eval()
    t0 = time.perf_counter()
    z_all, loss_all = [], []
    try:
        chunks = range(0, n * restarts, batch_size)
        for start in tqdm(chunks, disable=not progress, desc="invert"):
            tgt = targets[start:start + batch_size]
            z = z_init[start:start + batch_size].clone().to(device).requires_grad_(True)
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
                final = _objective(G(z), tgt, discriminator_features, feat_target, feature_weight).cpu()
            history[-1] = final  # the objective at the latent we return
            z_all.append(z.detach().cpu())
            loss_all.append(torch.stack(history))
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.train(mode)
    z_all = torch.cat(z_all).view(n, restarts, z_dim)
    losses = torch.cat(loss_all, dim=1).view(steps, n, restarts)
    best = losses[-1].argmin(1)
    z_best = z_all[torch.arange(n), best]
    with torch.no_grad():
        # The objective used G's raw output; the reconstruction shown and subtracted is an image in [-1, 1].
        recon = torch.cat([G(z_best[i:i + batch_size].to(device)).float().cpu().clamp(-1, 1)
                           for i in range(0, n, batch_size)])
    seconds = time.perf_counter() - t0
    return InversionResult(z=z_best, reconstruction=recon, residual=target.float().cpu() - recon,
                           losses=losses[:, torch.arange(n), best].numpy(), seconds_per_query=seconds / n)


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


@dataclass
class AnomalyEvaluation:
    """Everything the notebook shows for part (c)."""

    summary: pd.DataFrame          # one row per method: image AUROC, pixel AUROC, Dice, time per query
    detection: pd.DataFrame        # detected / n per finding, one column block per method
    thresholds: dict[str, float]   # image-score threshold per method (chosen on normal validation images)
    scores: dict[str, np.ndarray]  # test-query scores per method
    maps: dict[str, np.ndarray]    # test-query anomaly maps per method (N, H, W)
    inversion: InversionResult     # AnoGAN inversion of the test queries
    findings: np.ndarray           # (N,) finding name per test query
    localisation_test: pd.DataFrame | None = None  # AnoGAN - baseline, paired bootstrap CIs (needs masks)


def evaluate_anomaly_detection(G: Callable[[torch.Tensor], torch.Tensor], *, normal_val: torch.Tensor,
                               queries: torch.Tensor, findings: Sequence[str], masks: Any,
                               normal_train: torch.Tensor, invert_options: Mapping[str, Any],
                               specificity: float = 0.95, pixel_quantile: float = 0.99, score_kind: str = "mse",
                               sigma: float = 0.0, trained_findings: Sequence[str] = (), normal_name: str = "normal",
                               classifier_scores: tuple[Any, Any] | None = None,
                               classifier_seconds_per_query: float = float("nan")) -> AnomalyEvaluation:
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
    """
    findings = np.asarray(findings, dtype=object)
    abnormal = (findings != normal_name).astype(int)
    val_inv = invert(G, normal_val, **invert_options)
    test_inv = invert(G, queries, **invert_options)
    residuals = {ANOGAN: (val_inv.residual, test_inv.residual, test_inv.seconds_per_query),
                 BASELINE: (mean_image_residual(normal_val, normal_train), mean_image_residual(queries, normal_train),
                            0.0)}
    summary, tables, thresholds, scores, maps, pixel_thresholds = [], {}, {}, {}, {}, {}
    for name, (val_res, test_res, secs) in residuals.items():
        val_scores = anomaly_scores(val_res, kind=score_kind, sigma=sigma)
        test_scores = anomaly_scores(test_res, kind=score_kind, sigma=sigma)
        thresholds[name] = threshold_at_specificity(val_scores, specificity=specificity)
        pixel_thresholds[name] = pixel_threshold = float(np.quantile(anomaly_maps(val_res, sigma=sigma), pixel_quantile))
        maps[name], scores[name] = anomaly_maps(test_res, sigma=sigma), test_scores
        loc = (localisation(maps[name], masks, threshold=pixel_threshold) if masks is not None
               else {"pixel_auroc": float("nan"), "dice": float("nan")})
        summary.append(summary_row(name, labels=abnormal, scores=test_scores, loc=loc, seconds_per_query=secs,
                                   reference_scores=None if name == ANOGAN else scores[ANOGAN]))
        tables[name] = detection_table(test_scores, findings, thresholds[name], trained_findings=trained_findings,
                                       normal_name=normal_name)
    if classifier_scores is not None:
        name = "supervised multi-label classifier"
        val_scores, test_scores = (np.asarray(s, dtype=np.float64) for s in classifier_scores)
        thresholds[name] = threshold_at_specificity(val_scores, specificity=specificity)
        scores[name] = test_scores
        summary.append(summary_row(name, labels=abnormal, scores=test_scores,
                                   loc={"pixel_auroc": float("nan"), "dice": float("nan")},
                                   seconds_per_query=classifier_seconds_per_query, reference_scores=scores[ANOGAN]))
        tables[name] = detection_table(test_scores, findings, thresholds[name], trained_findings=trained_findings,
                                       normal_name=normal_name)
    detection = pd.concat({name: t[["detected", "n", "rate"]] for name, t in tables.items()}, axis=1)
    first = next(iter(tables.values()))
    detection.insert(0, ("", "trained"), first["trained"])
    localisation_test = None
    if masks is not None:
        localisation_test = compare_localisation(maps[ANOGAN], maps[BASELINE], masks,
                                                 thresholds=(pixel_thresholds[ANOGAN], pixel_thresholds[BASELINE]))
        localisation_test = localisation_test.rename(columns={"a": ANOGAN, "b": BASELINE, "a - b": "difference"})
    return AnomalyEvaluation(summary=pd.DataFrame(summary).set_index("method"), detection=detection,
                             thresholds=thresholds, scores=scores, maps=maps, inversion=test_inv, findings=findings,
                             localisation_test=localisation_test)

