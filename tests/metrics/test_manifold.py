import numpy as np
import pytest
import torch
from prdc import compute_prdc

from medgan.metrics import density_coverage, improved_precision_recall, manifold_metrics


@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(0)
    real = (rng.normal(size=(600, 32)) + 5).astype(np.float32)
    fake = (rng.normal(size=(500, 32)) * 1.2 + 5.3).astype(np.float32)
    return real, fake


def test_matches_prdc(features, capsys):
    real, fake = features
    ref3, ref5 = compute_prdc(real, fake, nearest_k=3), compute_prdc(real, fake, nearest_k=5)
    precision, recall = improved_precision_recall(real, fake, k=3)
    density, coverage = density_coverage(real, fake, k=5)
    assert (precision, recall) == (pytest.approx(ref3["precision"], abs=1e-12), pytest.approx(ref3["recall"], abs=1e-12))
    assert density == pytest.approx(ref5["density"], abs=1e-12)
    assert coverage == pytest.approx(ref5["coverage"], abs=1e-12)
    combined = manifold_metrics(real, fake, k_precision_recall=3, k_density_coverage=5, block_size=37)
    assert (combined.precision, combined.recall, combined.density, combined.coverage) == (
        precision, recall, density, coverage)


def test_block_size_and_torch_input_do_not_change_values(features):
    real, fake = features
    a = manifold_metrics(real, fake)
    b = manifold_metrics(torch.from_numpy(real), torch.from_numpy(fake), block_size=1)
    assert a == b


def test_same_distribution_is_high_and_shift_is_low():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same = manifold_metrics(real, fake)
    far = manifold_metrics(real, fake + 10)
    assert same.precision > 0.6 and same.recall > 0.6 and same.coverage > 0.8 and 0.7 < same.density < 1.3
    assert far.precision == far.recall == far.density == far.coverage == 0.0


def test_duplicates_follow_prdc_tie_rule():
    rng = np.random.default_rng(4)
    base = rng.normal(size=(50, 4)).astype(np.float32)
    real = np.concatenate([base, base[:10]])  # exact duplicates: zero-distance neighbours
    fake = np.concatenate([base[:20], rng.normal(size=(30, 4)).astype(np.float32)])
    ref = compute_prdc(real, fake, nearest_k=3)
    got = manifold_metrics(real, fake, k_precision_recall=3, k_density_coverage=3)
    assert (got.precision, got.recall, got.density, got.coverage) == pytest.approx(
        (ref["precision"], ref["recall"], ref["density"], ref["coverage"]), abs=1e-12)


def test_k_too_large():
    with pytest.raises(ValueError, match="k="):
        improved_precision_recall(np.zeros((3, 2)), np.zeros((3, 2)), k=3)


def test_exact_when_float32_distances_are_useless():
    # Two far-apart clusters with tiny spread: float32 GEMM distances within a cluster are pure
    # rounding noise, so every decision must come from the float64 re-check — and match prdc
    # (sklearn computes float32 distances with float64 accumulation).
    rng = np.random.default_rng(5)
    offset = np.zeros(16)
    offset[0] = 3000.0

    def sample(n):
        side = np.where(rng.random(n) < 0.5, 1.0, -1.0)[:, None]
        return side * offset + rng.normal(scale=1e-2, size=(n, 16))

    real, fake = sample(150), sample(140)
    ref = compute_prdc(real, fake, nearest_k=3)
    got = manifold_metrics(real, fake, k_precision_recall=3, k_density_coverage=3)
    assert (got.precision, got.recall, got.density, got.coverage) == pytest.approx(
        (ref["precision"], ref["recall"], ref["density"], ref["coverage"]), abs=1e-12)
    assert 0.5 < got.precision < 1 and 0.5 < got.recall < 1
