"""Score image translations against ground truth and against the target distribution.

Generic over studies (brain CT <-> MRI, early -> delayed PET): every function takes predicted
images, the true target images and a subject key per image, so scores can be aggregated per
slice or per subject and bootstrapped over subjects (slices of one subject are not independent).

- :func:`image_scores` — PSNR (dB), SSIM and MAE per image against the truth, with an explicit
  ``data_range`` (2.0 for images in [-1, 1]; that equals 255 on the 8-bit scale, so PSNR is
  the same number as on the original PNGs).
- :func:`summarize` — per method/direction: mean over slices or over subjects, with a
  percentile bootstrap CI resampling subjects.
- :func:`paired_difference` — difference of a score between two methods on the same images,
  with a subject bootstrap CI (e.g. ResNet vs U-Net SSIM, or model vs identity baseline).
- :func:`fid_with_subject_ci` — FID between translated and real target images with a subject
  bootstrap CI (resampling subjects of both sets independently).
- :func:`rank_methods` / :func:`rankings_agree` — does FID order the methods as the truth does?
- :func:`worst_cases` — the images with the largest error against the truth.

Identity baseline: score the *source* image as the prediction (``method="identity"``); a
translation that does not beat it has not learned the mapping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from medgan import metrics
from medgan.metrics import features as feats
from medgan.metrics.bootstrap import BootstrapCI

__all__ = ["HIGHER_IS_BETTER", "TranslationEvaluation", "choose_extractor", "evaluate_translations", "fid_with_subject_ci",
           "paired_differences", "image_scores", "paired_difference", "rank_methods",
           "rankings_agree", "summarize", "worst_cases"]

# direction of each score: True if larger is better
HIGHER_IS_BETTER = {"psnr_db": True, "ssim": True, "mae": False, "fid": False}
IMAGE_METRICS = ("psnr_db", "ssim", "mae")


def _as_images(x: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).detach().cpu().double()
    if t.ndim != 4:
        raise ValueError(f"{name}: expected (N, C, H, W) images, got shape {tuple(t.shape)}")
    return t


def image_scores(pred: Any, truth: Any, *, subjects: Sequence[str], data_range: float, method: str = "model",
                 direction: str = "", ssim_win_size: int = 11) -> pd.DataFrame:
    """One row per image: PSNR, SSIM and MAE of ``pred`` against ``truth``.

    Args:
        pred, truth: (N, C, H, W) images on the same intensity scale (e.g. [-1, 1]).
        subjects: N subject keys (pseudonymous), used for subject-level aggregation.
        data_range: max - min of the intensity scale (2.0 for [-1, 1]; HU window width; SUV ceiling).
            Never inferred from the data: the same images give different PSNRs for different ranges.
        method, direction: labels copied into every row (e.g. "resnet_9blocks", "CT->MRI").
        ssim_win_size: Gaussian window of SSIM (11 as Wang et al.; use 7 for images under 11 px).

    Returns:
        DataFrame with columns method, direction, index (position in the input), subject,
        psnr_db (dB; +inf for identical images), ssim (in [-1, 1]), mae (intensity units).
    """
    p, t = _as_images(pred, "pred"), _as_images(truth, "truth")
    if p.shape != t.shape:
        raise ValueError(f"pred has shape {tuple(p.shape)}, truth {tuple(t.shape)}")
    subjects = list(subjects)
    if len(subjects) != len(p):
        raise ValueError(f"subjects: {len(subjects)} keys for {len(p)} images")
    return pd.DataFrame({
        "method": method, "direction": direction, "index": np.arange(len(p)), "subject": subjects,
        "psnr_db": metrics.psnr(p, t, data_range, reduction="none"),
        "ssim": metrics.ssim(p, t, data_range, reduction="none", win_size=ssim_win_size),
        "mae": (p - t).abs().flatten(1).mean(1).numpy(),
    })


def _subject_means(rows: pd.DataFrame, metric: str) -> pd.Series:
    return rows.groupby("subject", sort=True)[metric].mean()


def summarize(per_image: pd.DataFrame, *, metrics_: Iterable[str] = IMAGE_METRICS, level: str = "subject",
              n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Mean of each score per (method, direction), with a bootstrap CI over subjects.

    Args:
        per_image: rows of :func:`image_scores` (several methods/directions concatenated).
        metrics_: score columns to summarise.
        level: ``"subject"`` — average slices within each subject, then subjects (each subject
            weighs the same); ``"slice"`` — average all slices (subjects with more slices weigh more).
            The CI always resamples subjects (slices of one subject are correlated), so with
            ``"slice"`` each resample averages the slices of the drawn subjects.
        n_boot, alpha, seed: bootstrap resamples, 1 - coverage, numpy seed.

    Returns:
        Long DataFrame: method, direction, metric, level, estimate, low, high, n_subjects, n_images.
    """
    if level not in ("subject", "slice"):
        raise ValueError(f"level must be 'subject' or 'slice', not {level!r}")
    out = []
    for (method, direction), rows in per_image.groupby(["method", "direction"], sort=False):
        subjects = np.array(sorted(rows["subject"].unique()))
        for metric in metrics_:
            finite = rows[np.isfinite(rows[metric].to_numpy(dtype=float))]
            if level == "subject":
                values = _subject_means(finite, metric).to_numpy()
                ci = metrics.bootstrap_ci(np.mean, values, n_boot=n_boot, alpha=alpha, seed=seed)
            else:
                sums = finite.groupby("subject")[metric].sum().reindex(subjects, fill_value=0.0).to_numpy()
                counts = finite.groupby("subject")[metric].size().reindex(subjects, fill_value=0).to_numpy()
                ci = metrics.bootstrap_ci(lambda s, c: float(s.sum() / c.sum()), sums, counts,
                                          n_boot=n_boot, alpha=alpha, seed=seed)
            out.append({"method": method, "direction": direction, "metric": metric, "level": level,
                        "estimate": ci.estimate, "low": ci.low, "high": ci.high,
                        "n_subjects": len(subjects), "n_images": len(finite)})
    return pd.DataFrame(out)


