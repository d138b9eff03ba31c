"""Fidelity of synthetic images measured by classifiers: the thesis' 3-step scheme.

1. classifier(real) is trained on real normal/abnormal images (sigmoid output = P(abnormal)).
2. GAN samples are pseudo-labelled by classifier(real) — only confident ones are kept
   (:func:`pseudo_label`, above 0.7 / below 0.3) — and, with the same number and ratio of
   normal and abnormal images as the real training set (:func:`match_class_counts`),
   classifier(synthetic) is trained with identical settings.
3. Both classifiers are tested on the same real test set (:func:`evaluate_binary`: AUROC with a
   bootstrap CI, sensitivity, specificity, confusion matrix) and their AUROCs are compared
   with DeLong's test (:func:`compare_aurocs`).

Generated images never pile up in memory: :func:`generate_and_pseudo_label` keeps each batch's
latents and probabilities only, :func:`generate_batches` redraws chosen latents batch by batch
(to score them), and :func:`write_generated` writes them to disk as an item store to train on.

The thesis words the rule as "above 0.7 and below 0.3 for labeling normal and abnormal";
with a sigmoid trained on abnormal = 1 we read it as P(abnormal) > 0.7 -> abnormal,
< 0.3 -> normal, and in between -> discarded. The metrics here are pure functions of arrays.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_curve
from tqdm.auto import tqdm

from medgan import atomic
from medgan.config import ensure_free_space
from medgan.data.item_store import ARRAY_SUFFIX, STORE_FORMAT, ItemStore
from medgan.data.item_store import MANIFEST as STORE_MANIFEST
from medgan.metrics.bootstrap import bootstrap_ci
from medgan.metrics.roc import auroc, delong_test, sensitivity_specificity
from medgan.train.fingerprint import digest, network_identity, tensor_digest

__all__ = ["UNLABELLED", "pseudo_label", "match_class_counts", "evaluate_binary", "confusion_matrix",
           "compare_aurocs", "roc_points", "three_step_table", "generate_and_pseudo_label", "PseudoLabelled", "rank_labels",
           "generate_batches", "write_generated", "ThreeStepResult", "three_step_evaluation"]

UNLABELLED = -1


def pseudo_label(probabilities: Any, *, positive_above: float = 0.7, negative_below: float = 0.3) -> np.ndarray:
    """Confident pseudo-labels from P(positive): 1 if p > positive_above, 0 if p < negative_below, else -1.

    probabilities: (N,) or (N, 1) in [0, 1]. Returns int64 (N,) in {1, 0, -1}.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if p.ndim != 1:
        raise ValueError(f"probabilities must be (N,) or (N, 1), got shape {p.shape}")
    if not (0.0 <= negative_below <= positive_above <= 1.0):
        raise ValueError(f"need 0 <= negative_below ({negative_below}) <= positive_above ({positive_above}) <= 1")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must lie in [0, 1] without NaN")
    labels = np.full(p.shape, UNLABELLED, dtype=np.int64)
    labels[p > positive_above] = 1
    labels[p < negative_below] = 0
    return labels


