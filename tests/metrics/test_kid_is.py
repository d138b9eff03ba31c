import numpy as np
import pytest
import torch
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from medgan.metrics import inception_score, kernel_inception_distance


@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 64)).astype(np.float32)
    b = (rng.normal(size=(250, 64)) * 1.1 + 0.1).astype(np.float32)
    return a, b


@pytest.mark.parametrize("seed, subsets, block", [(2020, 10, 1 << 21), (7, 10, 1 << 21), (7, 10, 1000), (7, 2, 1 << 21)])
def test_kid_matches_torch_fidelity_with_same_seed(features, seed, subsets, block, monkeypatch):
    # Same subsets: both draw with numpy RandomState(seed), A then B per subset. 10 subsets take the
    # all-pairs route (in one block, or in blocks of 1000 kernel entries), 2 the per-subset loop.
    monkeypatch.setattr("medgan.metrics.kid.BLOCK_ELEMENTS", block)
    a, b = features
    ref = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=subsets,
                                 kid_subset_size=100, rng_seed=seed, verbose=False)
    mean, std = kernel_inception_distance(a, b, subsets=subsets, subset_size=100, seed=seed)
    assert mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-4, abs=1e-7)
    assert std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-3, abs=1e-7)


def test_kid_same_distribution_near_zero_and_shift_positive(features):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    same, _ = kernel_inception_distance(x, y, subsets=10, subset_size=200)
    shifted, _ = kernel_inception_distance(x, y + 1.0, subsets=10, subset_size=200)
    assert abs(same) < 0.02 < shifted


def test_kid_subset_too_large_is_clear(features):
    a, b = features
    with pytest.raises(ValueError, match="subset_size"):
        kernel_inception_distance(a, b, subset_size=1000)


def _probs(n=500, c=10, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * 3
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("shuffle_seed", [None, 2020])
def test_is_matches_torch_fidelity(shuffle_seed):
    probs = _probs()
    # torch-fidelity takes logits and applies softmax; log(p) are logits of p.
    ref = isc_features_to_metric(torch.log(torch.from_numpy(probs)), splits=10,
                                 shuffle=shuffle_seed is not None, rng_seed=shuffle_seed or 0)
    mean, std = inception_score(probs, splits=10, shuffle_seed=shuffle_seed)
    assert mean == pytest.approx(ref["inception_score_mean"], rel=1e-10)
    assert std == pytest.approx(ref["inception_score_std"], rel=1e-8)


def test_is_closed_form():
    # Confident and perfectly balanced over C classes: IS = C. All the same prediction: IS = 1.
    c = 4
    one_hot = np.eye(c)[np.arange(400) % c]
    assert inception_score(one_hot, splits=2)[0] == pytest.approx(c)
    assert inception_score(np.tile(one_hot[:1], (400, 1)), splits=2)[0] == pytest.approx(1.0)


def test_is_rejects_logits():
    with pytest.raises(ValueError, match="softmax"):
        inception_score(np.random.default_rng(0).normal(size=(20, 3)), splits=2)
