"""Figures for image-to-image translation studies (brain CT <-> MRI, early -> delayed PET).

- :func:`translation_grid` — one column per test image, one row per stage (source, each
  model's translation, its cycle reconstruction, the truth), labelled at the left.
- :func:`worst_case_grid` — the images with the largest error against the truth: source,
  prediction, truth and the absolute error map, with the score in the title.
- :func:`score_panels` — one panel per score with each method's estimate and CI, per direction.
- :func:`inference_mode_text` — the generators' test-time mode in words, for a method section.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from medgan.models.image_to_image import depends_on_inference_mode

__all__ = ["inference_mode_text", "score_panels", "translation_grid", "worst_case_grid"]


def _np(images: Any) -> np.ndarray:
    arr = images.detach().float().cpu().numpy() if torch.is_tensor(images) else np.asarray(images, dtype=np.float32)
    if arr.ndim == 4:
        arr = arr[:, 0]  # first channel (1-channel studies)
    if arr.ndim != 3:
        raise ValueError(f"expected (N, C, H, W) or (N, H, W) images, got shape {arr.shape}")
    return arr


def translation_grid(rows: Mapping[str, Any], *, title: str | None = None,
                     value_range: tuple[float, float] = (-1.0, 1.0), cell_inches: float = 1.3) -> plt.Figure:
    """Images in a table: each entry of ``rows`` is a row label -> (N, C, H, W) images (same N).

    Args:
        rows: e.g. {"CT (input)": a, "ResNet-9 CT→MRI": fb, "ResNet-9 CT→MRI→CT": rec, "true MRI": t}.
        value_range: display range of every image (images in [-1, 1] by default).
    """
    arrays = {label: _np(images) for label, images in rows.items()}
    n = {len(a) for a in arrays.values()}
    if len(n) != 1:
        raise ValueError(f"rows have different numbers of images: { {k: len(v) for k, v in arrays.items()} }")
    n_cols, n_rows = n.pop(), len(arrays)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell_inches * n_cols + 1.6, cell_inches * n_rows + 0.4),
                             squeeze=False)
    for r, (label, arr) in enumerate(arrays.items()):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.imshow(arr[c], cmap="gray", vmin=value_range[0], vmax=value_range[1])
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def worst_case_grid(source: Any, prediction: Any, truth: Any, *, captions: Sequence[str] | None = None,
                    title: str | None = None, value_range: tuple[float, float] = (-1.0, 1.0),
                    cell_inches: float = 1.5) -> plt.Figure:
    """One row per case: source | prediction | truth | |prediction - truth| (error in intensity units).

    Args:
        source, prediction, truth: (K, C, H, W) images of the K cases, in ``value_range``.
        captions: one line per case (e.g. "subject s-1a2b, slice 3, SSIM 0.41").
    """
    s, p, t = _np(source), _np(prediction), _np(truth)
    k = len(s)
    if not (len(p) == len(t) == k):
        raise ValueError(f"source/prediction/truth have {len(s)}/{len(p)}/{len(t)} cases")
    error = np.abs(p - t)
    vmax_err = float(value_range[1] - value_range[0]) / 2  # half the range: errors above are saturated
    fig, axes = plt.subplots(max(k, 1), 4, figsize=(4 * cell_inches + 0.6, cell_inches * max(k, 1) + 0.5),
                             squeeze=False)
    for i in range(k):
        for j, (img, cmap, lo, hi) in enumerate(((s[i], "gray", *value_range), (p[i], "gray", *value_range),
                                                 (t[i], "gray", *value_range), (error[i], "magma", 0.0, vmax_err))):
            ax = axes[i, j]
            im = ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(("source", "prediction", "truth", "|error|")[j], fontsize=8)
        if captions is not None:
            axes[i, 0].set_ylabel(captions[i], fontsize=7, rotation=0, ha="right", va="center")
    if k:
        fig.colorbar(im, ax=axes[:, 3].tolist(), shrink=0.6, label="|prediction − truth|")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def score_panels(summary: pd.DataFrame, *, metrics: Sequence[str], title: str | None = None,
                 labels: Mapping[str, str] | None = None) -> plt.Figure:
    """Per score, a panel of estimate and CI (error bars) for each method, grouped by direction.

    ``summary`` columns: method, direction, metric, estimate, low, high (e.g. from
    ``medgan.analysis.translation_scores.summarize`` plus FID rows).
    """
    labels = dict(labels or {})
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.0), squeeze=False)
    directions = list(dict.fromkeys(summary["direction"]))
    methods = list(dict.fromkeys(summary["method"]))
    width = 0.8 / max(1, len(methods))
    for ax, metric in zip(axes[0], metrics):
        rows = summary[summary["metric"] == metric]
        for m_i, method in enumerate(methods):
            sel = rows[rows["method"] == method].set_index("direction").reindex(directions)
            x = np.arange(len(directions)) + (m_i - (len(methods) - 1) / 2) * width
            est = sel["estimate"].to_numpy(dtype=float)
            err = np.vstack([est - sel["low"].to_numpy(dtype=float), sel["high"].to_numpy(dtype=float) - est])
            ax.bar(x, est, width, yerr=np.nan_to_num(err), capsize=3, label=method)
        ax.set_xticks(np.arange(len(directions)))
        ax.set_xticklabels(directions, fontsize=8)
        ax.set_title(labels.get(metric, metric), fontsize=9)
    axes[0, -1].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def inference_mode_text(mode: str, *, batch_size: int, seed: int, generators: Mapping[str, nn.Module]) -> str:
    """How the generators (label -> network) ran when they were scored, in one sentence per point.

    ``mode``, ``batch_size``, ``seed``: as given to ``medgan.train.cyclegan.translate`` in train mode.
    """
    if mode == "eval":
        text = ("eval: batch norm normalises with its running (training) statistics and dropout is off, "
                "so the test batch size changes nothing")
    else:
        text = (f"train (the reference test.py without --eval): batch norm normalises each batch of {batch_size} "
                f"test image{'s' if batch_size != 1 else ''} with that batch's own statistics, dropout stays on "
                f"with masks seeded by seed {seed} and the image index; the running statistics are left untouched")
    batch_norm = [k for k, g in generators.items() if any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                                          and m.track_running_stats for m in g.modules())]
    dropout = [k for k, g in generators.items() if any(isinstance(m, nn.modules.dropout._DropoutNd) for m in g.modules())]
    if not any(depends_on_inference_mode(g) for g in generators.values()):
        return text + ". Both modes give the same images here: no generator has batch norm or dropout"
    return text + (f". Batch norm in: {', '.join(batch_norm) or 'none'}; dropout in: {', '.join(dropout) or 'none'}")
