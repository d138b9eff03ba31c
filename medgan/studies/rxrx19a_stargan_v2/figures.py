"""Study 1's figures: false-colour composites of the 5 stains, per-stain panels, translation
grids, Grad-CAM overlays, and the paper's FID / LPIPS curves over training.

Images are (N, C, H, W) or (C, H, W) tensors/arrays in [-1, 1], C = 5 stains in the order
Hoechst, ConA, Phalloidin, Syto14, WGA (other C: the first colours are reused cyclically).
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

__all__ = ["STAIN_COLOURS", "false_colour", "gradcam_figure", "metric_curves", "per_stain_bars",
           "stain_panels", "translation_grid"]

# Colours per stain (RGB in [0, 1]) chosen as in common cell-painting viewers: DNA blue, ER green,
# actin red, RNA yellow, membranes/Golgi magenta.
STAIN_COLOURS = np.array([[0.0, 0.3, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.9, 0.8, 0.0], [0.9, 0.0, 0.9]])


def _np(images) -> np.ndarray:
    arr = images.detach().float().cpu().numpy() if torch.is_tensor(images) else np.asarray(images, np.float32)
    return arr[None] if arr.ndim == 3 else arr


def false_colour(images) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, 3) RGB in [0, 1]: each stain tinted and summed, then clipped."""
    arr = (np.clip(_np(images), -1, 1) + 1) / 2
    colours = STAIN_COLOURS[np.arange(arr.shape[1]) % len(STAIN_COLOURS)]
    rgb = np.einsum("nchw,ck->nhwk", arr, colours) / max(1.0, arr.shape[1] / 3)
    return np.clip(rgb * 1.6, 0, 1)


