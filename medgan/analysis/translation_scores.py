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
- :class:`TranslationScorer` — all of the above fed batch by batch: each batch of translations is
  reduced at once to per-image scores and features (plus the few worst images a figure shows), so
  scoring a test set of any size keeps only numbers in memory. :func:`evaluate_translations` is its
  form for image sets already in memory.

Identity baseline: score the *source* image as the prediction (``method="identity"``); a
translation that does not beat it has not learned the mapping.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from medgan import metrics
from medgan.data.base import iter_batches
from medgan.metrics import features as feats
from medgan.metrics.bootstrap import BootstrapCI

__all__ = ["HIGHER_IS_BETTER", "TranslationEvaluation", "TranslationScorer", "WorstImages", "choose_extractor",
           "dataset_features", "evaluate_translations", "uses_inception", "fid_with_subject_ci", "paired_differences", "image_scores", "paired_difference",
           "rank_methods", "rankings_agree", "summarize", "worst_cases"]

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


def uses_inception(prefer: str = "auto") -> bool:
    """Whether :func:`choose_extractor` picks InceptionV3 for ``prefer`` (then no training images are needed)."""
    if prefer not in ("auto", "inception_v3", "domain_cnn"):
        raise ValueError(f"prefer must be 'auto', 'inception_v3' or 'domain_cnn', not {prefer!r}")
    weights = os.environ.get(feats.INCEPTION_ENV)
    return prefer == "inception_v3" or bool(prefer == "auto" and weights and os.path.isfile(weights))


def choose_extractor(*, train_images: Any, train_labels: Any, channels: int, domain_cnn: Mapping[str, Any],
                     prefer: str = "auto", device: str | None = None,
                     run_dir: str | os.PathLike | None = None) -> torch.nn.Module:
    """The FID feature network: ImageNet/FID InceptionV3 when its local weights exist, else a domain CNN.

    Args:
        train_images, train_labels: (N, C, H, W) in [-1, 1] and (N,) int labels to train the
            in-domain ``domain_cnn`` on (e.g. modality); or a map-style dataset read per batch
            (a loader, :class:`~medgan.metrics.features.LabelledItems` / ``ConcatLabelledItems``)
            with ``train_labels`` None (see ``train_domain_cnn``); unused (may be None) when
            Inception is chosen (:func:`uses_inception`).
        channels: image channels. domain_cnn: keyword options of ``train_domain_cnn``.
        prefer: "auto" (Inception if ``$MEDGAN_INCEPTION_WEIGHTS`` points at a file), "inception_v3"
            (required: raises ``WeightsNotFoundError`` without weights) or "domain_cnn".
        run_dir: where the domain CNN trains through the engine (a finished run is reloaded);
            ``None`` trains it afresh each call.

    Returns a module with ``.name`` (put it beside every number).
    """
    if uses_inception(prefer):
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
class WorstImages:
    """The images of one method and direction with the worst score against the truth, worst first.

    ``rows``: their :func:`image_scores` rows (index = position in the source order, subject, scores);
    ``source``, ``prediction``, ``truth``: (k, C, H, W) images (``source`` None when not given).
    """

    rows: pd.DataFrame
    source: torch.Tensor | None
    prediction: torch.Tensor
    truth: torch.Tensor


@dataclass
class TranslationEvaluation:
    """Everything :func:`evaluate_translations` / :meth:`TranslationScorer.evaluate` scored.

    per_image: one row per (method, direction, test image) with psnr_db/ssim/mae against the
        truth (empty when no direction has truth). summary: :func:`summarize` rows plus one
        ``metric == "fid"`` row per (method, direction), all with estimate/low/high.
    extractor: name of the feature network every FID was computed in.
    worst: (method, direction) -> :class:`WorstImages` (only from a scorer with ``keep_worst``).
    """

    per_image: pd.DataFrame
    summary: pd.DataFrame
    extractor: str
    worst: dict[tuple[str, str], WorstImages] = field(default_factory=dict)

    def table(self, metric: str) -> pd.DataFrame:
        """Estimates of ``metric`` as a method x direction table, formatted "est [low, high]"."""
        rows = self.summary[self.summary["metric"] == metric]
        cells = rows.assign(value=[f"{e:.4g} [{lo:.4g}, {hi:.4g}]" for e, lo, hi in
                                   zip(rows["estimate"], rows["low"], rows["high"])])
        return cells.pivot(index="method", columns="direction", values="value").reindex(
            list(dict.fromkeys(rows["method"])))


def module_features(module: torch.nn.Module, images: Any) -> np.ndarray:
    """Features (N, D) float32 of one batch of images through a feature network (eval mode, no gradients)."""
    device = next(module.parameters()).device
    module.eval()
    with torch.no_grad():
        out = module(torch.as_tensor(images).to(device=device, dtype=torch.float32))
    features = out[0] if isinstance(out, (tuple, list)) else out
    return features.float().cpu().numpy()


