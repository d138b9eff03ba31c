import numpy as np
import pytest
import torch

from medgan.analysis.latent_axes import (axis_cosines, class_balance_weights, discover_axes, fit_latent_axes,
                                         sample_and_score, score_walk, single_finding_filter, walk_along_axis,
                                         walk_likelihoods, walk_summary)


def test_single_finding_filter():
    p = np.array([[0.95, 0.05, 0.0],   # one confident class (0)
                  [0.05, 0.92, 0.10],  # class 1, others at the 0.1 edge -> kept
                  [0.95, 0.2, 0.0],    # another class above 0.1 -> dropped
                  [0.85, 0.0, 0.0],    # top below 0.9 -> dropped
                  [0.0, 0.0, 0.9]])    # class 2 at the 0.9 edge -> kept
    mask, cls = single_finding_filter(p)
    np.testing.assert_array_equal(mask, [True, True, False, False, True])
    np.testing.assert_array_equal(cls, [0, 1, -1, -1, 2])
    with pytest.raises(ValueError):
        single_finding_filter(np.zeros(3))


def test_class_balance_weights_give_each_class_equal_total():
    c = np.array([0] * 8 + [1] * 2)
    w = class_balance_weights(c)
    assert w[c == 0].sum() == pytest.approx(w[c == 1].sum())
    assert w.mean() == pytest.approx(1.0)


def test_weighted_regression_recovers_planted_axes_in_toy_latent():
    rng = np.random.default_rng(0)
    d, n = 32, 4000
    planted = rng.normal(size=(2, d))
    planted /= np.linalg.norm(planted, axis=1, keepdims=True)
    z = rng.normal(size=(n, d))
    # Two "findings" whose classifier likelihood rises along a planted direction; finding 1 rare.
    logits = np.stack([2.5 * z @ planted[0] - 1.0, 3.0 * z @ planted[1] - 4.0], 1)
    probs = 1 / (1 + np.exp(-logits)) + rng.normal(scale=0.02, size=(n, 2))
    classes = (probs[:, 1] > 0.5).astype(int)
    axes = fit_latent_axes(z, probs, sample_weight=class_balance_weights(classes))
    cos = axis_cosines(axes, planted)
    assert (cos > 0.95).all(), cos
    # An unrelated random direction is nearly orthogonal in 32-d.
    assert abs(axis_cosines(axes[:1], rng.normal(size=(1, d)))[0]) < 0.5


def test_walk_raises_the_score_along_the_axis():
    axis = np.zeros(8); axis[3] = 1.0
    path = walk_along_axis(np.zeros(8), axis, [0, 1, 2])
    assert path.shape == (3, 8) and path[2, 3] == 2.0
    assert walk_along_axis(np.zeros((5, 8)), axis, [0, 1]).shape == (5, 2, 8)
    gen = lambda z: z[:, None, None, :].expand(-1, 1, 8, 8)
    score = lambda img: torch.sigmoid(img[:, 0, 0, 3:4]).numpy()
    images, probs = score_walk(gen, score, np.zeros(8), axis, np.linspace(-3, 3, 7))
    assert images.shape == (7, 1, 8, 8) and np.all(np.diff(probs[:, 0]) > 0)


def test_discover_axes_end_to_end_on_a_toy_generator():
    d = 6
    planted = np.eye(d)[:3]  # class k's likelihood rises along latent dimension k

    def generate(z):
        return (z / 4)[:, None, None, :].expand(-1, 1, 4, d).contiguous()  # images stay in [-1, 1]

    def score(images):
        z = 4 * images[:, 0, 0, :].double().numpy()
        logits = 4 * z[:, :3] - np.array([[0.0, 5.0, 5.0]])
        logits[:, 0] = -4 * z[:, 1] - 4 * z[:, 2] + 2  # "normal" when neither finding
        return 1 / (1 + np.exp(-logits))

    z, probs = sample_and_score(generate, score, z_dim=d, n=6000, batch_size=1000, seed=0)
    result = discover_axes(z, probs, ["normal", "a", "b"], min_images=5)
    assert result.found == {"normal": True, "a": True, "b": True}
    assert axis_cosines(result.axes[1:], planted[1:]).min() > 0.8
    images, walk = walk_likelihoods(generate, score, np.zeros((2, d)), result.axes[1], [0, 1, 2, 3])
    assert images.shape == (2, 4, 1, 4, d) and walk.shape == (2, 4, 3)
    assert (np.diff(walk[:, :, 1], axis=1) > 0).all()
    assert set(result.table().columns) == {"single-finding images", "axis fitted"}


def test_walk_summary_correlations():
    steps = [0, 1, 2]
    probs = np.zeros((2, 3, 2)); probs[:, :, 1] = [[0.1, 0.5, 0.9], [0.0, 0.4, 0.8]]
    table = walk_summary({"a": (None, probs)}, ["normal", "a"], steps, severity={"a": np.array([[0, .2, .5]] * 2)})
    assert table.loc["a", "likelihood at end"] == pytest.approx(0.85)
    assert table.loc["a", "Spearman(step, likelihood)"] > 0.8 and table.loc["a", "Spearman(step, severity)"] > 0.8