def _show(ax, image_rgb_or_grey, title=None, cmap="gray"):
    ax.imshow(image_rgb_or_grey, cmap=None if image_rgb_or_grey.ndim == 3 else cmap, vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def stain_panels(images, *, stain_names: Sequence[str], row_titles: Sequence[str] | None = None,
                 title: str | None = None) -> plt.Figure:
    """One row per image: the false-colour composite, then every stain in grey."""
    arr = _np(images)
    n, c = arr.shape[:2]
    fig, axes = plt.subplots(n, c + 1, figsize=(1.3 * (c + 1), 1.3 * n + 0.4), squeeze=False)
    comp = false_colour(arr)
    for i in range(n):
        _show(axes[i, 0], comp[i], "composite" if i == 0 else None)
        if row_titles:
            axes[i, 0].set_ylabel(row_titles[i], fontsize=7)
        for j in range(c):
            _show(axes[i, j + 1], (arr[i, j] + 1) / 2, stain_names[j] if i == 0 else None)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def translation_grid(sources, outputs, *, source_labels, domain_names: Sequence[str], stain: int | None = None,
                     stain_names: Sequence[str] | None = None, title: str | None = None) -> plt.Figure:
    """Rows = sources; columns = the source, then for each target domain its n styles.

    outputs: (N, K, n, C, H, W). ``stain=None`` shows false-colour composites, else that stain in grey.
    """
    src, out = _np(sources), outputs.detach().float().cpu().numpy() if torch.is_tensor(outputs) else np.asarray(outputs)
    n, k, m = out.shape[:3]

    def render(x):
        return false_colour(x) if stain is None else (np.clip(_np(x)[:, stain], -1, 1) + 1) / 2

    fig, axes = plt.subplots(n, 1 + k * m, figsize=(0.95 * (1 + k * m), 1.0 * n + 0.6), squeeze=False)
    src_r = render(src)
    for i in range(n):
        _show(axes[i, 0], src_r[i], "source" if i == 0 else None)
        axes[i, 0].set_ylabel(domain_names[int(source_labels[i])], fontsize=6)
        for t in range(k):
            imgs = render(out[i, t])
            for j in range(m):
                _show(axes[i, 1 + t * m + j], imgs[j], f"→{domain_names[t]}" if i == 0 and j == 0 else None)
    what = "false colour" if stain is None else (stain_names[stain] if stain_names else f"stain {stain}")
    fig.suptitle(f"{title or 'translations'} ({what})", fontsize=9)
    fig.tight_layout()
    return fig


def gradcam_figure(images, cams, *, titles: Sequence[str] | None = None, title: str | None = None,
                   alpha: float = 0.45) -> plt.Figure:
    """Two rows: false-colour images, and the same with the Grad-CAM map (N, H, W in [0, 1]) overlaid (jet)."""
    arr = _np(images)
    maps = cams.detach().cpu().numpy() if torch.is_tensor(cams) else np.asarray(cams)
    n = len(arr)
    comp = false_colour(arr)
    fig, axes = plt.subplots(2, n, figsize=(1.5 * n, 3.4), squeeze=False)
    for i in range(n):
        _show(axes[0, i], comp[i], titles[i] if titles else None)
        axes[1, i].imshow(comp[i])
        axes[1, i].imshow(maps[i], cmap="jet", alpha=alpha, vmin=0, vmax=1)
        axes[1, i].set_xticks([])
        axes[1, i].set_yticks([])
    axes[0, 0].set_ylabel("image", fontsize=7)
    axes[1, 0].set_ylabel("Grad-CAM", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def metric_curves(scores: pd.DataFrame, *, metrics: Sequence[str] = ("fid", "lpips"), modes: Sequence[str] = ("latent", "reference"),
                  baselines: pd.DataFrame | None = None, label: str = "", title: str | None = None) -> plt.Figure:
    """The paper's curves: each metric against training step, one line per target domain, one panel per mode.

    ``baselines`` (rows with ``mode``, ``target`` and the metric) are drawn as dashed horizontal lines.
    """
    fig, axes = plt.subplots(len(metrics), len(modes), figsize=(4.2 * len(modes), 2.8 * len(metrics)), squeeze=False)
    for i, metric in enumerate(metrics):
        for j, mode in enumerate(modes):
            ax = axes[i, j]
            part = scores[scores["mode"] == mode]
            for t, (target, rows) in enumerate(part.groupby("target", sort=False)):
                line, = ax.plot(rows["step"], rows[metric], marker="o", ms=3, label=target)
                if baselines is not None and metric in baselines:
                    base = baselines[baselines["target"] == target][metric].dropna()
                    if len(base):
                        ax.axhline(float(base.iloc[0]), ls="--", lw=0.8, color=line.get_color())
            ax.set_title(f"{metric} — {mode}-guided", fontsize=9)
            ax.set_xlabel("iteration")
            ax.set_ylabel(f"{metric} {label}".strip(), fontsize=8)
            ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def per_stain_bars(scores: pd.DataFrame, *, stain_names: Sequence[str], title: str | None = None) -> plt.Figure:
    """Per-stain diversity (columns ``lpips_<stain>``) at the first and last evaluated step, per mode."""
    modes = [m for m in ("latent", "reference") if m in set(scores["mode"])]
    fig, axes = plt.subplots(1, len(modes), figsize=(4.5 * len(modes), 3), squeeze=False)
    steps = sorted(scores["step"].unique())
    picks = [steps[0], steps[-1]] if len(steps) > 1 else steps
    width = 0.8 / len(picks)
    for j, mode in enumerate(modes):
        ax = axes[0, j]
        for p, it in enumerate(picks):
            rows = scores[(scores["mode"] == mode) & (scores["step"] == it)]
            values = [rows[f"lpips_{s}"].mean() for s in stain_names]
            ax.bar(np.arange(len(stain_names)) + p * width, values, width, label=f"iteration {it}")
        ax.set_xticks(np.arange(len(stain_names)) + width * (len(picks) - 1) / 2)
        ax.set_xticklabels(stain_names, fontsize=8)
        ax.set_title(f"diversity per stain — {mode}-guided", fontsize=9)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
