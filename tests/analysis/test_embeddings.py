"""t-SNE / UMAP maps of real vs generated features."""

import matplotlib
import numpy as np
import pytest

from medgan.analysis.embeddings import embed_2d, embedding_figure

matplotlib.use("Agg")


def two_clusters(n=30):
    rng = np.random.default_rng(0)
    return {"Real": rng.normal(0, 1, (n, 5)), "PGGAN": rng.normal(8, 1, (n, 5))}


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_embedding_separates_distinct_sets(method):
    coords = embed_2d(two_clusters(), method=method, seed=0)
    assert list(coords.columns) == ["set", "index", "x", "y"] and len(coords) == 60
    centres = coords.groupby("set")[["x", "y"]].mean()
    spread = coords.groupby("set")[["x", "y"]].std().to_numpy().max()
    assert np.linalg.norm(centres.loc["Real"] - centres.loc["PGGAN"]) > 2 * spread


def test_figure_draws_thumbnails_and_rejects_bad_input():
    sets = two_clusters(12)
    coords = embed_2d(sets, method="tsne", seed=0)
    images = {k: np.random.default_rng(1).uniform(-1, 1, (12, 1, 8, 8)) for k in sets}
    fig = embedding_figure(coords, images, thumbnails=3, title="t")
    assert len(fig.axes[0].artists) == 6
    with pytest.raises(ValueError, match="method"):
        embed_2d(sets, method="pca")
    with pytest.raises(ValueError, match="width"):
        embed_2d({"a": np.zeros((5, 2)), "b": np.zeros((5, 3))})


class RowCounter:
    """An image set indexable by row that counts the rows read (a dataset too large to gather)."""

    def __init__(self, n):
        self.n, self.read = n, []

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.read.append(i)
        return {"image": np.full((1, 8, 8), -1.0 + 2 * i / self.n, np.float32)}

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole set was gathered")


def test_thumbnails_read_only_their_rows():
    sets = two_clusters(40)
    coords = embed_2d(sets, method="tsne", seed=0)
    images = {k: RowCounter(40) for k in sets}
    fig = embedding_figure(coords, images, thumbnails=4)
    assert len(fig.axes[0].artists) == 8
    assert all(len(source.read) == 4 and len(set(source.read)) == 4 for source in images.values())
