import numpy as np
import pytest

from medgan.metrics import prd, prd_from_histograms


def _modes(n_per_mode, modes, dim=12, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[: max(modes) + 1] * 50  # far apart: k-means finds them
    return np.concatenate([centres[m] + rng.normal(size=(n_per_mode, dim)) for m in modes])


def test_identical_distributions_give_f_close_to_one():
    real, fake = _modes(100, range(8), seed=0), _modes(100, range(8), seed=1)
    f8, f1_8 = prd(real, fake, num_clusters=8, num_runs=2, seed=0).max_f_beta(8)
    assert f8 > 0.95 and f1_8 > 0.95


def test_disjoint_distributions_give_f_close_to_zero():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(400, 8)), rng.normal(size=(400, 8)) + 100
    f8, f1_8 = prd(real, fake, num_clusters=10, num_runs=2, seed=0).max_f_beta(8)
    assert f8 < 0.05 and f1_8 < 0.05


def test_dropping_half_the_modes_lowers_recall_far_more_than_precision():
    real = _modes(100, range(10), seed=0)
    fake = _modes(200, range(5), seed=1)  # mode collapse onto half the modes, same sample count
    f8, f1_8 = prd(real, fake, num_clusters=10, num_runs=3, seed=0).max_f_beta(8)
    assert f1_8 > 0.95          # precision: every generated sample is realistic
    assert f8 < 0.6             # recall: half the real modes are never generated
    assert f1_8 - f8 > 0.4


def test_lambda_curve_matches_hand_computed_histograms():
    fake_hist, real_hist = [2, 2, 0], [1, 1, 2]  # Q = (.5, .5, 0), P = (.25, .25, .5)
    curve = prd_from_histograms(fake_hist, real_hist, num_angles=3)  # λ ≈ 0, 1, ∞
    # λ = 1: α = min(.25,.5) + min(.25,.5) + min(.5,0) = 0.5, β = α/λ = 0.5
    assert curve.precision[1] == pytest.approx(0.5) and curve.recall[1] == pytest.approx(0.5)
    # λ → ∞: α = Σ_{P>0} Q = 1, β = α/λ → 0
    assert curve.precision[2] == pytest.approx(1.0) and curve.recall[2] == pytest.approx(0.0, abs=1e-6)
    # λ → 0: α → 0, β = Σ min(P, Q/λ) → Σ_{Q>0} P = 0.5
    assert curve.precision[0] == pytest.approx(0.0, abs=1e-6) and curve.recall[0] == pytest.approx(0.5)
    # A general slope by hand: λ = tan(θ) for the 5-angle grid.
    curve5 = prd_from_histograms(fake_hist, real_hist, num_angles=5)
    lam = np.tan(np.linspace(1e-10, np.pi / 2 - 1e-10, 5))[1]
    alpha = min(lam * 0.25, 0.5) * 2 + min(lam * 0.5, 0.0)
    assert curve5.precision[1] == pytest.approx(alpha) and curve5.recall[1] == pytest.approx(alpha / lam)


def test_clustered_curve_equals_curve_of_cluster_counts():
    # With one k-means cluster per well-separated mode, the PRD curve is that of the mode counts.
    real = np.concatenate([_modes(60, [0], seed=0), _modes(30, [1], seed=1), _modes(10, [2], seed=2)])
    fake = np.concatenate([_modes(20, [0], seed=3), _modes(30, [1], seed=4), _modes(50, [2], seed=5)])
    curve = prd(real, fake, num_clusters=3, num_angles=101, num_runs=1, seed=0)
    expected = prd_from_histograms([20, 30, 50], [60, 30, 10], num_angles=101)
    np.testing.assert_allclose(curve.precision, expected.precision, atol=1e-12)
    np.testing.assert_allclose(curve.recall, expected.recall, atol=1e-12)


def test_unequal_sizes_rejected():
    with pytest.raises(ValueError, match="equally many"):
        prd(np.zeros((10, 2)), np.ones((12, 2)))
