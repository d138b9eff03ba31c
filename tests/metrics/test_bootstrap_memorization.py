import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medgan.metrics import auroc, bootstrap_ci, mean_sd, memorization


def test_bootstrap_ci_of_a_mean_matches_normal_theory():
    rng = np.random.default_rng(0)
    x = rng.normal(loc=2.0, scale=1.0, size=400)
    ci = bootstrap_ci(np.mean, x, n_boot=2000, seed=1)
    half_width = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert ci.estimate == pytest.approx(x.mean())
    assert ci.low < ci.estimate < ci.high
    assert (ci.high - ci.low) / 2 == pytest.approx(half_width, rel=0.15)
    assert bootstrap_ci(np.mean, x, n_boot=200, seed=1) == bootstrap_ci(np.mean, x, n_boot=200, seed=1)


def test_bootstrap_ci_of_auroc_resamples_cases_jointly():
    rng = np.random.default_rng(2)
    labels = np.r_[np.ones(15), np.zeros(15)].astype(int)
    scores = labels + rng.normal(size=30)
    ci = bootstrap_ci(auroc, labels, scores, n_boot=300, seed=0)
    assert ci.estimate == pytest.approx(roc_auc_score(labels, scores))
    assert ci.low <= ci.estimate <= ci.high and ci.n_valid == 300


def test_mean_sd():
    result = mean_sd([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (result.mean, result.sd, result.n) == (3.0, pytest.approx(np.std([1, 2, 3, 4, 5], ddof=1)), 5)
    assert mean_sd([7.0]).sd == 0.0


def test_memorization_flags_copies_and_not_fresh_samples():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(300, 16))
    holdout = rng.normal(size=(300, 16))
    fresh = rng.normal(size=(200, 16))
    copies = train[:50] + rng.normal(scale=1e-3, size=(50, 16))
    result = memorization(train, np.concatenate([copies, fresh]), holdout)
    assert result.copied[:50].all()
    assert result.copied[50:].mean() < 0.05
    np.testing.assert_array_equal(result.nearest_train_index[:50], np.arange(50))
    assert np.all(result.ratio[:50] < 0.01) and np.median(result.ratio[50:]) > 0.7
    # nearest-neighbour distances are exact
    d = np.linalg.norm(fresh[:, None] - train[None], axis=2)
    np.testing.assert_allclose(result.nearest_train_distance[50:], d.min(1), rtol=1e-12)
    np.testing.assert_array_equal(result.nearest_train_index[50:], d.argmin(1))
    assert result.fraction_copied == pytest.approx(result.copied.mean())