def paired_difference(per_image: pd.DataFrame, *, metric: str, method_a: str, method_b: str, direction: str,
                      n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> BootstrapCI:
    """Mean over subjects of (score of ``method_a`` - score of ``method_b``) on the same images, with CI.

    Both methods must have scored the same (subject, index) images in ``direction``. A CI that
    excludes 0 says the difference is not explained by which subjects happened to be tested.
    """
    rows = per_image[per_image["direction"] == direction]
    a = rows[rows["method"] == method_a].set_index(["subject", "index"])[metric]
    b = rows[rows["method"] == method_b].set_index(["subject", "index"])[metric]
    if a.empty or b.empty:
        raise ValueError(f"no rows for method {method_a!r} or {method_b!r} in direction {direction!r}")
    if set(a.index) != set(b.index):
        raise ValueError(f"{method_a!r} and {method_b!r} scored different images in {direction!r}")
    diff = (a - b.reindex(a.index)).replace([np.inf, -np.inf], np.nan).dropna()
    per_subject = diff.groupby(level="subject").mean().to_numpy()
    return metrics.bootstrap_ci(np.mean, per_subject, n_boot=n_boot, alpha=alpha, seed=seed)


def paired_differences(per_image: pd.DataFrame, *, pairs: Sequence[tuple[str, str]], metrics_: Sequence[str],
                       directions: Sequence[str], n_boot: int = 1000, alpha: float = 0.05,
                       seed: int = 0) -> pd.DataFrame:
    """:func:`paired_difference` for each (method_a, method_b) pair, score and direction, as a table."""
    rows = []
    for direction in directions:
        for a, b in pairs:
            for metric in metrics_:
                ci = paired_difference(per_image, metric=metric, method_a=a, method_b=b, direction=direction,
                                       n_boot=n_boot, alpha=alpha, seed=seed)
                better = ci.low > 0 if HIGHER_IS_BETTER[metric] else ci.high < 0
                worse = ci.high < 0 if HIGHER_IS_BETTER[metric] else ci.low > 0
                rows.append({"direction": direction, "comparison": f"{a} − {b}", "metric": metric,
                             "difference": ci.estimate, "low": ci.low, "high": ci.high,
                             "verdict": f"{a} better" if better else f"{b} better" if worse else "no clear difference"})
    return pd.DataFrame(rows)


def choose_extractor(*, train_images: Any, train_labels: Any, channels: int, domain_cnn: Mapping[str, Any],
                     prefer: str = "auto", device: str | None = None,
                     run_dir: str | os.PathLike | None = None) -> torch.nn.Module:
    """The FID feature network: ImageNet/FID InceptionV3 when its local weights exist, else a domain CNN.

    Args:
        train_images, train_labels: (N, C, H, W) in [-1, 1] and (N,) int labels to train the
            in-domain ``domain_cnn`` on (e.g. modality); unused when Inception is chosen.
        channels: image channels. domain_cnn: keyword options of ``train_domain_cnn``.
        prefer: "auto" (Inception if ``$MEDGAN_INCEPTION_WEIGHTS`` points at a file), "inception_v3"
            (required: raises ``WeightsNotFoundError`` without weights) or "domain_cnn".
        run_dir: where the domain CNN trains through the engine (a finished run is reloaded);
            ``None`` trains it afresh each call.

    Returns a module with ``.name`` (put it beside every number).
    """
    if prefer not in ("auto", "inception_v3", "domain_cnn"):
        raise ValueError(f"prefer must be 'auto', 'inception_v3' or 'domain_cnn', not {prefer!r}")
    weights = os.environ.get(feats.INCEPTION_ENV)
    if prefer == "inception_v3" or (prefer == "auto" and weights and os.path.isfile(weights)):
        return feats.get_extractor("inception_v3")
    return feats.train_domain_cnn(train_images, train_labels, channels=channels, device=device, run_dir=run_dir,
                                  **dict(domain_cnn))


def fid_with_subject_ci(pred_features: Any, pred_subjects: Sequence[str], real_features: Any,
                        real_subjects: Sequence[str], *, n_boot: int = 200, alpha: float = 0.05,
                        seed: int = 0) -> BootstrapCI:
    """Fréchet distance between translated-image and real-image features, with a subject bootstrap CI.

    Args:
        pred_features: (N, D) features of translated images; pred_subjects: N subject keys.
        real_features: (M, D) features of real target-domain images; real_subjects: M keys.
        n_boot, alpha, seed: each resample draws subjects with replacement, independently in
            both sets, and takes all their images. Resampling duplicates images, which biases FID
            upwards, so read the interval as run-to-run spread, not as an unbiased CI.

    Returns:
        :class:`~medgan.metrics.BootstrapCI` (estimate = FID on all images).
    """
    pf, rf = np.asarray(pred_features, dtype=np.float64), np.asarray(real_features, dtype=np.float64)
    ps, rs = np.asarray(list(pred_subjects)), np.asarray(list(real_subjects))
    if len(ps) != len(pf) or len(rs) != len(rf):
        raise ValueError(f"subject keys ({len(ps)}, {len(rs)}) do not match feature rows ({len(pf)}, {len(rf)})")
    estimate = metrics.frechet_distance(pf, rf)
    groups_p = [np.flatnonzero(ps == s) for s in np.unique(ps)]
    groups_r = [np.flatnonzero(rs == s) for s in np.unique(rs)]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        ip = np.concatenate([groups_p[i] for i in rng.integers(len(groups_p), size=len(groups_p))])
        ir = np.concatenate([groups_r[i] for i in rng.integers(len(groups_r), size=len(groups_r))])
        values.append(metrics.frechet_distance(pf[ip], rf[ir]))
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)]) if values else (np.nan, np.nan)
    return BootstrapCI(estimate=float(estimate), low=float(low), high=float(high), alpha=alpha, n_boot=n_boot,
                       n_valid=len(values))


