import gc
import weakref

import numpy as np
import pandas as pd
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medgan.analysis import translation_scores as ts


def _images(n=12, seed=0, size=16):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g) * 2 - 1


def test_image_scores_match_skimage_with_explicit_range():
    truth = _images()
    pred = (truth + 0.1 * _images(seed=1)).clamp(-1, 1)
    subjects = [f"s{i // 3}" for i in range(12)]
    rows = ts.image_scores(pred, truth, subjects=subjects, data_range=2.0, method="m", direction="A->B")
    assert list(rows.columns) == ["method", "direction", "index", "subject", "psnr_db", "ssim", "mae"]
    p, t = pred[0, 0].double().numpy(), truth[0, 0].double().numpy()
    assert rows["psnr_db"][0] == pytest.approx(peak_signal_noise_ratio(t, p, data_range=2.0), rel=1e-9)
    assert rows["ssim"][0] == pytest.approx(structural_similarity(
        t, p, data_range=2.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False), abs=1e-6)
    assert rows["mae"][0] == pytest.approx(np.abs(p - t).mean())
    # the same images on the 8-bit scale with data_range=255 give the same PSNR
    eight_bit = ts.image_scores((pred + 1) * 127.5, (truth + 1) * 127.5, subjects=subjects, data_range=255.0)
    assert eight_bit["psnr_db"].to_numpy() == pytest.approx(rows["psnr_db"].to_numpy())
    with pytest.raises(ValueError, match="subjects"):
        ts.image_scores(pred, truth, subjects=subjects[:-1], data_range=2.0)


def _two_methods():
    truth = _images(n=20)
    subjects = [f"s{i // 4}" for i in range(20)]
    good = truth + 0.05 * _images(n=20, seed=2)
    bad = truth + 0.3 * _images(n=20, seed=3)
    return pd.concat([ts.image_scores(good, truth, subjects=subjects, data_range=2.0, method="good", direction="d", ssim_win_size=7),
                      ts.image_scores(bad, truth, subjects=subjects, data_range=2.0, method="bad", direction="d", ssim_win_size=7),
                      ts.image_scores(truth.roll(1, 0), truth, subjects=subjects, data_range=2.0, method="identity", direction="d", ssim_win_size=7)])


def test_summarize_subject_and_slice_levels():
    rows = _two_methods()
    # unequal slices per subject: drop two slices of s0
    rows = rows[~((rows["subject"] == "s0") & (rows["index"] < 2))]
    summary = ts.summarize(rows, n_boot=200)
    good = summary[(summary.method == "good") & (summary.metric == "ssim")].iloc[0]
    per_subject = rows[rows.method == "good"].groupby("subject")["ssim"].mean()
    assert good.estimate == pytest.approx(per_subject.mean())
    assert good.low <= good.estimate <= good.high and good.n_subjects == 5 and good.n_images == 18
    by_slice = ts.summarize(rows, level="slice", n_boot=200)
    s = by_slice[(by_slice.method == "good") & (by_slice.metric == "ssim")].iloc[0]
    assert s.estimate == pytest.approx(rows[rows.method == "good"]["ssim"].mean())
    assert ts.rank_methods(summary, metric="ssim", direction="d") == ["good", "bad", "identity"]
    assert ts.rank_methods(summary, metric="mae", direction="d", exclude=["identity"]) == ["good", "bad"]


def test_paired_difference_and_worst_cases():
    rows = _two_methods()
    ci = ts.paired_difference(rows, metric="ssim", method_a="good", method_b="bad", direction="d", n_boot=200)
    assert ci.low > 0
    worst = ts.worst_cases(rows, k=3, metric="ssim", method="bad")
    assert len(worst) == 3 and worst["ssim"].is_monotonic_increasing
    assert worst["ssim"].iloc[0] == rows[rows.method == "bad"]["ssim"].min()
    assert ts.worst_cases(rows, k=1, metric="mae")["method"].iloc[0] == "identity"