class TranslationScorer:
    """Scores translations batch by batch, keeping per-image scores and features, never the images.

    Feed it with :meth:`add` (a batch of one method's translations in one direction, with the
    truth where it exists), :meth:`add_features` (features of an FID-only set, e.g. real train
    images) and :meth:`set_reference` (features of the real target images each FID compares with);
    then :meth:`evaluate`. Each batch is reduced when it arrives: PSNR/SSIM/MAE per image against
    the truth, and its features; only the ``keep_worst`` worst images of each method and direction
    (by ``worst_metric``) are kept, copied out of their batch.

    Args:
        features: a feature network (``medgan.metrics.features``: forward returns (features,
            logits)) or any callable images -> (n, D) features.
        data_range, ssim_win_size: see :func:`image_scores`.
        extractor_name: shown beside every FID (default: the network's ``.name``).
        keep_worst, worst_metric: how many worst images per method and direction to keep, by which score.
    """

    def __init__(self, features: Callable[[Any], np.ndarray] | torch.nn.Module, *, data_range: float,
                 ssim_win_size: int = 11, extractor_name: str | None = None, keep_worst: int = 0,
                 worst_metric: str = "ssim"):
        if isinstance(features, torch.nn.Module):
            extractor_name = extractor_name or getattr(features, "name", type(features).__name__)
            features = functools.partial(module_features, features)
        self.extractor = extractor_name or getattr(features, "name", "features")
        self._features = features
        self.data_range, self.ssim_win_size = float(data_range), int(ssim_win_size)
        if worst_metric not in HIGHER_IS_BETTER or worst_metric == "fid":
            raise ValueError(f"worst_metric must be one of {list(IMAGE_METRICS)}, not {worst_metric!r}")
        self.keep_worst, self.worst_metric = int(keep_worst), worst_metric
        self._methods: dict[str, None] = {}     # first-seen order of methods and directions (the tables')
        self._directions: dict[str, None] = {}
        self._scores: dict[tuple[str, str], list[pd.DataFrame]] = {}
        self._feats: dict[tuple[str, str], list[np.ndarray]] = {}
        self._subjects: dict[tuple[str, str], list[str]] = {}
        self._count: dict[tuple[str, str], int] = {}
        self._worst: dict[tuple[str, str], list[tuple[float, int, Any, torch.Tensor, torch.Tensor]]] = {}
        self._references: dict[str, tuple[np.ndarray, list[str]]] = {}

    def features_of(self, images: Any) -> np.ndarray:
        """The scorer's features of one batch of images."""
        return np.asarray(self._features(images), dtype=np.float32)

    def _key(self, method: str, direction: str) -> tuple[str, str]:
        self._methods.setdefault(method)
        self._directions.setdefault(direction)
        return method, direction

    def add(self, method: str, direction: str, prediction: Any, *, subjects: Sequence[str], truth: Any = None,
            source: Any = None) -> None:
        """One batch: ``method``'s translations (n, C, H, W) in ``direction``, their ``subjects``, and (where
        it exists) the ``truth``; ``source`` only for the worst-image figures. Batches of a (method,
        direction) arrive in the source order (``index`` counts on across them)."""
        key = self._key(method, direction)
        subjects = list(subjects)
        start = self._count.get(key, 0)
        if truth is not None:
            rows = image_scores(prediction, truth, subjects=subjects, data_range=self.data_range, method=method,
                                direction=direction, ssim_win_size=self.ssim_win_size)
            rows["index"] += start
            self._scores.setdefault(key, []).append(rows)
            if self.keep_worst > 0:
                self._keep_worst(key, rows, prediction, truth, source)
        self._feats.setdefault(key, []).append(self.features_of(prediction))
        self._subjects.setdefault(key, []).extend(subjects)
        self._count[key] = start + len(subjects)

    def _keep_worst(self, key, rows: pd.DataFrame, prediction, truth, source) -> None:
        values = rows[self.worst_metric].to_numpy(dtype=float)
        # badness: larger is worse; a NaN score is never among the worst shown
        badness = np.nan_to_num(-values if HIGHER_IS_BETTER[self.worst_metric] else values, nan=-np.inf)
        kept = self._worst.setdefault(key, [])
        for i in np.argsort(-badness, kind="stable")[: self.keep_worst]:
            kept.append((float(badness[i]), int(rows["index"].iloc[i]),
                         None if source is None else torch.as_tensor(source[i]).detach().cpu().clone(),
                         torch.as_tensor(prediction[i]).detach().cpu().clone(),
                         torch.as_tensor(truth[i]).detach().cpu().clone()))
        kept.sort(key=lambda item: (-item[0], item[1]))
        del kept[self.keep_worst:]

    def add_features(self, method: str, direction: str, features: Any, subjects: Sequence[str]) -> None:
        """Features of an image set that is scored by FID only (no truth), e.g. real train images."""
        key = self._key(method, direction)
        self._feats.setdefault(key, []).append(np.asarray(features, dtype=np.float32))
        self._subjects.setdefault(key, []).extend(subjects)
        self._count[key] = self._count.get(key, 0) + len(features)

    def set_reference(self, direction: str, features: Any, subjects: Sequence[str]) -> None:
        """Features of the real target-domain images FID compares ``direction``'s translations with."""
        self._references[direction] = (np.asarray(features, dtype=np.float64), list(subjects))

    def evaluate(self, *, n_boot: int = 1000, fid_n_boot: int = 200, alpha: float = 0.05, seed: int = 0,
                 level: str = "subject") -> TranslationEvaluation:
        """Summaries with subject-bootstrap CIs (see :func:`summarize`, :func:`fid_with_subject_ci`)."""
        order = [(m, d) for m in self._methods for d in self._directions]
        per_image = [pd.concat(self._scores[k], ignore_index=True) for k in order if k in self._scores]
        per_image_df = pd.concat(per_image, ignore_index=True) if per_image else pd.DataFrame(
            columns=["method", "direction", "index", "subject", *IMAGE_METRICS])
        summary = summarize(per_image_df, n_boot=n_boot, alpha=alpha, seed=seed, level=level) \
            if per_image else pd.DataFrame()
        fid_rows = []
        for key in order:
            method, direction = key
            if key not in self._feats or direction not in self._references:
                continue
            ref, ref_subjects = self._references[direction]
            subs = self._subjects[key]
            ci = fid_with_subject_ci(np.concatenate(self._feats[key]), subs, ref, ref_subjects, n_boot=fid_n_boot,
                                     alpha=alpha, seed=seed)
            fid_rows.append({"method": method, "direction": direction, "metric": "fid", "level": "distribution",
                             "estimate": ci.estimate, "low": ci.low, "high": ci.high,
                             "n_subjects": len(set(subs)), "n_images": len(subs)})
        summary = pd.concat([summary, pd.DataFrame(fid_rows)], ignore_index=True)
        summary["extractor"] = np.where(summary["metric"] == "fid", self.extractor, "")
        worst = {}
        for key, kept in self._worst.items():
            rows = per_image_df[(per_image_df["method"] == key[0]) & (per_image_df["direction"] == key[1])]
            rows = rows.set_index("index", drop=False).loc[[index for _, index, *_ in kept]].reset_index(drop=True)
            sources = [item[2] for item in kept]
            worst[key] = WorstImages(rows=rows, source=None if any(s is None for s in sources) else torch.stack(sources),
                                     prediction=torch.stack([item[3] for item in kept]),
                                     truth=torch.stack([item[4] for item in kept]))
        return TranslationEvaluation(per_image=per_image_df, summary=summary, extractor=self.extractor, worst=worst)