def rank_methods(summary: pd.DataFrame, *, metric: str, direction: str, exclude: Sequence[str] = ()) -> list[str]:
    """Methods ordered best first by ``metric`` in ``direction`` (rows of :func:`summarize` or alike:
    columns method, direction, metric, estimate)."""
    rows = summary[(summary["metric"] == metric) & (summary["direction"] == direction)
                   & ~summary["method"].isin(list(exclude))]
    if rows.empty:
        raise ValueError(f"no '{metric}' rows for direction {direction!r}")
    return list(rows.sort_values("estimate", ascending=not HIGHER_IS_BETTER[metric])["method"])


def rankings_agree(summary: pd.DataFrame, *, metrics_: Sequence[str], directions: Sequence[str],
                   exclude: Sequence[str] = ("identity",)) -> pd.DataFrame:
    """Per direction: the ranking by each metric and whether all metrics give the same order."""
    out = []
    for direction in directions:
        orders = {m: rank_methods(summary, metric=m, direction=direction, exclude=exclude) for m in metrics_}
        out.append({"direction": direction, **{f"order by {m}": " > ".join(o) for m, o in orders.items()},
                    "same order": len({tuple(o) for o in orders.values()}) == 1})
    return pd.DataFrame(out)


def worst_cases(per_image: pd.DataFrame, *, k: int = 8, metric: str = "ssim", method: str | None = None,
                direction: str | None = None) -> pd.DataFrame:
    """The ``k`` rows with the worst ``metric`` (lowest SSIM/PSNR, highest MAE), worst first."""
    rows = per_image
    if method is not None:
        rows = rows[rows["method"] == method]
    if direction is not None:
        rows = rows[rows["direction"] == direction]
    return rows.sort_values(metric, ascending=HIGHER_IS_BETTER[metric]).head(k)