def test_fid_ci_and_rank_agreement():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 4))
    subjects = [f"s{i // 6}" for i in range(60)]
    near = rng.normal(size=(60, 4)) + 0.1
    far = rng.normal(size=(60, 4)) + 2.0
    ci_near = ts.fid_with_subject_ci(near, subjects, real, subjects, n_boot=50)
    ci_far = ts.fid_with_subject_ci(far, subjects, real, subjects, n_boot=50)
    assert ci_near.high < ci_far.low and ci_far.estimate == pytest.approx(16, rel=0.3)
    summary = pd.DataFrame([
        {"method": "near", "direction": "d", "metric": "fid", "estimate": ci_near.estimate},
        {"method": "far", "direction": "d", "metric": "fid", "estimate": ci_far.estimate},
        {"method": "near", "direction": "d", "metric": "ssim", "estimate": 0.9},
        {"method": "far", "direction": "d", "metric": "ssim", "estimate": 0.2}])
    agree = ts.rankings_agree(summary, metrics_=["fid", "ssim"], directions=["d"])
    assert bool(agree["same order"].iloc[0]) and agree["order by fid"].iloc[0] == "near > far"


def test_evaluate_translations_end_to_end():
    truth = _images(n=16, seed=5)
    source = -truth  # a "modality" with inverted contrast
    subjects = [f"s{i // 4}" for i in range(16)]
    good, poor = truth + 0.05 * _images(n=16, seed=6), truth.roll(1, 0)
    feats = lambda x: torch.as_tensor(x).flatten(1)[:, :8].double().numpy()  # noqa: E731 - a toy extractor
    ev = ts.evaluate_translations({"good": {"A->B": good}, "poor": {"A->B": poor, "B->A": poor}},
                                  sources={"A->B": source, "B->A": source}, subjects={"A->B": subjects, "B->A": subjects},
                                  truths={"A->B": truth, "B->A": None}, real_targets={"A->B": (truth, subjects)},
                                  features=feats, extractor_name="toy", data_range=2.0, ssim_win_size=7,
                                  fid_references={"real": {"A->B": (truth.flip(0), subjects[::-1])}},
                                  n_boot=50, fid_n_boot=10)
    s = ev.summary
    assert set(ev.per_image["method"]) == {"good", "poor", "identity"}
    assert set(ev.per_image["direction"]) == {"A->B"}  # no truth for B->A
    assert ts.rank_methods(s, metric="ssim", direction="A->B")[0] == "good"
    fid = s[s.metric == "fid"].set_index("method")["estimate"]
    assert fid["real"] == pytest.approx(0.0, abs=1e-6) and fid["good"] < fid["identity"]
    assert (s[s.metric == "fid"]["extractor"] == "toy").all()
    table = ev.table("ssim")
    assert list(table.index) == ["good", "poor", "identity"] and "[" in table.loc["good", "A->B"]


class _CountingExtractor(torch.nn.Module):
    """A toy feature network (features = a linear map of the pixels) that counts the images it sees."""

    name = "counting"

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(16 * 16, 6)
        self.images_seen = 0

    def forward(self, x):
        self.images_seen += len(x)
        return self.linear(x.flatten(1)), None


def test_evaluate_translations_reads_features_from_the_cache(tmp_path):
    torch.manual_seed(0)
    truth, subjects = _images(n=8, seed=7), [f"s{i // 2}" for i in range(8)]
    extractor = _CountingExtractor()
    kwargs = dict(sources={"A->B": -truth}, subjects={"A->B": subjects}, truths={"A->B": truth},
                  real_targets={"A->B": (truth, subjects)}, features=extractor, data_range=2.0, ssim_win_size=7,
                  n_boot=20, fid_n_boot=5)
    first = ts.evaluate_translations({"m": {"A->B": truth * 0.9}}, cache_dir=tmp_path, **kwargs)
    assert extractor.images_seen == 3 * 8 and first.extractor == "counting"  # real set, "m", identity
    extractor.images_seen = 0
    again = ts.evaluate_translations({"m": {"A->B": truth * 0.9}, "new": {"A->B": truth * 0.5}},
                                     cache_dir=tmp_path, **kwargs)
    assert extractor.images_seen == 8  # only the new method's images; the real set and the rest came from the cache
    shared = again.summary[again.summary.method != "new"].reset_index(drop=True)
    pd.testing.assert_frame_equal(first.summary, shared)
    extractor.images_seen = 0
    ts.evaluate_translations({"m": {"A->B": truth * 0.9}}, **kwargs)  # no cache_dir: everything computed again
    assert extractor.images_seen == 3 * 8