def dataset_features(extractor: torch.nn.Module, dataset: Any, *, key: str = "image", batch_size: int = 64,
                     cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """Features (N, D) of the ``key`` images of a medgan dataset, read batch by batch.

    With ``cache_dir`` they are cached under the dataset's content identity (``fingerprint()``) and
    ``key``, so a second run reads no image at all.
    """
    identity = (f"{dataset.fingerprint()}:{key}", len(dataset)) if hasattr(dataset, "fingerprint") else None
    return feats.extract_features(extractor, iter_batches(dataset, key, batch_size=batch_size), batch_size=batch_size,
                                  cache_dir=None if identity is None else cache_dir, stream_identity=identity)[0]


def evaluate_translations(predictions: Mapping[str, Mapping[str, Any]], *, sources: Mapping[str, Any],
                          subjects: Mapping[str, Sequence[str]], truths: Mapping[str, Any | None],
                          real_targets: Mapping[str, tuple[Any, Sequence[str]]],
                          features: Callable[[Any], np.ndarray] | torch.nn.Module, data_range: float,
                          extractor_name: str | None = None, feature_batch_size: int = 64,
                          fid_references: Mapping[str, Mapping[str, tuple[Any, Sequence[str]]]] | None = None,
                          ssim_win_size: int = 11, n_boot: int = 1000, fid_n_boot: int = 200, alpha: float = 0.05,
                          seed: int = 0, level: str = "subject",
                          cache_dir: str | os.PathLike | None = None) -> TranslationEvaluation:
    """Score every method's translations against the truth and against the target distribution,
    for image sets already in memory (:class:`TranslationScorer` takes them batch by batch).

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
    scorer = TranslationScorer(features, data_range=data_range, ssim_win_size=ssim_win_size,
                               extractor_name=extractor_name)
    for direction, (images, subs) in real_targets.items():
        scorer.set_reference(direction, scorer.features_of(images), subs)
    for method, by_direction in {**predictions, "identity": dict(sources)}.items():
        for direction, pred in by_direction.items():
            scorer.add(method, direction, pred, subjects=subjects[direction], truth=truths.get(direction))
    for name, by_d in (fid_references or {}).items():
        for direction, (images, subs) in by_d.items():
            scorer.add_features(name, direction, scorer.features_of(images), list(subs))
    return scorer.evaluate(n_boot=n_boot, fid_n_boot=fid_n_boot, alpha=alpha, seed=seed, level=level)
