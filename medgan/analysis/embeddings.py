"""2-D maps (t-SNE, UMAP) of real vs generated features, with image thumbnails on the points.

As the CT study's Fig. 4: real points red, generated blue, and a few points replaced by the image
they stand for, framed in the colour of their set.
"""

from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import Normalize
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from sklearn.manifold import TSNE

__all__ = ["embed_2d", "embedding_figure", "SET_COLOURS"]

SET_COLOURS = {"Real": "tab:red", "DCGAN": "tab:blue", "PGGAN": "tab:blue"}


def embed_2d(feature_sets: Mapping[str, np.ndarray], *, method: str = "tsne", seed: int = 0,
             perplexity: float = 30.0, n_neighbors: int = 15) -> pd.DataFrame:
    """Embed the union of feature sets (each (N_i, D)) in 2-D.

    Features are standardised over the union first (every dimension mean 0, sd 1) so no single
    feature dominates the distances. ``method``: "tsne" (scikit-learn; perplexity capped at
    (N - 1) / 3) or "umap" (umap-learn; n_neighbors capped at N - 1).

    Returns a DataFrame with columns set, index (row within its set), x, y.
    """
    names = list(feature_sets)
    arrays = [np.asarray(feature_sets[k], dtype=np.float64) for k in names]
    if not arrays or any(a.ndim != 2 or len(a) == 0 for a in arrays):
        raise ValueError("embed_2d: every feature set must be a non-empty (N, D) array")
    if len({a.shape[1] for a in arrays}) != 1:
        raise ValueError(f"embed_2d: feature sets differ in width: {[a.shape[1] for a in arrays]}")
    x = np.concatenate(arrays)
    x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)
    n = len(x)
    if n < 4:
        raise ValueError(f"embed_2d: need at least 4 points, got {n}")
    if method == "tsne":
        xy = TSNE(n_components=2, perplexity=min(perplexity, (n - 1) / 3), init="pca", random_state=seed).fit_transform(x)
    elif method == "umap":
        import umap  # umap-learn compiles with numba on import (seconds); only this method needs it

        xy = umap.UMAP(n_components=2, n_neighbors=int(min(n_neighbors, n - 1)), random_state=seed,
                       n_jobs=1).fit_transform(x)
    else:
        raise ValueError(f"embed_2d: method must be 'tsne' or 'umap', got {method!r}")
    sets = np.concatenate([[k] * len(a) for k, a in zip(names, arrays)])
    index = np.concatenate([np.arange(len(a)) for a in arrays])
    return pd.DataFrame({"set": sets, "index": index, "x": xy[:, 0], "y": xy[:, 1]})


def _thumbnail(source, row: int) -> np.ndarray:
    """Row ``row`` of an image set, (H, W) float32 (the first channel): only that row is read."""
    item = source[row]
    if isinstance(item, Mapping):
        item = item["image"]
    image = np.asarray(item.detach().cpu() if torch.is_tensor(item) else item, dtype=np.float32)
    return image[0] if image.ndim == 3 else image


def embedding_figure(coords: pd.DataFrame, images: Mapping[str, np.ndarray], *, thumbnails: int = 12,
                     seed: int = 0, title: str | None = None, colours: Mapping[str, str] | None = None,
                     zoom: float | None = None, ax=None):
    """Scatter of :func:`embed_2d` output with ``thumbnails`` images per set drawn on their points.

    ``images[set]`` is (N, C, H, W) or (N, H, W) in [-1, 1], rows matching ``coords.index`` of
    that set (the first channel is shown): an array or tensor, or anything indexable by row — a
    dataset of items with an ``image`` — of which only the thumbnails' rows are read, so the
    embedding of a large set never gathers its images. Thumbnails are framed in their set's colour.
    """
    colours = {**SET_COLOURS, **(colours or {})}
    default_cycle = iter(["tab:green", "tab:orange", "tab:purple", "tab:brown"])
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 6))
    else:
        fig = ax.figure
    rng = np.random.default_rng(seed)
    for name, part in coords.groupby("set", sort=False):
        colour = colours.get(name) or next(default_cycle)
        colours[name] = colour
        ax.scatter(part["x"], part["y"], s=8, alpha=0.5, c=colour, label=f"{name} (n={len(part)})", linewidths=0)
    for name, part in coords.groupby("set", sort=False):
        if name not in images or thumbnails <= 0:
            continue
        chosen = rng.choice(len(part), size=min(thumbnails, len(part)), replace=False)
        for j in chosen:
            row = part.iloc[j]
            image = _thumbnail(images[name], int(row["index"]))
            z = zoom if zoom is not None else 28.0 / image.shape[-1]
            thumb = OffsetImage(np.clip((image + 1) / 2, 0, 1), cmap="gray", zoom=z, norm=Normalize(0.0, 1.0))
            box = AnnotationBbox(thumb, (row["x"], row["y"]), frameon=True, pad=0.1,
                                 bboxprops={"edgecolor": colours[name], "linewidth": 1.5})
            ax.add_artist(box)
    ax.legend(loc="best", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return fig