@dataclass
class TranslationEvaluation:
    """Everything :func:`evaluate_translations` scored.

    per_image: one row per (method, direction, test image) with psnr_db/ssim/mae against the
        truth (empty when no direction has truth). summary: :func:`summarize` rows plus one
        ``metric == "fid"`` row per (method, direction), all with estimate/low/high.
    extractor: name of the feature network every FID was computed in.
    """

    per_image: pd.DataFrame
    summary: pd.DataFrame
    extractor: str

    def table(self, metric: str) -> pd.DataFrame:
        """Estimates of ``metric`` as a method x direction table, formatted "est [low, high]"."""
        rows = self.summary[self.summary["metric"] == metric]
        cells = rows.assign(value=[f"{e:.4g} [{lo:.4g}, {hi:.4g}]" for e, lo, hi in
                                   zip(rows["estimate"], rows["low"], rows["high"])])
        return cells.pivot(index="method", columns="direction", values="value").reindex(
            list(dict.fromkeys(rows["method"])))


def evaluate_translations(predictions: Mapping[str, Mapping[str, Any]], *, sources: Mapping[str, Any],
                          subjects: Mapping[str, Sequence[str]], truths: Mapping[str, Any | None],
                          real_targets: Mapping[str, tuple[Any, Sequence[str]]],
                          features: Callable[[Any], np.ndarray] | torch.nn.Module, data_range: float,
                          extractor_name: str | None = None, feature_batch_size: int = 64,
                          fid_references: Mapping[str, Mapping[str, tuple[Any, Sequence[str]]]] | None = None,
                          ssim_win_size: int = 11, n_boot: int = 1000, fid_n_boot: int = 200, alpha: float = 0.05,
                          seed: int = 0, level: str = "subject",
                          cache_dir: str | os.PathLike | None = None) -> TranslationEvaluation:
    """Score every method's translations against the truth and against the target distribution.

    Args:
        predictions: method -> direction -> translated images (N, C, H, W), in the order of
            ``sources[direction]``. The identity baseline (``method="identity"``: the source image
            itself as the prediction) is added for every direction.
        sources: direction -> source images (N, C, H, W). subjects: direction -> N subject keys.
        truths: direction -> true target images (N, C, H, W), or None where there is no truth
            (real unpaired data): then only FID is computed for that direction.
        real_targets: direction -> (real target-domain images (M, C, H, W), M subject keys), the
            FID reference.
        features: a feature extractor module (``medgan.metrics.features``; run with
            ``extract_features`` in batches of ``feature_batch_size``), or any callable
            images -> (n, D) features. extractor_name: shown beside every FID (default: ``.name``).
        fid_references: optional extra FID-only rows, name -> direction -> (images, subjects),
            e.g. real train images of the target domain (how low FID gets between real sets).
        data_range, ssim_win_size: see :func:`image_scores`.
        n_boot, fid_n_boot, alpha, seed, level: see :func:`summarize` / :func:`fid_with_subject_ci`.
        cache_dir: with a feature extractor module, the feature cache folder
            (``extract_features(..., cache_dir=...)``): features of images already seen by the same
            extractor weights (the real reference sets, across re-runs) are read, not recomputed.
            None: compute every time.
    """
    if isinstance(features, torch.nn.Module):
        module = features
        extractor_name = extractor_name or getattr(module, "name", type(module).__name__)
        cache = Path(cache_dir) if cache_dir is not None else None

        def features(images):  # noqa: F811 - the module, run in batches
            return feats.extract_features(module, images, batch_size=feature_batch_size, cache_dir=cache)[0]
    extractor_name = extractor_name or getattr(features, "name", "features")
    methods = {**predictions, "identity": dict(sources)}
    per_image = []
    for method, by_direction in methods.items():
        for direction, pred in by_direction.items():
            if truths.get(direction) is not None:
                per_image.append(image_scores(pred, truths[direction], subjects=subjects[direction],
                                              data_range=data_range, method=method, direction=direction,
                                              ssim_win_size=ssim_win_size))
    per_image_df = pd.concat(per_image, ignore_index=True) if per_image else pd.DataFrame(
        columns=["method", "direction", "index", "subject", *IMAGE_METRICS])
    summary = summarize(per_image_df, n_boot=n_boot, alpha=alpha, seed=seed, level=level) if per_image else pd.DataFrame()
    real_features = {d: (features(images), list(subs)) for d, (images, subs) in real_targets.items()}
    fid_rows = []
    candidates = [(m, d, images, subjects[d]) for m, by_d in methods.items() for d, images in by_d.items()]
    for name, by_d in (fid_references or {}).items():
        candidates += [(name, d, images, subs) for d, (images, subs) in by_d.items()]
    for method, direction, images, subs in candidates:
        if direction not in real_features:
            continue
        ref, ref_subjects = real_features[direction]
        ci = fid_with_subject_ci(features(images), subs, ref, ref_subjects, n_boot=fid_n_boot, alpha=alpha, seed=seed)
        fid_rows.append({"method": method, "direction": direction, "metric": "fid", "level": "distribution",
                         "estimate": ci.estimate, "low": ci.low, "high": ci.high,
                         "n_subjects": len(set(subs)), "n_images": len(images)})
    summary = pd.concat([summary, pd.DataFrame(fid_rows)], ignore_index=True)
    summary["extractor"] = np.where(summary["metric"] == "fid", extractor_name, "")
    return TranslationEvaluation(per_image=per_image_df, summary=summary, extractor=extractor_name)
