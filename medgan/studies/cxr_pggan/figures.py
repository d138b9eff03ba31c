"""Study 5's figures: ROC curves, confusion matrices, latent-axis walks with class-activation maps,
AnoGAN residual maps and Grad-CAM comparisons."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = ["roc_figure", "confusion_figure", "axis_walk_figure", "axis_likelihood_figure",
           "anomaly_examples_figure", "heatmap_overlay_figure", "severity_figure"]


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _gray(image) -> np.ndarray:
    """(C, H, W) or (H, W) in [-1, 1] -> (H, W) for display (first channel)."""
    a = _np(image)
    return a[0] if a.ndim == 3 else a


def roc_figure(curves: Mapping[str, tuple[Any, Any]], *, title: str | None = None,
               inches: float = 3.6) -> plt.Figure:
    """ROC curves on one axis. curves: name -> (labels (N,) 0/1, scores (N,)); AUROC in the legend."""
    fig, ax = plt.subplots(figsize=(inches, inches))
    for name, (labels, scores) in curves.items():
        y, s = _np(labels).astype(int).ravel(), _np(scores).ravel()
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, lw=1.5, label=f"{name} (AUROC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="chance (0.5)")
    ax.set_xlabel("1 - specificity", fontsize=9)
    ax.set_ylabel("sensitivity", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def confusion_figure(matrices: Mapping[str, pd.DataFrame], *, title: str | None = None) -> plt.Figure:
    """2x2 confusion matrices side by side (rows truth, columns prediction), counts annotated."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(2.9 * len(matrices), 2.8), squeeze=False)
    for ax, (name, cm) in zip(axes[0], matrices.items()):
        values = cm.to_numpy()
        ax.imshow(values, cmap="Blues")
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=10,
                    color="white" if v > values.max() / 2 else "black")
        ax.set_xticks(range(values.shape[1]), [c.replace("predicted ", "pred.\n") for c in cm.columns], fontsize=7)
        ax.set_yticks(range(values.shape[0]), [r.replace("true ", "true\n") for r in cm.index], fontsize=7)
        ax.set_title(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _overlay(ax, image, heat, alpha=0.45):
    ax.imshow(_gray(image), cmap="gray", vmin=-1, vmax=1)
    ax.imshow(_np(heat), cmap="jet", alpha=alpha, vmin=0, vmax=1)
    ax.set_axis_off()


def axis_walk_figure(images: Mapping[str, Any], *, steps: Sequence[float], cams: Mapping[str, Any] | None = None,
                     likelihoods: Mapping[str, Any] | None = None, title: str | None = None,
                     cell_inches: float = 1.1) -> plt.Figure:
    """For each finding: the image strip along its axis and (optionally) the class-activation maps.

    images: finding -> (S, C, H, W); cams: finding -> (S, H, W) in [0, 1]; likelihoods: finding ->
    (S,) the finding's classifier probability, written above each image.
    """
    names = list(images)
    rows_per = 2 if cams is not None else 1
    n_steps = len(steps)
    fig, axes = plt.subplots(rows_per * len(names), n_steps,
                             figsize=(cell_inches * n_steps, cell_inches * rows_per * len(names) + 0.4),
                             squeeze=False)
    for f, name in enumerate(names):
        strip = _np(images[name])
        for s in range(n_steps):
            ax = axes[rows_per * f, s]
            ax.imshow(_gray(strip[s]), cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([]); ax.set_yticks([])
            label = f"{steps[s]:+.1f}"
            if likelihoods is not None:
                label += f"\np={float(_np(likelihoods[name])[s]):.2f}"
            ax.set_title(label, fontsize=6)
            if cams is not None:
                _overlay(axes[rows_per * f + 1, s], strip[s], _np(cams[name])[s])
        axes[rows_per * f, 0].set_ylabel(name, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def axis_likelihood_figure(steps: Sequence[float], likelihoods: Mapping[str, Any], *,
                           spread: Mapping[str, Any] | None = None, title: str | None = None) -> plt.Figure:
    """Classifier likelihood of each finding against the step along its own axis.

    likelihoods: finding -> (S,) mean probability; spread: finding -> (S,) sd over start latents.
    """
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    for name, p in likelihoods.items():
        p = _np(p)
        ax.plot(steps, p, marker="o", ms=3, lw=1.3, label=name)
        if spread is not None and name in spread:
            sd = _np(spread[name])
            ax.fill_between(steps, np.clip(p - sd, 0, 1), np.clip(p + sd, 0, 1), alpha=0.15)
    ax.set_ylim(-0.02, 1.02)
    return _finish_axis_plot(fig, ax, ylabel="classifier likelihood of the finding", title=title)


def severity_figure(steps: Sequence[float], severity: Mapping[str, Any], *, ylabel: str = "severity",
                    title: str | None = None) -> plt.Figure:
    """Measured severity (S,) or (N, S) per finding against the axis step."""
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    for name, v in severity.items():
        v = _np(v)
        mean = v.mean(0) if v.ndim == 2 else v
        ax.plot(steps, mean, marker="o", ms=3, lw=1.3, label=name)
        if v.ndim == 2:
            sd = v.std(0)
            ax.fill_between(steps, mean - sd, mean + sd, alpha=0.15)
    return _finish_axis_plot(fig, ax, ylabel=ylabel, title=title)


def _finish_axis_plot(fig: plt.Figure, ax, *, ylabel: str, title: str | None) -> plt.Figure:
    """Labels, grid, legend (when something was walked) and title of a plot along latent axes."""
    ax.set_xlabel("step along the axis (latent units)", fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # nothing walked: no legend to draw
        ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def anomaly_examples_figure(queries, reconstructions, maps, *, masks=None, baseline_maps=None,
                            titles: Sequence[str] | None = None, map_range: tuple[float, float] | None = None,
                            cell_inches: float = 1.25) -> plt.Figure:
    """One row per query: query, AnoGAN reconstruction, |residual| map, [mean-image baseline], [mask].

    queries/reconstructions (N, C, H, W) in [-1, 1]; maps/baseline_maps (N, H, W); masks (N, [1,] H, W).
    """
    q, r, m = _np(queries), _np(reconstructions), _np(maps)
    cols = ["query", "AnoGAN reconstruction", "|residual|"]
    if baseline_maps is not None:
        cols.append("|query - mean normal|")
    if masks is not None:
        cols.append("lesion mask")
    lo, hi = map_range if map_range is not None else (0.0, float(np.quantile(m, 0.995)) or 1.0)
    fig, axes = plt.subplots(len(q), len(cols), figsize=(cell_inches * len(cols), cell_inches * len(q) + 0.3),
                             squeeze=False)
    for i in range(len(q)):
        panels = [(_gray(q[i]), "gray", -1, 1), (_gray(r[i]), "gray", -1, 1), (m[i], "magma", lo, hi)]
        if baseline_maps is not None:
            panels.append((_np(baseline_maps)[i], "magma", lo, hi))
        if masks is not None:
            mk = _np(masks)[i]
            panels.append((mk[0] if mk.ndim == 3 else mk, "gray", 0, 1))
        for j, (img, cmap, vmin, vmax) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set_xticks([]); ax.set_yticks([])
            if i == 0:
                ax.set_title(cols[j], fontsize=7)
        if titles is not None:
            axes[i, 0].set_ylabel(str(titles[i]), fontsize=7)
    fig.tight_layout()
    return fig


def heatmap_overlay_figure(images, heatmaps: Mapping[str, Any], *, titles: Sequence[str] | None = None,
                           cell_inches: float = 1.4) -> plt.Figure:
    """One row per image: the image, then each named heat map (N, H, W) in [0, 1] overlaid (e.g. Grad-CAM
    of classifier(real) and classifier(synthetic) on the same cases)."""
    x = _np(images)
    names = list(heatmaps)
    fig, axes = plt.subplots(len(x), 1 + len(names), figsize=(cell_inches * (1 + len(names)), cell_inches * len(x) + 0.3),
                             squeeze=False)
    for i in range(len(x)):
        axes[i, 0].imshow(_gray(x[i]), cmap="gray", vmin=-1, vmax=1)
        axes[i, 0].set_xticks([]); axes[i, 0].set_yticks([])
        if titles is not None:
            axes[i, 0].set_ylabel(str(titles[i]), fontsize=7)
        for j, name in enumerate(names, start=1):
            _overlay(axes[i, j], x[i], _np(heatmaps[name])[i])
            if i == 0:
                axes[i, j].set_title(name, fontsize=7)
        if i == 0:
            axes[i, 0].set_title("image", fontsize=7)
    fig.tight_layout()
    return fig