def rank_labels(probabilities: Any, counts: Mapping[int, int]) -> np.ndarray:
    """Pseudo-labels by rank, for when the thresholds leave too few of a class: the lowest P(positive)
    become 0 and the highest 1, as many as ``counts`` ({0: n, 1: m}) asks, scaled down in ratio to
    fit the images there are (at least one of each); the rest -1. Returns int64 (N,)."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    n_neg, n_pos = int(counts.get(0, 0)), int(counts.get(1, 0))
    scale = min(1.0, len(p) / max(1, n_neg + n_pos))
    n_pos = max(1, int(round(n_pos * scale))) if n_pos else 0
    n_neg = max(1, min(len(p) - n_pos, int(round(n_neg * scale)))) if n_neg else 0
    order = np.argsort(p, kind="stable")
    labels = np.full(p.shape, UNLABELLED, dtype=np.int64)
    labels[order[:n_neg]] = 0
    if n_pos:
        labels[order[len(p) - n_pos:]] = 1
    return labels


def match_class_counts(labels: Any, counts: Mapping[int, int], *, seed: int = 0) -> np.ndarray:
    """Indices of a random subset of ``labels`` with ``counts[c]`` items of each class ``c``.

    The thesis trains classifier(synthetic) on "the identical number of images and ratio of
    normal and abnormal cases" as classifier(real). When a class has too few items, every class
    is scaled down by the same factor so the ratio is kept. Returns sorted int64 indices.
    """
    y = np.asarray(labels)
    available = {c: int((y == c).sum()) for c in counts}
    scale = min([1.0] + [available[c] / n for c, n in counts.items() if n > 0])
    rng = np.random.default_rng(seed)
    chosen = []
    for c, n in sorted(counts.items()):
        take = int(np.floor(n * scale))
        pool = np.flatnonzero(y == c)
        chosen.append(rng.choice(pool, size=take, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def confusion_matrix(labels: Any, scores: Any, *, threshold: float = 0.5,
                     names: tuple[str, str] = ("normal", "abnormal")) -> pd.DataFrame:
    """2x2 counts, rows = truth, columns = prediction (positive iff score >= threshold)."""
    y = np.asarray(labels).astype(bool).ravel()
    called = np.asarray(scores, dtype=np.float64).ravel() >= threshold
    table = np.array([[np.sum(~y & ~called), np.sum(~y & called)], [np.sum(y & ~called), np.sum(y & called)]])
    return pd.DataFrame(table, index=[f"true {n}" for n in names], columns=[f"predicted {n}" for n in names])


def evaluate_binary(labels: Any, scores: Any, *, threshold: float = 0.5, n_boot: int = 1000, alpha: float = 0.05,
                    seed: int = 0) -> dict[str, float]:
    """AUROC with a percentile-bootstrap CI, sensitivity and specificity at ``threshold``, counts.

    labels (N,) 0/1 (1 = abnormal); scores (N,) P(abnormal). Returns a flat dict of floats/ints.
    """
    y = np.asarray(labels).astype(int).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    ci = bootstrap_ci(auroc, y, s, n_boot=n_boot, alpha=alpha, seed=seed)
    sens, spec = sensitivity_specificity(y, s, threshold)
    cm = confusion_matrix(y, s, threshold=threshold).to_numpy()
    return {"auroc": ci.estimate, "auroc_low": ci.low, "auroc_high": ci.high, "sensitivity": sens,
            "specificity": spec, "threshold": threshold, "n_positive": int(y.sum()), "n_negative": int((1 - y).sum()),
            "tn": int(cm[0, 0]), "fp": int(cm[0, 1]), "fn": int(cm[1, 0]), "tp": int(cm[1, 1])}


def compare_aurocs(labels: Any, scores_a: Any, scores_b: Any) -> dict[str, float]:
    """DeLong's test of two classifiers' AUROCs on the same cases: ``{auroc_a, auroc_b, difference, p_value}``."""
    a, b, p = delong_test(labels, scores_a, scores_b)
    return {"auroc_a": a, "auroc_b": b, "difference": a - b, "p_value": p}


def roc_points(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) of the ROC curve, for plotting."""
    fpr, tpr, _ = roc_curve(np.asarray(labels).astype(int).ravel(), np.asarray(scores, dtype=np.float64).ravel())
    return fpr, tpr


def three_step_table(results: Mapping[str, Mapping[str, float]], *, ci_level: float = 0.95) -> pd.DataFrame:
    """One row per evaluation ("classifier(real) on real test", ...) with AUROC [CI], sensitivity, specificity."""
    rows = []
    for name, r in results.items():
        rows.append({"evaluation": name, "AUROC": r["auroc"],
                     f"AUROC {int(ci_level * 100)}% CI": (f"[{r['auroc_low']:.3f}, {r['auroc_high']:.3f}]"
                                                          if np.isfinite(r["auroc"]) else "—"),
                     "sensitivity": r["sensitivity"], "specificity": r["specificity"],
                     "n abnormal / normal": f"{r['n_positive']} / {r['n_negative']}"})
    return pd.DataFrame(rows).set_index("evaluation")


