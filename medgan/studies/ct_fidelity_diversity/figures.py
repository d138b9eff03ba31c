"""The CT study's figures (DCGAN vs PGGAN): PGGAN growth, improved P&R against k, PRD curves,
run-to-run spread, and the nearest-training-neighbour grid of the memorisation audit."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["growth_figure", "k_sweep_figure", "prd_figure", "spread_figure", "nearest_neighbour_grid"]

MODEL_COLOURS = {"DCGAN": "goldenrod", "PGGAN": "green", "Real": "tab:red",
                 "DCGAN (untrained)": "grey", "PGGAN (untrained)": "black"}


def _colour(name: str, i: int) -> str:
    return MODEL_COLOURS.get(name, f"C{i}")


def growth_figure(history: pd.DataFrame, schedule: Sequence[Mapping], *, title: str = "PGGAN growth") -> plt.Figure:
    """Resolution and fade-in alpha (from the schedule) above the critic/generator losses (from the log)."""
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    steps, res, alpha = [], [], []
    for row in schedule:
        first, last, fade = int(row["first_step"]), int(row["last_step"]), int(row["fade_in_steps"])
        for s in range(first, last + 1, max(1, (last - first + 1) // 50)):
            steps.append(s)
            res.append(row["resolution"])
            alpha.append(min(1.0, (s - first + 1) / fade) if fade else 1.0)
    ax1.step(steps, res, where="post", color="tab:purple", label="resolution (px)")
    ax1.set_yscale("log", base=2)
    ax1.set_ylabel("resolution (px)")
    for row in schedule:
        ax1.axvline(row["first_step"], color="grey", lw=0.5, ls=":")
    twin = ax1.twinx()
    twin.plot(steps, alpha, color="tab:orange", lw=1, label="fade-in alpha")
    twin.set_ylabel("alpha")
    twin.set_ylim(-0.05, 1.05)
    ax1.set_title(title)
    for key, colour in (("loss_D", "tab:red"), ("loss_G", "tab:blue"), ("wasserstein", "tab:green")):
        if key in history:
            ax2.plot(history["step"], history[key], color=colour, lw=1, label=key)
    ax2.set_xlabel("iteration")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def k_sweep_figure(sweep: pd.DataFrame, *, extractor: str = "", title: str | None = None) -> plt.Figure:
    """Improved precision (solid) and recall (dashed) against k, mean over seeds with a ±sd band (paper Fig. 5)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (model, part) in enumerate(sweep.groupby("model", sort=False)):
        g = part.groupby("k")
        for metric, ls in (("precision", "-"), ("recall", "--")):
            m, s = g[metric].mean(), g[metric].std(ddof=1).fillna(0)
            ax.plot(m.index, m.values, ls, color=_colour(model, i), marker="o", ms=3, label=f"{model} {metric}")
            ax.fill_between(m.index, m - s, m + s, color=_colour(model, i), alpha=0.15)
    ax.set_xlabel("k (nearest neighbours)")
    ax.set_ylabel("improved precision / recall")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title or f"Improved P&R vs k — {extractor}", fontsize=9)
    fig.tight_layout()
    return fig


def prd_figure(curves: Mapping[str, object], *, extractor: str = "", beta: float = 8.0) -> plt.Figure:
    """PRD curves (recall on x, precision on y) with each model's F_8 / F_1/8 in the legend."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for i, (name, curve) in enumerate(curves.items()):
        f, f_inv = curve.max_f_beta(beta)
        ax.plot(curve.recall, curve.precision, color=_colour(name, i),
                label=f"{name}: F_{beta:g}={f:.2f}, F_1/{beta:g}={f_inv:.2f}")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.legend(fontsize=7)
    ax.set_title(f"PRD (Sajjadi et al. 2018) — {extractor}", fontsize=9)
    fig.tight_layout()
    return fig


def spread_figure(spread: pd.DataFrame, *, title: str = "Run-to-run spread on fixed features") -> plt.Figure:
    """Each run's value as a dot, per model and metric (k-means PRD moves; improved P&R does not)."""
    metrics = [c for c in spread.columns if c not in ("model", "run")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics), 3), squeeze=False)
    models = list(dict.fromkeys(spread["model"]))
    for ax, metric in zip(axes[0], metrics):
        for i, model in enumerate(models):
            v = spread.loc[spread["model"] == model, metric].to_numpy()
            ax.scatter(np.full(len(v), i) + np.linspace(-0.15, 0.15, len(v)), v, s=14, color=_colour(model, i))
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, rotation=30, fontsize=7)
        ax.set_title(metric, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def nearest_neighbour_grid(generated, nearest_training, distances: np.ndarray, *,
                           threshold: float | None = None, title: str | None = None) -> plt.Figure:
    """Top row: generated images; bottom row: the nearest training image of each (the pairs of the
    memorisation audit, closest first).

    ``generated`` and ``nearest_training`` (n, C, H, W) in [-1, 1], row i a pair; ``distances`` (n,)
    their feature-space distances (:func:`medgan.metrics.memorization`). Titles give the distance
    and mark a copy when it is below ``threshold``.
    """
    gen, train, distances = np.asarray(generated), np.asarray(nearest_training), np.asarray(distances)
    fig, axes = plt.subplots(2, len(gen), figsize=(1.4 * len(gen), 3.2), squeeze=False)
    for j in range(len(gen)):
        axes[0, j].imshow(gen[j, 0], cmap="gray", vmin=-1, vmax=1)
        flag = " copy?" if threshold is not None and distances[j] < threshold else ""
        axes[0, j].set_title(f"d={distances[j]:.2g}{flag}", fontsize=7)
        axes[1, j].imshow(train[j, 0], cmap="gray", vmin=-1, vmax=1)
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("generated", fontsize=8)
    axes[1, 0].set_ylabel("nearest train", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
