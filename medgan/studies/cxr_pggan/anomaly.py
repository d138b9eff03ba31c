"""Part (c) of study 5: AnoGAN with the normal-only PGGAN, against the mean-normal-image baseline
and the supervised multi-label classifier. The inversion, scores and tests are generic
(:mod:`medgan.analysis.anogan`); this module wires the study's models and parameters to them."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from medgan.analysis.anogan import (ANOGAN, BASELINE, AnomalyEvaluation, evaluate_anomaly_detection,
                                    threshold_at_specificity)
from medgan.config import Params
from medgan.metrics.bootstrap import bootstrap_ci
from medgan.metrics.roc import auroc
from medgan.models.pggan import CriticFeatures
from medgan.studies.cxr_pggan.data import AnomalyQueries
from medgan.studies.cxr_pggan.jobs import inversion_generator
from medgan.studies.cxr_pggan.paper import score_label
from medgan.train.classifier import predict_proba
from medgan.train.engine import select_device


def invert_options(P: Params, normal_step) -> dict[str, Any]:
    """Keyword arguments of :func:`medgan.analysis.anogan.invert` for the normal-only PGGAN's step;
    with ``anogan.feature_weight > 0`` its critic's hidden features join the objective (AnoGAN)."""
    a = P.anogan
    options = dict(steps=a.steps, lr=a.lr, restarts=a.restarts, feature_weight=a.feature_weight,
                   batch_size=a.batch_size, seed=P.seed, device=select_device(P.device))
    if a.feature_weight > 0:
        options["discriminator_features"] = CriticFeatures(normal_step.nets["D"])
    return options


def _batched_proba(model: torch.nn.Module, images, *, batch_size: int) -> np.ndarray:
    """P (N, K) of a lazy image stack, read and scored ``batch_size`` images at a time."""
    device = str(next(model.parameters()).device)
    out = [predict_proba(model, images[i:i + batch_size], batch_size=batch_size, device=device)
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 1))


def supervised_scores(model: torch.nn.Module, queries: AnomalyQueries, *, batch_size: int = 64
                      ) -> tuple[tuple[np.ndarray, np.ndarray], float]:
    """The multi-label classifier as a detector: max P over the findings (outputs after "normal"), on
    the normal validation images and the queries (read per batch); and its time per query in seconds."""
    val = _batched_proba(model, queries.normal_val, batch_size=batch_size)[:, 1:].max(1)
    t0 = time.perf_counter()
    test = _batched_proba(model, queries.images, batch_size=batch_size)[:, 1:].max(1)
    return (val, test), (time.perf_counter() - t0) / len(queries.images)


def example_indices(findings, *, per_finding: int = 1, max_rows: int = 8) -> list[int]:
    """The queries a figure shows: ``per_finding`` of each finding (normal first), at most ``max_rows``."""
    picked, seen = [], {}
    for i, name in enumerate(findings):
        if seen.get(name, 0) < per_finding and len(picked) < max_rows:
            picked.append(i)
            seen[name] = seen.get(name, 0) + 1
    return picked


COMPARE = "compare_score"  # the name of the second image score in AnomalyEvaluation.extra_scores


def evaluate(P: Params, queries: AnomalyQueries, normal_step, classifier: torch.nn.Module) -> AnomalyEvaluation:
    """AnoGAN (inverting the normal-only PGGAN of ``normal_step``) vs the mean-image baseline and the
    multi-label ``classifier`` on the queries, with the ``anogan`` parameters (threshold rule,
    residual smoothing, image score). The queries are read from disk chunk by chunk. The second
    image score ``anogan.compare_score`` comes from the same residuals (see :func:`score_comparison`)."""
    a = P.anogan
    classifier_scores, classifier_seconds = supervised_scores(classifier, queries, batch_size=a.batch_size)
    return evaluate_anomaly_detection(
        inversion_generator(normal_step), normal_val=queries.normal_val, queries=queries.images,
        findings=queries.findings, masks=queries.masks, normal_train=queries.normal_mean,
        invert_options=invert_options(P, normal_step), specificity=a.specificity, pixel_quantile=a.pixel_quantile,
        score_kind=a.score_kind, sigma=a.sigma, trained_findings=queries.trained, classifier_scores=classifier_scores,
        classifier_seconds_per_query=classifier_seconds, n_boot=a.n_boot, n_boot_localisation=a.n_boot_localisation,
        example_indices=example_indices(queries.findings),
        extra_scores={COMPARE: (a.compare_score.kind, float(a.compare_score.sigma))})


def score_comparison(P: Params, evaluation: AnomalyEvaluation, *, normal_name: str = "normal") -> pd.DataFrame:
    """Both image scores of the same residuals side by side, for AnoGAN and the mean-image baseline:
    image AUROC (95% bootstrap CI), and abnormal / normal test queries called abnormal at the
    ``anogan.specificity`` threshold set on normal validation images (the score ``anogan.score_kind``
    is the one the other tables use; ``anogan.compare_score`` is reported beside it)."""
    a = P.anogan
    findings = np.asarray(evaluation.findings, dtype=object)
    abnormal = findings != normal_name
    scores = {score_label(a.score_kind, float(a.sigma)):
              {m: (evaluation.thresholds[m], evaluation.scores[m]) for m in (ANOGAN, BASELINE)}}
    if COMPARE in evaluation.extra_scores:
        scores[score_label(a.compare_score.kind, float(a.compare_score.sigma))] = {
            m: (threshold_at_specificity(val, specificity=a.specificity), test)
            for m, (val, test) in evaluation.extra_scores[COMPARE].items()}
    rows = []
    for label, by_method in scores.items():
        for method, (threshold, test) in by_method.items():
            ci = bootstrap_ci(auroc, abnormal.astype(int), np.asarray(test), n_boot=a.n_boot, seed=0)
            called = np.asarray(test) > threshold
            rows.append({"image score": label, "method": method, "image AUROC": ci.estimate, "AUROC low": ci.low,
                         "AUROC high": ci.high, "abnormal detected": int(called[abnormal].sum()),
                         "abnormal": int(abnormal.sum()), "normal called abnormal": int(called[~abnormal].sum()),
                         "normal": int((~abnormal).sum())})
    return pd.DataFrame(rows).set_index(["image score", "method"])


def image_roc_curves(evaluation: AnomalyEvaluation, queries: AnomalyQueries) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """method -> (abnormal labels (N,), scores (N,)) of the test queries, for an ROC figure."""
    return {name: (queries.abnormal.astype(int), s) for name, s in evaluation.scores.items()}


def anomaly_examples(evaluation: AnomalyEvaluation, queries: AnomalyQueries) -> dict:
    """Keyword arguments of :func:`medgan.studies.cxr_pggan.figures.anomaly_examples_figure` for the
    queries the evaluation kept (:func:`example_indices`: one normal, then one of each finding)."""
    ex = evaluation.examples
    return dict(queries=ex.queries, reconstructions=ex.reconstructions, maps=ex.maps[ANOGAN],
                baseline_maps=ex.maps[BASELINE], masks=ex.masks, titles=[queries.findings[i] for i in ex.indices])
