"""Generic figures the study notebooks call: image grids and training curves."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

from medgan.train.engine import read_log


def _as_numpy(images) -> np.ndarray:
    if hasattr(images, "detach"):
        images = images.detach().float().cpu().numpy()
    return np.asarray(images, dtype=np.float32)

def image_grid(images, *, nrow: int = 8, titles: Sequence[str] | None = None, channel: int | None = None,
               cmap: str = "gray", value_range: tuple[float, float] | None = (-1.0, 1.0),
               title: str | None = None, row_labels: Sequence[str] | None = None,
               cell_inches: float = 1.3) -> plt.Figure:
    """A grid of images, one per axis.

    Args:
        images: (N, C, H, W) or (N, H, W), tensor or array. C=1 is shown with ``cmap``; C=3 as RGB;
            other C show ``channel`` (default 0) with ``cmap``.
        nrow: images per row.
        titles: one short title per image.
        channel: which channel to show when C is not 1 or 3.
        value_range: display range (``None`` = each image's own min/max).
        row_labels: a label at the left of each row.
    """
    arr = _as_numpy(images)
    if arr.ndim == 3:
        arr = arr[:, None]
    n = len(arr)
    ncol = max(1, min(nrow, n))
    nrows = max(1, int(np.ceil(n / ncol)))
    fig, axes = plt.subplots(nrows, ncol, figsize=(cell_inches * ncol, cell_inches * nrows + (0.4 if title else 0)),
                             squeeze=False)
    lo, hi = value_range if value_range is not None else (None, None)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        img = arr[i]
        if img.shape[0] == 3 and channel is None:
            rgb = np.transpose(img, (1, 2, 0))
            if value_range is not None:
                rgb = (rgb - lo) / (hi - lo)
            ax.imshow(np.clip(rgb, 0, 1))
        else:
            ax.imshow(img[channel or 0], cmap=cmap, vmin=lo, vmax=hi)
        if titles is not None and i < len(titles):
            ax.set_title(str(titles[i]), fontsize=7)
    if row_labels is not None:
        for r, label in enumerate(row_labels[:nrows]):
            axes[r, 0].set_axis_on()
            axes[r, 0].set_xticks([])
            axes[r, 0].set_yticks([])
            for spine in axes[r, 0].spines.values():
                spine.set_visible(False)
            axes[r, 0].set_ylabel(str(label), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig

def plot_training_log(run_dir_or_df, *, keys: Sequence[str] | None = None, title: str | None = None,
                      smooth: int = 1, ncols: int = 3) -> plt.Figure:
    """One panel per logged scalar against training step (from a run folder's ``log.jsonl``).

    Args:
        run_dir_or_df: a run folder, or the DataFrame ``medgan.train.read_log`` returns.
        keys: scalars to plot (default: all but step/time).
        smooth: rolling-mean window in log rows (1 = raw).
    """
    if isinstance(run_dir_or_df, (str, Path)):
        df = read_log(run_dir_or_df)
    else:
        df = run_dir_or_df
    keys = list(keys or [c for c in df.columns if c not in ("step", "time_s")])
    if not keys or df.empty:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, "no training log", ha="center", va="center")
        ax.set_axis_off()
        return fig
    ncols = min(ncols, len(keys))
    nrows = int(np.ceil(len(keys) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.4 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        series = df[key].rolling(smooth, min_periods=1).mean() if smooth > 1 else df[key]
        ax.plot(df["step"], series, lw=1.2)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig

def show_figure(fig: plt.Figure) -> None:
    """Display a figure in the notebook (embedded in the HTML report) and free it."""
    try:
        display(fig)
    finally:
        plt.close(fig)


def sample_progress(run_dir: str | Path, *, max_grids: int = 4, title: str | None = None) -> plt.Figure:
    """The sample grids a training run wrote (``<run_dir>/samples/step_*.png``), earliest to latest."""
    files = sorted((Path(run_dir) / "samples").glob("step_*.png"))
    if len(files) > max_grids:  # evenly spaced, always including the last
        picks = np.linspace(0, len(files) - 1, max_grids).round().astype(int)
        files = [files[i] for i in sorted(set(picks))]
    if not files:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, "no sample grids", ha="center", va="center")
        ax.set_axis_off()
        return fig
    fig, axes = plt.subplots(1, len(files), figsize=(3.2 * len(files), 3.4), squeeze=False)
    for ax, path in zip(axes[0], files):
        ax.imshow(plt.imread(path), cmap="gray")
        ax.set_title(f"step {int(path.stem.split('_')[1])}", fontsize=9)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def dataset_grid(dataset, *, n: int = 16, nrow: int = 8, key: str = "image", title: str | None = None,
                 **kwargs) -> plt.Figure:
    """The first ``n`` items' ``key`` tensors of a medgan dataset as an :func:`image_grid`."""
    n = min(n, len(dataset))
    images = torch.stack([dataset[i][key] for i in range(n)])
    return image_grid(images, nrow=nrow, title=title, **kwargs)
