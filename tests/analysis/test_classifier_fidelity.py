import gc
import weakref

import numpy as np
import pytest
import torch

from medgan.analysis.classifier_fidelity import (compare_aurocs, confusion_matrix, evaluate_binary,
                                                 generate_and_pseudo_label, generate_batches, match_class_counts,
                                                 pseudo_label, rank_labels, three_step_evaluation, three_step_table,
                                                 write_generated)
from medgan.data.base import ItemListDataset


def test_pseudo_label_rule_0p7_0p3():
    p = np.array([0.95, 0.71, 0.7, 0.5, 0.3, 0.29, 0.0, 1.0])
    np.testing.assert_array_equal(pseudo_label(p), [1, 1, -1, -1, -1, 0, 0, 1])
    np.testing.assert_array_equal(pseudo_label(p[:, None], positive_above=0.9, negative_below=0.1),
                                  [1, -1, -1, -1, -1, -1, 0, 1])
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        pseudo_label([1.2])
    with pytest.raises(ValueError, match="negative_below"):
        pseudo_label([0.5], positive_above=0.2, negative_below=0.4)


def test_match_class_counts_keeps_ratio_when_short():
    labels = np.array([0] * 50 + [1] * 10 + [-1] * 5)
    idx = match_class_counts(labels, {0: 20, 1: 10}, seed=0)
    assert (labels[idx] == 0).sum() == 20 and (labels[idx] == 1).sum() == 10
    idx = match_class_counts(labels, {0: 40, 1: 20}, seed=0)  # only 10 abnormal: scale by 1/2
    assert (labels[idx] == 0).sum() == 20 and (labels[idx] == 1).sum() == 10
    assert len(set(idx)) == len(idx)


def test_confusion_matrix_and_binary_report_hand_example():
    labels = np.array([1, 1, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.4])
    cm = confusion_matrix(labels, scores, threshold=0.5)
    assert cm.to_numpy().tolist() == [[3, 1], [1, 2]]
    r = evaluate_binary(labels, scores, n_boot=200)
    # pairs (pos > neg): 0.9 beats 4, 0.6 beats 3, 0.2 beats 1 -> 8/12
    assert r["auroc"] == pytest.approx(8 / 12)
    assert r["sensitivity"] == pytest.approx(2 / 3) and r["specificity"] == pytest.approx(3 / 4)
    assert r["auroc_low"] <= r["auroc"] <= r["auroc_high"]
    table = three_step_table({"classifier(real) on real test": r})
    assert table.loc["classifier(real) on real test", "AUROC"] == pytest.approx(8 / 12)


def test_delong_hand_checked_example():
    # 3 positives, 2 negatives. Score A ranks perfectly (AUC 1); score B wins 3 of 6 pairs:
    # 0.9 > {0.4, 0.6}, 0.3 > {}, 0.5 > {0.4} -> AUC_B = 3/6.
    labels = np.array([1, 1, 1, 0, 0])
    a = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    b = np.array([0.9, 0.3, 0.5, 0.4, 0.6])
    r = compare_aurocs(labels, a, b)
    assert r["auroc_a"] == pytest.approx(1.0) and r["auroc_b"] == pytest.approx(0.5)
    # Hand computation: A's components are constant (V10 = 1, V01 = 0 for all) so only B varies.
    # V10_B = (1, 0, 1/2): var (ddof=1) = 1/4; V01_B for negatives 0.4 and 0.6: share of positives
    # above = (2/3, 1/3): var = 1/18. Var(diff) = (1/4)/3 + (1/18)/2 = 1/12 + 1/36 = 1/9.
    from scipy.stats import norm
    expected_p = 2 * norm.sf(0.5 / np.sqrt(1 / 9))
    assert r["p_value"] == pytest.approx(expected_p, rel=1e-9)


def test_three_step_evaluation_reports_three_aurocs_and_delong():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    real = np.clip(y * 0.6 + rng.normal(0.2, 0.15, 300), 0, 1)
    synth = np.clip(y * 0.3 + rng.normal(0.35, 0.2, 300), 0, 1)
    ys = rng.integers(0, 2, 200)
    r = three_step_evaluation(real_test_labels=y, real_on_real=real, synthetic_on_real=synth,
                              synthetic_test_labels=ys, synthetic_on_synthetic=ys * 0.5 + rng.random(200) * 0.5,
                              n_boot=100)
    table = r.table()
    assert len(table) == 4 and table.loc["chance (random scores)", "AUROC"] == 0.5
    assert table.loc["classifier(real) on real test", "AUROC"] > table.loc["classifier(synthetic) on real test", "AUROC"]
    assert 0 <= r.delong["p_value"] < 0.01 and set(r.confusions) == set(r.curves)