def _toy_features(x):
    return torch.as_tensor(x).flatten(1)[:, :8].double().numpy()


def test_scorer_reduces_each_batch_at_once_and_keeps_no_batch_alive():
    """Structural: after each batch is added, no tensor of any earlier batch is still referenced."""
    scorer = ts.TranslationScorer(_toy_features, data_range=2.0, ssim_win_size=7, keep_worst=3)
    alive, batches = [], []
    for b in range(5):
        truth = _images(n=4, seed=10 + b)
        pred = (truth + (0.05 + 0.1 * b) * _images(n=4, seed=20 + b)).clamp(-1, 1)
        subjects = [f"s{b}"] * 4
        scorer.add("m", "A->B", pred, subjects=subjects, truth=truth, source=-truth)
        batches.append((pred.clone(), truth.clone(), subjects))
        alive += [weakref.ref(pred), weakref.ref(truth)]
        del pred, truth
        gc.collect()
        assert all(ref() is None for ref in alive), "the scorer kept a batch"
    real = _images(n=8, seed=99)
    scorer.set_reference("A->B", _toy_features(real), [f"r{i // 2}" for i in range(8)])
    streamed = scorer.evaluate(n_boot=50, fid_n_boot=10)
    # the same numbers as scoring all images at once
    pred, truth = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    subjects = [s for b in batches for s in b[2]]
    whole = ts.evaluate_translations({"m": {"A->B": pred}}, sources={"A->B": -truth}, subjects={"A->B": subjects},
                                     truths={"A->B": truth}, real_targets={"A->B": (real, [f"r{i // 2}" for i in range(8)])},
                                     features=_toy_features, data_range=2.0, ssim_win_size=7, n_boot=50, fid_n_boot=10)
    pd.testing.assert_frame_equal(streamed.per_image, whole.per_image[whole.per_image.method == "m"])
    pd.testing.assert_frame_equal(streamed.summary, whole.summary[whole.summary.method == "m"].reset_index(drop=True))
    # the kept worst images are the three lowest-SSIM ones, copied out of their batches
    worst = streamed.worst[("m", "A->B")]
    expected = whole.per_image[whole.per_image.method == "m"].nsmallest(3, "ssim")
    assert worst.rows["index"].tolist() == expected["index"].tolist()
    assert torch.equal(worst.prediction, pred[expected["index"].tolist()])
    assert torch.equal(worst.source, -truth[expected["index"].tolist()])


def test_dataset_features_read_no_item_on_a_cache_hit(tmp_path):
    class Items(torch.utils.data.Dataset):
        reads = 0

        def __init__(self):
            self.images = _images(n=6, seed=3)

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            Items.reads += 1
            return {"image": self.images[i]}

        def fingerprint(self):
            return "items-v1"

    torch.manual_seed(0)
    extractor, dataset = _CountingExtractor(), Items()
    first = ts.dataset_features(extractor, dataset, batch_size=4, cache_dir=tmp_path)
    assert first.shape == (6, 6) and Items.reads == 6 and extractor.images_seen == 6
    again = ts.dataset_features(extractor, dataset, batch_size=4, cache_dir=tmp_path)
    assert Items.reads == 6 and extractor.images_seen == 6  # the stream was never opened
    np.testing.assert_array_equal(first, again)
