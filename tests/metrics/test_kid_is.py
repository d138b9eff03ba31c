import numpy as np
import pytest
import torch
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from medgan.metrics import inception_score, kernel_inception_distance, kid
from medgan.metrics._arrays import as_features


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


def _kid_float64_loop(a, b, subsets, m, seed):
    """The definition, subset by subset, all in float64 (torch-fidelity's draws)."""
    rng = np.random.RandomState(seed)
    a, b, gamma, mmds = a.astype(np.float64), b.astype(np.float64), 1.0 / a.shape[1], []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
        k_xx, k_yy, k_xy = ((gamma * p @ q.T + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))
        mmds.append((k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
                    - 2 * k_xy.sum() / (m * m))
    return np.mean(mmds), np.std(mmds)


@pytest.mark.parametrize("subsets", [12, 2])
@pytest.mark.parametrize("block", [1 << 20, 1000, 4096])
def test_kid_tiles_match_float64_definition(block, subsets, monkeypatch):
    # All pairs, in square tiles (one, or ragged ones with the symmetric k_xx, k_yy halves), against the
    # float64 subset loop: only the float32 dot products differ.
    monkeypatch.setattr("medgan.metrics.kid.BLOCK_ELEMENTS", block)
    rng = np.random.default_rng(3)
    a = np.abs(rng.normal(size=(330, 48))).astype(np.float32)
    b = (np.abs(rng.normal(size=(290, 48))) * 1.1).astype(np.float32)
    mean, std = kernel_inception_distance(a, b, subsets=subsets, subset_size=120, seed=5)
    ref_mean, ref_std = _kid_float64_loop(a, b, subsets, 120, 5)
    assert mean == pytest.approx(ref_mean, rel=1e-6)
    assert std == pytest.approx(ref_std, rel=1e-5)


@pytest.mark.parametrize("chunk", [1 << 15, 1100, 120, 50])
def test_kid_subset_loop_matches_float64_definition(chunk, monkeypatch):
    # Few subsets of a large set take the subset loop; its float64 sums run in row chunks: one chunk,
    # 9 rows a chunk with a ragged last one, one row, or a buffer smaller than a row (then one row).
    monkeypatch.setattr("medgan.metrics.kid.CHUNK_ELEMENTS", chunk)
    calls = []
    per_subset = kid._per_subset
    monkeypatch.setattr("medgan.metrics.kid._per_subset", lambda *a, **k: calls.append(1) or per_subset(*a, **k))
    rng = np.random.default_rng(6)
    a = np.abs(rng.normal(size=(3000, 16))).astype(np.float32)
    b = (np.abs(rng.normal(size=(2800, 16))) * 1.1).astype(np.float32)
    mean, std = kernel_inception_distance(a, b, subsets=3, subset_size=120, seed=5)
    ref_mean, ref_std = _kid_float64_loop(a, b, 3, 120, 5)
    assert calls == [1]
    assert mean == pytest.approx(ref_mean, rel=1e-6)
    assert std == pytest.approx(ref_std, rel=1e-5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_kid_rejects_non_finite_features(features, bad):
    a, b = features[0].copy(), features[1]
    a[17, 3] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        kernel_inception_distance(a, b, subsets=2, subset_size=100)


def test_feature_check_falls_back_when_the_sum_overflows():
    # as_features (which KID calls) checks finiteness by a sum first; a float32 sum that overflows to inf
    # must fall back to the entrywise check, not reject finite features.
    x = np.full((3000, 8), 3e38, dtype=np.float32)
    assert as_features(x, name="x").shape == (3000, 8)
    x[2500, 5] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        as_features(x, name="x")


def test_kid_gpu_code_paths_agree_with_the_cpu_ones():
    # The torch branches (taken for features on a GPU) run here on CPU tensors, called directly.
    rng = np.random.default_rng(4)
    a = np.abs(rng.normal(size=(200, 32))).astype(np.float32)
    b = (np.abs(rng.normal(size=(180, 32))) * 1.2).astype(np.float32)
    kernel = dict(degree=3, gamma=1 / 32, coef0=1.0)
    draws = [(rng.choice(200, 50, replace=False), rng.choice(180, 50, replace=False)) for _ in range(3)]
    on_gpu = kid._per_subset(torch.from_numpy(a), torch.from_numpy(b), draws, kernel=kernel)
    assert on_gpu == pytest.approx(kid._per_subset(a, b, draws, kernel=kernel), rel=1e-6)
    in_a = np.zeros((200, 3), bool)
    for i, (idx, _) in enumerate(draws):
        in_a[idx, i] = True
    w = torch.from_numpy(in_a.astype(np.float64))
    t = torch.from_numpy(a)
    total, diagonal = kid._subset_sums_torch(t, t, w, w, kernel=kernel, block=64)
    ref_total, ref_diagonal = kid._subset_sums_numpy(a, a, in_a, in_a, kernel=kernel, symmetric=True)
    np.testing.assert_allclose(total, ref_total, rtol=1e-6)
    np.testing.assert_allclose(diagonal, ref_diagonal, rtol=1e-6)