# --- streaming (issue 14, part 3): generated images never pile up in memory -------------------
class LiveBatches:
    """Weak references to every image batch a scorer was handed: how many are still alive."""

    def __init__(self):
        self.refs, self.most_alive = [], 0

    def see(self, images):
        gc.collect()
        alive = sum(r() is not None for r in self.refs)
        self.most_alive = max(self.most_alive, alive)
        self.refs.append(weakref.ref(images))


class SignClassifier(torch.nn.Module):
    """P(abnormal) = sigmoid(10 * mean pixel): abnormal exactly when the image is bright."""

    def __init__(self, live=None):
        super().__init__()
        self.live = live
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # so it has a device

    def predict_proba(self, images):
        if self.live is not None:
            self.live.see(images)
        return torch.sigmoid(10 * images.flatten(1).mean(1, keepdim=True))


def generate(z):
    """z (B, 4) -> (B, 1, 8, 8) images whose brightness follows z[:, 0]."""
    return torch.tanh(z[:, :1, None, None]).expand(-1, 1, 8, 8) * 0.9


def test_generate_and_pseudo_label_keeps_latents_not_images():
    live = LiveBatches()
    drawn = generate_and_pseudo_label(generate, SignClassifier(live), z_dim=4, n=50, batch_size=5, seed=3)
    assert len(live.refs) == 10 and live.most_alive == 0  # each batch freed before the next was made
    assert drawn.latents.shape == (50, 4) and drawn.probabilities.shape == drawn.labels.shape == (50,)
    assert not any(isinstance(v, torch.Tensor) and v.ndim == 4 for v in vars(drawn).values())
    np.testing.assert_array_equal(drawn.labels, pseudo_label(drawn.probabilities))
    # the latents redraw the very images that were labelled, batch by batch
    again = torch.cat(list(generate_batches(generate, drawn.latents, batch_size=7)))
    p = SignClassifier().predict_proba(again)[:, 0].double().numpy()
    np.testing.assert_allclose(p, drawn.probabilities, rtol=1e-6)  # float32 sums differ in the last bit by batch
    live = LiveBatches()
    for images in generate_batches(generate, drawn.latents, batch_size=7):
        live.see(images)
        del images
    assert live.most_alive == 0


def test_write_generated_is_an_item_store_on_disk_reused_once_written(tmp_path):
    z = torch.randn(9, 4, generator=torch.Generator().manual_seed(0)).numpy()
    labels = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1])
    calls = []

    def counting(latents):
        calls.append(len(latents))
        return generate(latents)

    store = write_generated(counting, z, labels, tmp_path, batch_size=4)
    assert calls == [4, 4, 1] and store.folder.parent == tmp_path and store.folder.name.startswith("generated-")
    dataset = ItemListDataset(store)
    assert len(dataset) == 9 and [dataset[i]["label"] for i in range(9)] == labels.tolist()
    torch.testing.assert_close(dataset[5]["image"], generate(torch.from_numpy(z[5:6]))[0])
    assert write_generated(counting, z, labels, tmp_path, batch_size=4).folder == store.folder and calls == [4, 4, 1]
    other = write_generated(counting, z, 1 - labels, tmp_path, batch_size=4)  # other labels: another store
    assert other.folder != store.folder and len(list(tmp_path.iterdir())) == 2


def test_rank_labels_take_the_extremes_in_the_real_ratio():
    p = np.array([0.50, 0.48, 0.52, 0.49, 0.51, 0.47, 0.53, 0.50])  # never confident
    assert (pseudo_label(p) == -1).all()
    labels = rank_labels(p, {0: 5, 1: 9})  # 14 wanted, 8 there: scaled to 3 normal, 5 abnormal
    np.testing.assert_array_equal(labels, [1, 0, 1, 0, 1, 0, 1, 1])  # the 3 lowest, the 5 highest
    labels = rank_labels(p, {0: 1, 1: 1})
    assert labels.tolist().count(0) == 1 and labels[np.argmin(p)] == 0 and labels[np.argmax(p)] == 1
    assert set(rank_labels(p[:2], {0: 40, 1: 1})) == {0, 1}  # one of each at least