def generate_batches(generate: Callable[[torch.Tensor], torch.Tensor], latents: Any, *, batch_size: int = 64,
                     device: str | torch.device = "cpu") -> Iterator[torch.Tensor]:
    """Images ``generate(z)`` of the given latents (N, z_dim), ``batch_size`` at a time, clamped to
    [-1, 1]; each batch is made when asked for, so at most one lives at a time."""
    z = torch.as_tensor(np.asarray(latents), dtype=torch.float32)
    with torch.no_grad():
        for start in range(0, len(z), batch_size):
            yield generate(z[start:start + batch_size].to(device)).float().clamp(-1, 1)


@dataclass
class PseudoLabelled:
    """Step 2's draw: what is kept of ``n`` generated images (never the images themselves)."""

    latents: np.ndarray        # (n, z_dim) float32: regenerate any image from its latent
    probabilities: np.ndarray  # (n,) P(abnormal) by the labelling classifier
    labels: np.ndarray         # (n,) pseudo-labels in {1, 0, -1}


@torch.no_grad()
def generate_and_pseudo_label(generate: Callable[[torch.Tensor], torch.Tensor], classifier: torch.nn.Module, *,
                              z_dim: int, n: int, batch_size: int = 64, seed: int = 0,
                              positive_above: float = 0.7, negative_below: float = 0.3,
                              device: str | torch.device = "cpu", progress: bool = False) -> PseudoLabelled:
    """Step 2 of the scheme: draw ``n`` GAN images and pseudo-label them with classifier(real).

    generate: z (B, z_dim) -> images (B, C, H, W) in [-1, 1]; classifier: a one-output sigmoid
    :class:`~medgan.models.classifiers.Classifier` (P(abnormal)). Batch by batch: each batch of
    images is classified at once and freed, so memory holds only latents and probabilities
    (60,000 1024-px images would be 250 GB). :func:`generate_batches` redraws any of them.
    """
    device = torch.device(device)
    classifier.eval().to(device)
    g = torch.Generator().manual_seed(seed)
    latents, probs = [], []
    for start in tqdm(range(0, n, batch_size), disable=not progress, desc="generate + pseudo-label"):
        z = torch.randn(min(batch_size, n - start), z_dim, generator=g)
        x = generate(z.to(device)).float().clamp(-1, 1)
        probs.append(classifier.predict_proba(x)[:, 0].double().cpu())
        latents.append(z.numpy())
        del x
    p = torch.cat(probs).numpy()
    return PseudoLabelled(latents=np.concatenate(latents), probabilities=p,
                          labels=pseudo_label(p, positive_above=positive_above, negative_below=negative_below))


def generated_store_key(generate: Any, latents: Any, labels: Any) -> str:
    """The folder key of :func:`write_generated`: the generator's weights, the latents and the labels."""
    generator = network_identity(generate) if isinstance(generate, torch.nn.Module) else repr(generate)
    return digest({"generator": generator, "latents": tensor_digest(np.asarray(latents, dtype=np.float32)),
                   "labels": np.asarray(labels).astype(int).tolist()})[:20]


