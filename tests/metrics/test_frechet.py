import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from scipy import linalg

from medgan.metrics import feature_statistics, frechet_distance, frechet_distance_from_stats


def _reference(a, b):
    # pytorch-fid's scipy sqrtm route on float64 statistics.
    return calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


@pytest.mark.parametrize("n,d", [(2000, 16), (1500, 64)])
def test_matches_pytorch_fid_on_well_conditioned_features(n, d):
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(d, d)) / np.sqrt(d) + np.eye(d)
    a = rng.normal(size=(n, d)) @ mixing + 0.5
    b = rng.normal(size=(n, d)) @ (mixing * 1.2) - 0.3
    ours, ref = frechet_distance(a, b), _reference(a, b)
    assert ours == pytest.approx(ref, rel=1e-6)
    # torch tensors (float32) in, same number
    assert frechet_distance(torch.tensor(a), torch.tensor(b)) == pytest.approx(ref, rel=1e-6)


def test_closed_form_diagonal_gaussians():
    # Commuting covariances: d² = |Δμ|² + Σ (σ_a - σ_b)²
    var_a, var_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert frechet_distance_from_stats(mu_a, np.diag(var_a), mu_b, np.diag(var_b)) == pytest.approx(expected, rel=1e-12)


def test_closed_form_non_commuting_2x2():
    s1 = np.array([[2.0, 0.5], [0.5, 1.0]])
    s2 = np.array([[1.0, -0.3], [-0.3, 3.0]])
    m = s1 @ s2
    # For 2×2 M with real positive eigenvalues: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)).
    trace_sqrt = np.sqrt(np.trace(m) + 2 * np.sqrt(np.linalg.det(m)))
    expected = np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    assert frechet_distance_from_stats(np.zeros(2), s1, np.zeros(2), s2) == pytest.approx(expected, rel=1e-12)
    assert np.trace(linalg.sqrtm(m)).real == pytest.approx(trace_sqrt, rel=1e-10)


def test_rank_deficient_n_smaller_than_d_is_real_and_consistent():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(40, 128))
    b = rng.normal(size=(50, 128)) * 1.5 + 0.1
    value = frechet_distance(a, b)
    assert np.isfinite(value) and value > 0
    # Same value through the D×D statistics route (eigen square roots of singular covariances).
    mean_a, cov_a = feature_statistics(a)
    mean_b, cov_b = feature_statistics(b)
    assert frechet_distance_from_stats(mean_a, cov_a, mean_b, cov_b) == pytest.approx(value, rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)  # trace terms are ~128


def test_identical_sets_give_zero_and_symmetry():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(500, 20)), rng.normal(size=(400, 20)) + 1
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-10)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="feats_b"):
        frechet_distance(np.zeros((10, 4)), np.zeros((10, 5)))
    with pytest.raises(ValueError, match="feats_a"):
        frechet_distance(np.full((10, 4), np.nan), np.zeros((10, 4)))
