"""A sample grid of each phantom with its ground truth, for the docs and the quickstart.

``preview_figure(name, root, *, n_samples=4) -> matplotlib.figure.Figure`` reads the phantom
through its real loader (so the figure shows exactly what a notebook gets) and draws, per name:
cells: one crop per domain (RGB composite of Hoechst/Phalloidin/WGA) over its truth renders;
chest_ct: slices with the tumour mask outlined; brain: test CT over its true MRI;
pet: early over delayed (SUV) with tumour outlines; cxr: radiographs with lesion masks.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from medgan.data.brain_ct_mri import BrainCTMRI
from medgan.data.chest_xray import ChestXray
from medgan.data.nsclc_radiomics import NSCLCRadiomics
from medgan.data.pet_early_delayed import PETEarlyDelayed
from medgan.data.phantoms.cxr import ALL_FINDINGS
from medgan.data.rxrx19a import RxRx19a


def _rgb(cells: np.ndarray) -> np.ndarray:
    """(5, H, W) in [-1, 1] -> (H, W, 3) composite: R Phalloidin, G WGA, B Hoechst."""
    stack = (np.stack([cells[2], cells[4], cells[0]], -1) + 1) / 2
    return np.clip(stack * 1.6, 0, 1)


def _show(ax, image, title="", cmap="gray", vmin=-1, vmax=1):
    ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def preview_figure(name: str, root: str | os.PathLike, *, n_samples: int = 4):
    """Figure of ``n_samples`` samples of phantom ``name`` stored at ``root`` with ground truth."""
    root = Path(root)
    if name == "cells":
        data = RxRx19a(root, crop_size=None, image_size=128, with_truth=True)
        per_domain = [data.records[next(i for i, r in enumerate(data.rows) if r["label"] == d)]
                      for d in range(len(data.domain_names))]
        fig, axes = plt.subplots(2, len(per_domain), figsize=(2.2 * len(per_domain), 4.6), squeeze=False)
        first = data.records[0]
        for d, record in enumerate(per_domain):
            _show(axes[0, d], _rgb(record["image"]), f"real layout: {data.domain_names[d]}", cmap=None, vmin=0, vmax=1)
            _show(axes[1, d], _rgb(first["truth"][d]), f"truth: field 0 as {data.domain_names[d]}", cmap=None, vmin=0, vmax=1)
    elif name == "chest_ct":
        data = NSCLCRadiomics(root, crop_size=None, image_size=128, with_masks=True, tumour_slices_only=True)
        picks = np.linspace(0, len(data) - 1, n_samples).astype(int)
        fig, axes = plt.subplots(1, n_samples, figsize=(2.4 * n_samples, 2.6), squeeze=False)
        for ax, i in zip(axes[0], picks):
            r = data.records[i]
            _show(ax, r["image"][0], f"label {r['label']} ({r['meta']['histology'][:5]}.)")
            ax.contour(r["mask"][0], levels=[0.5], colors="r", linewidths=0.7)
    elif name == "brain":
        data = BrainCTMRI(root, domain="A", part="test", image_size=64, with_truth=True)
        picks = np.linspace(0, len(data) - 1, n_samples).astype(int)
        fig, axes = plt.subplots(2, n_samples, figsize=(2.2 * n_samples, 4.6), squeeze=False)
        for j, i in enumerate(picks):
            _show(axes[0, j], data.records[i]["image"][0], "test CT (testA)")
            _show(axes[1, j], data.records[i]["target"][0], "its true MRI")
    elif name == "pet":
        data = PETEarlyDelayed(root, suv_max=10.0, with_masks=True)
        with_tumour = [i for i, r in enumerate(data.records) if r["mask"].max() > 0] or list(range(len(data)))
        picks = [with_tumour[k] for k in np.linspace(0, len(with_tumour) - 1, n_samples).astype(int)]
        fig, axes = plt.subplots(2, n_samples, figsize=(2.2 * n_samples, 4.6), squeeze=False)
        for j, i in enumerate(picks):
            r = data.records[i]
            for row, key, label in ((0, "image", "early"), (1, "target", "delayed")):
                _show(axes[row, j], r[key][0], f"{label}, z={r['meta']['z_mm']:.0f} mm", cmap="gray_r")
                axes[row, j].contour(r["mask"][0], levels=[0.5], colors="r", linewidths=0.6)
    elif name == "cxr":
        data = ChestXray(root, image_size=128, with_masks=True)
        abnormal = [i for i, r in enumerate(data.rows) if r["meta"]["abnormal"]]
        normal = [i for i, r in enumerate(data.rows) if not r["meta"]["abnormal"]]
        picks = (normal[:1] + abnormal[: n_samples - 1]) if normal else abnormal[:n_samples]
        fig, axes = plt.subplots(1, len(picks), figsize=(2.6 * len(picks), 2.9), squeeze=False)
        colours = plt.get_cmap("tab10")
        for ax, i in zip(axes[0], picks):
            r = data.records[i]
            _show(ax, r["image"][0], r["meta"]["finding_labels"] or "No Finding")
            for k in range(len(ALL_FINDINGS)):
                if r["mask"][k].max() > 0:
                    ax.contour(r["mask"][k], levels=[0.5], colors=[colours(k)], linewidths=0.7)
    else:
        raise ValueError(f"unknown phantom {name!r}")
    fig.suptitle(f"phantom '{name}' read through its real loader", fontsize=9)
    fig.tight_layout()
    return fig