def write_generated(generate: Callable[[torch.Tensor], torch.Tensor], latents: Any, labels: Any,
                    parent: str | os.PathLike, *, batch_size: int = 64, device: str | torch.device = "cpu",
                    progress: bool = False) -> ItemStore:
    """The images of ``latents`` with their ``labels``, on disk as an item store (read it with
    :class:`medgan.data.base.ItemListDataset`: image (C, H, W), label, subject ``synthetic-<i>``).

    Written batch by batch under ``parent/<key>`` (:func:`generated_store_key`), into a temporary
    folder renamed into place when complete; a finished folder is reused, not redrawn.
    """
    labels = np.asarray(labels).astype(int)
    if len(labels) != len(latents):
        raise ValueError(f"{len(latents)} latents but {len(labels)} labels")
    folder = Path(parent) / f"generated-{generated_store_key(generate, latents, labels)}"
    if (folder / STORE_MANIFEST).is_file():
        return ItemStore(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    content, rows, spec = hashlib.sha256(), [], None
    try:
        with open(tmp / f"image{ARRAY_SUFFIX}", "wb") as out:
            batches = generate_batches(generate, latents, batch_size=batch_size, device=device)
            for images in tqdm(batches, total=-(-len(labels) // batch_size), disable=not progress,
                               desc="write generated images"):
                array = np.ascontiguousarray(images.cpu().numpy(), dtype=np.float32)
                if spec is None:
                    spec = array.shape[1:]
                    ensure_free_space(tmp, array[0].nbytes * len(labels) + 65536, "the generated images")
                for image in array:
                    data = image.data.cast("B")
                    content.update(data)
                    out.write(data)
                    row = {"label": int(labels[len(rows)]), "subject": f"synthetic-{len(rows):06d}", "meta": {}}
                    content.update(json.dumps(row, sort_keys=True).encode())
                    rows.append(row)
            out.flush()
            os.fsync(out.fileno())
        if not rows:
            raise ValueError("no latents to generate")
        manifest = {"format": STORE_FORMAT, "content": content.hexdigest()[:32], "rejected": [], "rows": rows,
                    "arrays": {"image": {"dtype": np.dtype(np.float32).str, "shape": list(spec)}}}
        atomic.write_text(tmp / STORE_MANIFEST, json.dumps(manifest))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process wrote the same images first
            if not (folder / STORE_MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ItemStore(folder)


@dataclass
class ThreeStepResult:
    results: dict[str, dict[str, float]]   # evaluation name -> evaluate_binary output
    delong: dict[str, float]               # classifier(real) vs classifier(synthetic) on the real test set
    confusions: dict[str, pd.DataFrame]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (labels, scores) for ROC figures

    def table(self) -> pd.DataFrame:
        """AUROC [CI], sensitivity, specificity per evaluation, and the chance baseline."""
        table = three_step_table(self.results)
        table.loc["chance (random scores)"] = {"AUROC": 0.5, table.columns[1]: "—", "sensitivity": 0.5,
                                               "specificity": 0.5, "n abnormal / normal": "—"}
        return table


def three_step_evaluation(*, real_test_labels: Any, real_on_real: Any, synthetic_on_real: Any,
                          synthetic_test_labels: Any, synthetic_on_synthetic: Any, threshold: float = 0.5,
                          n_boot: int = 1000, seed: int = 0) -> ThreeStepResult:
    """Step 3: both classifiers on the same real test set, classifier(synthetic) on a held-out
    pseudo-labelled synthetic test set, and DeLong's test between the two on the real test set.
    A synthetic test set holding one class only gets NaN metrics (its counts still show).

    All inputs are (N,) arrays: labels 0/1 (abnormal = 1) and P(abnormal) scores.
    """
    runs = {"classifier(real) on real test": (real_test_labels, real_on_real),
            "classifier(synthetic) on synthetic test": (synthetic_test_labels, synthetic_on_synthetic),
            "classifier(synthetic) on real test": (real_test_labels, synthetic_on_real)}
    results, confusions, curves = {}, {}, {}
    for name, (y, s) in runs.items():
        y, s = np.asarray(y).astype(int).ravel(), np.asarray(s, dtype=np.float64).ravel()
        if name.endswith("synthetic test") and len(np.unique(y)) < 2:
            # Too few confident synthetic images of one class to test on: report it, do not invent a number.
            nan = float("nan")
            results[name] = {"auroc": nan, "auroc_low": nan, "auroc_high": nan, "sensitivity": nan, "specificity": nan,
                             "threshold": threshold, "n_positive": int(y.sum()), "n_negative": int((1 - y).sum())}
            confusions[name] = confusion_matrix(y, s, threshold=threshold)
            continue
        results[name] = evaluate_binary(y, s, threshold=threshold, n_boot=n_boot, seed=seed)
        confusions[name] = confusion_matrix(y, s, threshold=threshold)
        curves[name] = (y, s)
    delong = compare_aurocs(real_test_labels, real_on_real, synthetic_on_real)
    return ThreeStepResult(results=results, delong=delong, confusions=confusions, curves=curves)
