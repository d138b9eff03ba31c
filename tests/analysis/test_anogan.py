import gc
import weakref

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage
from torch import nn

from medgan.analysis.anogan import (ANOGAN, BASELINE, UpperQuantile, anomaly_maps, anomaly_scores,
                                    compare_localisation, detection_table, dice, evaluate_anomaly_detection, invert,
                                    iter_inversions, localisation, mean_image_residual, smooth_residual,
                                    threshold_at_specificity)
from medgan.metrics.roc import delong_test


class BlobGenerator(nn.Module):
    """z (B, 2) -> a Gaussian blob whose centre is z (a normal-only 'generator')."""

    z_dim = 2

    def forward(self, z):
        yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
        c = 8 + 3 * torch.tanh(z)
        blob = torch.exp(-((yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2) / 8)
        return (blob * 2 - 1)[:, None]


def test_inversion_lowers_the_residual_and_finds_the_latent():
    G = BlobGenerator()
    z_true = torch.tensor([[0.5, -0.8], [-1.0, 0.3]])
    target = G(z_true)
    res = invert(G, target, steps=150, lr=0.1, restarts=3, seed=0)
    assert res.losses.shape == (150, 2)
    assert (res.losses[-1] < res.losses[0]).all()
    assert res.losses[-1].max() < 1e-3
    torch.testing.assert_close(res.reconstruction, target, atol=0.05, rtol=0)
    assert res.seconds_per_query > 0
    # Deterministic under a seed.
    again = invert(G, target, steps=150, lr=0.1, restarts=3, seed=0)
    torch.testing.assert_close(again.z, res.z)


def test_inversion_residual_marks_an_anomaly_the_generator_cannot_draw():
    G = BlobGenerator()
    query = G(torch.tensor([[0.2, 0.2]])).clone()
    query[0, 0, 1:4, 1:4] = 1.0  # a lesion far from the blob
    res = invert(G, query, steps=120, lr=0.1, restarts=2, seed=1)
    maps = anomaly_maps(res.residual)
    mask = np.zeros((1, 16, 16)); mask[0, 1:4, 1:4] = 1
    loc = localisation(maps, mask, threshold=0.5)
    assert loc["pixel_auroc"] > 0.95 and loc["dice"] > 0.7


def test_discriminator_feature_term_runs_and_keeps_generator_frozen():
    G = BlobGenerator()
    D = nn.Sequential(nn.Flatten(), nn.Linear(256, 8))
    target = G(torch.zeros(1, 2))
    res = invert(G, target, steps=5, restarts=2, discriminator_features=D, feature_weight=0.1, seed=0)
    assert res.z.shape == (1, 2) and all(p.requires_grad for p in D.parameters())
    assert all(p.grad is None for p in D.parameters())


def test_scores_threshold_and_detection_table():
    residual = np.zeros((3, 1, 2, 2)); residual[1] = 1.0; residual[2, 0, 0, 0] = 2.0
    np.testing.assert_allclose(anomaly_scores(residual), [0, 1, 1])
    assert anomaly_maps(residual).shape == (3, 2, 2)
    normals = np.arange(100) / 100
    t = threshold_at_specificity(normals, specificity=0.95)
    assert (normals > t).mean() <= 0.05
    scores = [0.1, 0.99, 0.97, 0.5, 0.99, 0.2]
    names = ["normal", "nodule", "nodule", "effusion", "fracture", "fracture"]
    table = detection_table(scores, names, t, trained_findings=["nodule", "effusion"])
    assert table.loc["nodule", "detected"] == 2 and table.loc["effusion", "detected"] == 0
    assert table.loc["untrained findings", "rate"] == pytest.approx(0.5)
    assert table.loc["all abnormal", "n"] == 5 and table.loc["normal (false positives)", "detected"] == 0


def test_dice_and_mean_image_baseline():
    assert dice([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(2 / 3)
    assert dice([0, 0], [0, 0]) == 1.0
    normal = np.zeros((4, 1, 3, 3)); normal[:2] = 1
    np.testing.assert_allclose(mean_image_residual(np.ones((1, 1, 3, 3)), normal), 0.5)


def _toy_queries():
    G = BlobGenerator()
    g = torch.Generator().manual_seed(0)
    normal_train = G(torch.randn(64, 2, generator=g))
    normal_val = G(torch.randn(6, 2, generator=g))
    queries = G(torch.randn(8, 2, generator=g)).clone()
    masks = np.zeros((8, 1, 16, 16))
    findings = ["normal"] * 4 + ["spot"] * 2 + ["bar"] * 2
    for i, (ys, xs) in zip(range(4, 8), [(slice(1, 4), slice(1, 4)), (slice(12, 15), slice(2, 5)),
                                         (slice(2, 4), slice(8, 15)), (slice(13, 15), slice(4, 12))]):
        queries[i, 0, ys, xs] += 0.8  # fainter than the blob, so the mean image is fooled by the blob
        masks[i, 0, ys, xs] = 1
    return G, normal_train, normal_val, queries, masks, findings


def test_evaluate_anomaly_detection_beats_the_mean_image_on_a_toy_generator():
    G, normal_train, normal_val, queries, masks, findings = _toy_queries()
    ev = evaluate_anomaly_detection(G, normal_val=normal_val, queries=queries, findings=findings, masks=masks,
                                    normal_train=normal_train, trained_findings=["spot"], specificity=0.8,
                                    invert_options=dict(steps=100, lr=0.1, restarts=2, seed=0),
                                    classifier_scores=(np.zeros(6), np.r_[np.zeros(4), np.ones(4)]),
                                    example_indices=[0, 5])
    ano, base = ev.summary.loc["AnoGAN (PGGAN inversion)"], ev.summary.loc["mean normal image (baseline)"]
    assert ano["image AUROC"] > 0.9 and ano["pixel AUROC"] > base["pixel AUROC"] and ano["Dice"] > base["Dice"]
    assert ev.detection.loc["all abnormal", ("AnoGAN (PGGAN inversion)", "n")] == 4
    sup = ev.summary.loc["supervised multi-label classifier"]
    assert sup["image AUROC"] == 1.0
    # The CI brackets the estimate; the DeLong column compares each method with AnoGAN on the same queries.
    assert ano["AUROC low"] <= ano["image AUROC"] <= ano["AUROC high"] and np.isnan(ano["DeLong p vs AnoGAN"])
    labels = (np.array(findings) != "normal").astype(int)
    expected = delong_test(labels, ev.scores["AnoGAN (PGGAN inversion)"], ev.scores["mean normal image (baseline)"])[2]
    assert base["DeLong p vs AnoGAN"] == pytest.approx(expected)
    test = ev.localisation_test
    assert test.loc["pixel AUROC", "AnoGAN (PGGAN inversion)"] == pytest.approx(ano["pixel AUROC"])
    assert test.loc["Dice", "mean normal image (baseline)"] == pytest.approx(base["Dice"])
    # The same numbers as the whole-array computation of each piece.
    inverted = invert(G, queries, steps=100, lr=0.1, restarts=2, seed=0)
    np.testing.assert_allclose(ev.scores[ANOGAN], anomaly_scores(inverted.residual), rtol=1e-6)
    val_maps = anomaly_maps(invert(G, normal_val, steps=100, lr=0.1, restarts=2, seed=0).residual)
    expected_loc = localisation(anomaly_maps(inverted.residual), masks, threshold=float(np.quantile(val_maps, 0.99)))
    assert ano["Dice"] == pytest.approx(expected_loc["dice"]) and ano["pixel AUROC"] == pytest.approx(expected_loc["pixel_auroc"])
    assert ev.latents.shape == (8, 2) and ev.losses.shape == (100, 8)
    ex = ev.examples
    assert ex.indices == [0, 5] and ex.queries.shape == (2, 1, 16, 16) and ex.masks.shape == (2, 1, 16, 16)
    torch.testing.assert_close(ex.queries, queries[[0, 5]])
    np.testing.assert_allclose(ex.maps[BASELINE], anomaly_maps(mean_image_residual(queries[[0, 5]], normal_train)))


class LazyImages:
    """A sliceable stack that counts what it hands out and how many handed-out chunks are alive."""

    def __init__(self, images):
        self.images, self.sizes, self.refs, self.most_alive = images, [], [], 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, where):
        gc.collect()
        self.most_alive = max(self.most_alive, sum(r() is not None for r in self.refs))
        chunk = self.images[where].clone()
        self.sizes.append(len(chunk))
        self.refs.append(weakref.ref(chunk))
        return chunk


def test_evaluation_streams_lazy_query_chunks_and_matches_tensors():
    G, normal_train, normal_val, queries, masks, findings = _toy_queries()
    options = dict(steps=10, lr=0.1, restarts=2, seed=0, batch_size=4)  # 2 queries per chunk
    lazy_val, lazy_queries, lazy_masks = LazyImages(normal_val), LazyImages(queries), LazyImages(torch.from_numpy(masks))
    ev = evaluate_anomaly_detection(G, normal_val=lazy_val, queries=lazy_queries, findings=findings, masks=lazy_masks,
                                    normal_train=normal_train, invert_options=options, n_boot=50,
                                    n_boot_localisation=20)
    assert lazy_val.sizes == [2, 2, 2] and lazy_queries.sizes == [2, 2, 2, 2] and lazy_masks.sizes == [2, 2, 2, 2]
    # each chunk freed before the next was read
    assert lazy_val.most_alive == lazy_queries.most_alive == lazy_masks.most_alive == 0
    whole = evaluate_anomaly_detection(G, normal_val=normal_val, queries=queries, findings=findings, masks=masks,
                                       normal_train=normal_train, invert_options=options, n_boot=50,
                                       n_boot_localisation=20)
    pd.testing.assert_frame_equal(ev.summary.drop(columns="s / query"), whole.summary.drop(columns="s / query"))
    for method in whole.scores:
        np.testing.assert_array_equal(ev.scores[method], whole.scores[method])


def test_iter_inversions_chunks_by_query_and_the_chunking_does_not_change_results():
    G = BlobGenerator()
    target = G(torch.randn(5, 2, generator=torch.Generator().manual_seed(2)))
    chunks = list(iter_inversions(G, target, steps=30, lr=0.1, restarts=3, batch_size=6, seed=0))
    assert [len(q) for q, _ in chunks] == [2, 2, 1]  # 6 latents = 2 queries x 3 restarts
    one = invert(G, target, steps=30, lr=0.1, restarts=3, batch_size=64, seed=0)
    torch.testing.assert_close(torch.cat([r.z for _, r in chunks]), one.z)


def test_upper_quantile_is_numpys_quantile_from_the_largest_values():
    rng = np.random.default_rng(0)
    values = rng.random((7, 13, 11))
    for q in (0.0, 0.5, 0.9, 0.99, 1.0):
        tracker = UpperQuantile(q, values.size)
        for part in values:
            tracker.add(part)
        assert tracker.value() == pytest.approx(np.quantile(values, q), rel=1e-12)
        assert len(tracker.top) <= values.size - int(np.floor((values.size - 1) * q))
    tracker = UpperQuantile(0.99, 10)
    with pytest.raises(ValueError, match="announced"):
        tracker.add(np.zeros(11))


def test_smoothing_cancels_alternating_noise_but_keeps_a_lesion():
    # A +-0.5 checkerboard (misregistered fine texture) and a 4x4 lesion of +0.5 on a 16x16 residual.
    checker = 0.5 * (-1.0) ** np.add.outer(np.arange(16), np.arange(16))
    lesion = np.zeros((16, 16)); lesion[6:10, 6:10] = 0.5
    residual = np.stack([checker, checker + lesion])[:, None]
    raw, smooth = anomaly_maps(residual), anomaly_maps(residual, sigma=1.0)
    mask = np.zeros((1, 16, 16)); mask[0, 6:10, 6:10] = 1
    assert localisation(raw[1:], mask, threshold=0.6)["pixel_auroc"] < 0.9   # the noise hides the lesion
    assert localisation(smooth[1:], mask, threshold=0.1)["pixel_auroc"] > 0.99
    assert smooth[0].max() < 0.05  # the checkerboard alone all but vanishes
    # The same filter as scipy's, applied per image plane; sigma 0 changes nothing.
    np.testing.assert_allclose(smooth_residual(residual, 1.0)[1, 0],
                               ndimage.gaussian_filter(residual[1, 0], 1.0, mode="mirror"))
    np.testing.assert_array_equal(smooth_residual(residual, 0.0), residual)
    assert anomaly_scores(residual, sigma=1.0)[1] > 5 * anomaly_scores(residual, sigma=1.0)[0]
    with pytest.raises(ValueError, match="sigma"):
        smooth_residual(residual, -1.0)


def test_compare_localisation_paired_bootstrap():
    rng = np.random.default_rng(0)
    masks = np.zeros((30, 1, 12, 12)); masks[:, 0, 4:8, 4:8] = 1
    good = masks[:, 0] + 0.3 * rng.random((30, 12, 12))      # lesion clearly above the rest
    poor = masks[:, 0] * 0.2 + 0.3 * rng.random((30, 12, 12))  # lesion buried in noise
    table = compare_localisation(good, poor, masks, thresholds=(0.5, 0.5), n_boot=100)
    for metric in ("pixel AUROC", "Dice"):
        row = table.loc[metric]
        assert row["a - b"] == pytest.approx(row["a"] - row["b"]) and row["low"] > 0 and row["low"] <= row["a - b"] <= row["high"]
    assert table.loc["pixel AUROC", "a"] == pytest.approx(localisation(good, masks, threshold=0.5)["pixel_auroc"])
    # The same map against itself: no difference, a CI of exactly zero.
    same = compare_localisation(good, good, masks, thresholds=(0.5, 0.5), n_boot=50)
    assert (same[["a - b", "low", "high"]].abs().to_numpy() < 1e-12).all()
