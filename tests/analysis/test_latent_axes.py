import gc
import weakref

import numpy as np
import pytest
import torch

from medgan.analysis.latent_axes import (AxisWalk, axis_cosines, class_balance_weights, discover_axes,
                                         fit_latent_axes, sample_and_score, score_walk, single_finding_filter,
                                         walk_along_axis, walk_likelihoods, walk_summary)


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
    walked = walk_likelihoods(generate, score, np.zeros((2, d)), result.axes[1], [0, 1, 2, 3])
    assert walked.images.shape == (2, 4, 1, 4, d) and walked.probabilities.shape == (2, 4, 3)
    assert (np.diff(walked.probabilities[:, :, 1], axis=1) > 0).all()
    assert set(result.table().columns) == {"single-finding images", "axis fitted"}


def test_walk_summary_correlations():
    steps = [0, 1, 2]
    probs = np.zeros((2, 3, 2)); probs[:, :, 1] = [[0.1, 0.5, 0.9], [0.0, 0.4, 0.8]]
    table = walk_summary({"a": AxisWalk(probabilities=probs, images=torch.zeros(0))}, ["normal", "a"], steps,
                         severity={"a": np.array([[0, .2, .5]] * 2)})
    assert table.loc["a", "likelihood at end"] == pytest.approx(0.85)
    assert table.loc["a", "Spearman(step, likelihood)"] > 0.8 and table.loc["a", "Spearman(step, severity)"] > 0.8


# --- streaming (issue 14, part 3): a batch is scored and freed before the next is made ---------
def _tracking_scorer(seen):
    def score(images):
        gc.collect()
        seen.append(sum(r() is not None for r in seen_refs))  # batches handed over earlier, still alive
        seen_refs.append(weakref.ref(images))
        return torch.sigmoid(images.flatten(1)[:, :2]).double().numpy()
    seen_refs = []
    return score


def generate_toy(z):
    return torch.tanh(z)[:, None, None, :].expand(-1, 1, 3, z.shape[1]).contiguous()


def test_sample_and_score_streams_batches():
    alive = []
    z, probs = sample_and_score(generate_toy, _tracking_scorer(alive), z_dim=4, n=40, batch_size=4, seed=1)
    assert z.shape == (40, 4) and probs.shape == (40, 2)
    assert len(alive) == 10 and max(alive) == 0


def test_walks_stream_and_keep_only_the_first_starts_images():
    alive, severity_calls = [], []
    starts = np.random.default_rng(0).normal(size=(6, 4))
    axis = np.eye(4)[1]

    def severity(images):
        severity_calls.append(len(images))
        return images.flatten(1)[:, 1:2].double().numpy()

    walked = walk_likelihoods(generate_toy, _tracking_scorer(alive), starts, axis, [0, 1, 2], batch_size=4,
                              keep_images=1, extra_scores={"severity": severity})
    assert len(alive) == 5 and max(alive) == 0 and severity_calls == [4, 4, 4, 4, 2]  # 18 walked images
    assert walked.images.shape == (1, 3, 1, 3, 4) and walked.probabilities.shape == (6, 3, 2)
    assert walked.extra["severity"].shape == (6, 3, 1)
    full = walk_likelihoods(generate_toy, lambda x: torch.sigmoid(x.flatten(1)[:, :2]).double().numpy(), starts, axis,
                            [0, 1, 2], batch_size=64)
    np.testing.assert_allclose(walked.probabilities, full.probabilities)
    torch.testing.assert_close(walked.images[0], full.images[0])
