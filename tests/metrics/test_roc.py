import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from medgan.metrics import auroc, delong_test, sensitivity_specificity
from medgan.metrics.roc import delong_components


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(size=300) + labels, 1)  # rounding creates ties
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def _psi(x, y):
    return 1.0 if x > y else 0.5 if x == y else 0.0


def test_delong_worked_example_by_hand():
    # 3 positives, 3 negatives. Structural components computed directly from ψ:
    labels = np.array([1, 1, 1, 0, 0, 0])
    a = np.array([0.9, 0.8, 0.4, 0.5, 0.3, 0.2])
    b = np.array([0.7, 0.3, 0.6, 0.6, 0.1, 0.4])
    pos_a, neg_a, pos_b, neg_b = a[:3], a[3:], b[:3], b[3:]
    v10_a = np.array([np.mean([_psi(x, y) for y in neg_a]) for x in pos_a])
    v01_a = np.array([np.mean([_psi(x, y) for x in pos_a]) for y in neg_a])
    v10_b = np.array([np.mean([_psi(x, y) for y in neg_b]) for x in pos_b])
    v01_b = np.array([np.mean([_psi(x, y) for x in pos_b]) for y in neg_b])
    # By hand: A — 0.9, 0.8 beat all negatives, 0.4 beats 0.3 and 0.2: V10_a = (1, 1, 2/3), AUC_a = 8/9.
    np.testing.assert_allclose(v10_a, [1, 1, 2 / 3])
    np.testing.assert_allclose(v01_a, [2 / 3, 1, 1])
    # B — 0.7 beats all; 0.3 beats 0.1; 0.6 ties 0.6 (½), beats 0.1, 0.4: V10_b = (1, 1/3, 5/6).
    np.testing.assert_allclose(v10_b, [1, 1 / 3, 5 / 6])
    auc, got_v10, got_v01 = delong_components(labels, a)
    assert auc == pytest.approx(8 / 9)
    np.testing.assert_allclose(got_v10, v10_a)
    np.testing.assert_allclose(got_v01, v01_a)
    var = lambda u, v: np.cov(u, v)[0, 1]  # noqa: E731
    var_a = var(v10_a, v10_a) / 3 + var(v01_a, v01_a) / 3
    var_b = var(v10_b, v10_b) / 3 + var(v01_b, v01_b) / 3
    cov_ab = var(v10_a, v10_b) / 3 + var(v01_a, v01_b) / 3
    z = (v10_a.mean() - v10_b.mean()) / np.sqrt(var_a + var_b - 2 * cov_ab)
    auc_a, auc_b, p = delong_test(labels, a, b)
    assert (auc_a, auc_b) == (pytest.approx(8 / 9), pytest.approx(np.mean([1, 1 / 3, 5 / 6])))
    assert p == pytest.approx(2 * norm.sf(abs(z)), rel=1e-12)
    assert auc_b == pytest.approx(roc_auc_score(labels, b))


def test_delong_identical_scores_p_is_one_and_strong_difference_small_p():
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(100), np.zeros(100)].astype(int)
    good = labels * 2.0 + rng.normal(size=200)
    assert delong_test(labels, good, good)[2] == 1.0
    assert delong_test(labels, good, good * 3 + 1)[2] == 1.0  # same ranking, same AUC
    noise = rng.normal(size=200)
    assert delong_test(labels, good, noise)[2] < 1e-6


def test_sensitivity_specificity():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0])
    scores = np.array([0.9, 0.6, 0.5, 0.2, 0.5, 0.4, 0.3, 0.1, 0.0])
    sens, spec = sensitivity_specificity(labels, scores, threshold=0.5)
    assert sens == pytest.approx(3 / 4) and spec == pytest.approx(4 / 5)


def test_single_class_and_bad_labels_are_clear():
    with pytest.raises(ValueError, match="one class"):
        auroc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="binary"):
        auroc([0, 1, 2], [0.1, 0.2, 0.3])
