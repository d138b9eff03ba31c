"""Study 2 scoring pipeline on synthetic features with known answers; generation and scoring stream."""

import weakref

import numpy as np
import pandas as pd
import torch

from medgan.analysis import generative_scores as gs


def feats(n, shift=0.0, scale=1.0, seed=0, d=8):
    return np.random.default_rng(seed).normal(shift, scale, size=(n, d)).astype(np.float32)


def probs(n, peaked, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet([0.3, 0.3] if peaked else [50, 50], size=n)
    return p


KW = dict(prd_clusters=5, prd_runs=2, kid_subset_size=50, kid_subsets=10, is_splits=2)


def test_scores_rank_a_matching_set_above_a_shifted_and_a_collapsed_one():
    ref = feats(200, seed=1)
    good = gs.score_features(ref, feats(200, seed=2), fake_probs=probs(200, True), **KW)
    shifted = gs.score_features(ref, feats(200, shift=3.0, seed=3), fake_probs=probs(200, True), **KW)
    collapsed = gs.score_features(ref, feats(200, scale=0.05, seed=4), fake_probs=probs(200, False), **KW)
    assert good["FID"] < shifted["FID"] and good["KID"] < shifted["KID"]
    assert good["Improved precision"] > 0.8 and shifted["Improved precision"] < 0.1
    assert collapsed["Improved recall"] < good["Improved recall"] - 0.5  # no diversity
    assert good["IS"] > collapsed["IS"]
    assert set(gs.METRIC_ORDER) == set(good)


def test_prd_subsamples_unequal_sets():
    out = gs.score_features(feats(120), feats(80, seed=5), **KW)
    assert 0 <= out["PRD F_8 (recall)"] <= 1 and np.isnan(out["IS"])


def test_table_summary_and_text():
    ref = feats(100, seed=1)
    rows = {"Real": [(feats(100, seed=2), None)], "A": [(feats(100, 2.0, seed=s), None) for s in (3, 4, 5)]}
    long = gs.score_table(ref, rows, **KW)
    assert list(long.groupby("row").size()) in ([3, 1], [1, 3])
    numbers, text = gs.summarise(long)
    assert list(text.index) == ["Real", "A"]
    assert "±" in text.loc["A", "FID"] and "±" not in text.loc["Real", "FID"]
    assert numbers.loc["A", ("FID", "sd")] > 0
    np.testing.assert_allclose(numbers.loc["A", ("FID", "mean")], long[long.row == "A"]["FID"].mean())


def test_k_sweep_rises_with_k_and_spread_separates_prd_from_improved_pr():
    ref = feats(150, seed=1)
    fake = feats(150, 0.7, seed=2)
    sweep = gs.k_sweep(ref, {"A": [fake]}, [1, 3, 5, 10])
    assert (np.diff(sweep["precision"]) >= 0).all() and (np.diff(sweep["recall"]) >= 0).all()
    spread = gs.prd_spread(ref, {"A": fake}, runs=4, clusters=10, seed=0)
    sd = spread[[c for c in spread.columns if c not in ("model", "run")]].std()
    assert sd["Improved precision"] == 0 and sd["Improved recall"] == 0
    assert sd["PRD F_8 (recall)"] > 0 or sd["PRD F_1/8 (precision)"] > 0


def test_generate_is_seeded_and_clamped():
    g = torch.nn.Linear(4, 9)
    fn = lambda z: 5 * g(z).view(-1, 1, 3, 3)  # noqa: E731
    a = gs.generate(fn, n=10, z_dim=4, seed=1, batch_size=3)
    b = gs.generate(fn, n=10, z_dim=4, seed=1, batch_size=10)
    torch.testing.assert_close(a, b)
    assert a.shape == (10, 1, 3, 3) and a.abs().max() <= 1
    assert not torch.equal(a, gs.generate(fn, n=10, z_dim=4, seed=2))


def test_protocol_end_to_end_with_a_toy_extractor():
    torch.manual_seed(0)

    class Ext(torch.nn.Module):
        name = "toy"

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(16, 6)

        def forward(self, x):
            f = self.lin(x.flatten(1))
            return f, f[:, :2]

    ref = torch.rand(40, 1, 4, 4) * 2 - 1
    real = torch.rand(60, 1, 4, 4) * 2 - 1
    gens = {"uniform": {"fn": lambda z: torch.rand(len(z), 1, 4, 4, generator=torch.Generator().manual_seed(int(z.sum() * 1e3) % 2**31)) * 2 - 1, "z_dim": 3},
            "constant": {"fn": lambda z: torch.zeros(len(z), 1, 4, 4), "z_dim": 3}}
    res = gs.run_protocol(gens, Ext(), reference_images=ref, real_images=real, seeds=[0, 1], **KW)
    assert res.n == 40 and res.extractor == "toy"
    assert list(res.text.index) == ["Real", "uniform", "constant"]
    mean = res.numbers.xs("mean", axis=1, level=1)
    assert mean.loc["uniform", "FID"] < mean.loc["constant", "FID"]
    assert mean.loc["constant", "Improved recall"] == 0
    assert res.images["uniform"].shape == (16, 1, 4, 4)  # only the images shown are kept
    assert res.images["Real"].shape == (16, 1, 4, 4) and len(res.reference_index) == 40


def test_protocol_reuses_cached_reference_and_real_features(tmp_path, monkeypatch):
    calls = []

    class Ext(torch.nn.Module):
        name = "toy-cached"

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(16, 6)

        def forward(self, x):
            calls.append(len(x))
            f = self.lin(x.flatten(1))
            return f, f[:, :2]

    torch.manual_seed(0)
    ext = Ext()
    ref = torch.rand(30, 1, 4, 4) * 2 - 1
    real = torch.rand(30, 1, 4, 4) * 2 - 1

    class Constant(torch.nn.Module):  # a network: its weights (none) key its generated features
        def forward(self, z):
            return torch.zeros(len(z), 1, 4, 4)
    gens = {"constant": {"fn": Constant(), "z_dim": 3}}
    first = gs.run_protocol(gens, ext, reference_images=ref, real_images=real, seeds=[0, 1],
                            cache_dir=tmp_path, batch_size=64, **KW)
    assert calls and list(tmp_path.glob("*.npz"))
    calls.clear()
    again = gs.run_protocol(gens, ext, reference_images=ref, real_images=real, seeds=[0, 1],
                            cache_dir=tmp_path, batch_size=64, **KW)
    assert calls == []  # a second run embeds nothing
    np.testing.assert_array_equal(first.reference[0], again.reference[0])
    pd.testing.assert_frame_equal(first.long, again.long)


def test_generate_at_remakes_the_chosen_images():
    g = torch.nn.Linear(4, 9)
    fn = lambda z: g(z).view(-1, 1, 3, 3)  # noqa: E731
    everything = gs.generate(fn, n=25, z_dim=4, seed=3, batch_size=7)
    torch.testing.assert_close(gs.generate_at(fn, [24, 0, 11], n=25, z_dim=4, seed=3, batch_size=2),
                               everything[[24, 0, 11]])
    batches = list(gs.generate_batches(fn, n=25, z_dim=4, seed=3, batch_size=10))
    assert [len(b) for b in batches] == [10, 10, 5]
    torch.testing.assert_close(torch.cat(batches), everything)


class LiveBatches:
    """Tracks how many generated (or read) batches are alive at once, through weak references."""

    def __init__(self):
        self.alive = weakref.WeakSet()
        self.most_alive = 0
        self.made = 0

    def track(self, batch):
        self.alive.add(batch)
        self.made += 1
        self.most_alive = max(self.most_alive, len(self.alive))
        return batch


def test_generated_images_stream_to_the_extractor_batch_by_batch():
    live = LiveBatches()

    class Ext(torch.nn.Module):
        name = "toy-stream"

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(16, 6)

        def forward(self, x):
            live.most_alive = max(live.most_alive, len(live.alive))
            f = self.lin(x.flatten(1))
            return f, f[:, :2]

    class Gen(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 16)

        def forward(self, z):
            return live.track(torch.tanh(self.lin(z)).view(-1, 1, 4, 4))

    torch.manual_seed(0)
    ref = torch.rand(300, 1, 4, 4) * 2 - 1
    res = gs.run_protocol({"g": {"fn": Gen(), "z_dim": 3}}, Ext(), reference_images=ref, real_images=ref,
                          seeds=[0, 1, 2], n=300, batch_size=10, keep_images=4, **KW)
    assert live.made == 3 * 30  # 300 images per seed, 10 at a time
    assert live.most_alive <= 3  # never the 300 images of a seed: a batch or two in flight
    assert [len(f) for f, _ in res.rows["g"]] == [300, 300, 300] and res.images["g"].shape == (4, 1, 4, 4)


def test_a_dataset_source_is_read_batch_by_batch():
    reads, forwards = [], []

    class Slices(torch.utils.data.Dataset):
        def __len__(self):
            return 95

        def __getitem__(self, i):
            reads.append(i)
            return {"image": torch.full((1, 4, 4), i / 100.0)}

        def fingerprint(self):
            return "slices-v1"

    class Ext(torch.nn.Module):
        name = "toy-read"

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(16, 6)

        def forward(self, x):
            forwards.append(len(reads))
            assert len(reads) <= 10 * len(forwards)  # never more than the batch being embedded was read
            f = self.lin(x.flatten(1))
            return f, f[:, :2]

    feats, probs = gs.embed(Ext(), Slices(), range(0, 95, 2), batch_size=10)
    assert len(feats) == 48 and len(forwards) == 5 and reads == list(range(0, 95, 2))


def test_generated_features_are_cached_by_weights_seed_and_count(tmp_path):
    calls = {"extract": 0, "latents": []}

    class Ext(torch.nn.Module):
        name = "toy-gen-cache"

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(16, 6)

        def forward(self, x):
            calls["extract"] += 1
            f = self.lin(x.flatten(1))
            return f, f[:, :2]

    class Gen(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 16)

        def forward(self, z):
            calls["latents"].append(len(z))
            return torch.tanh(self.lin(z)).view(-1, 1, 4, 4)

    torch.manual_seed(0)
    ext, gen = Ext(), Gen()
    ref = torch.rand(40, 1, 4, 4) * 2 - 1
    kw = dict(reference_images=ref, real_images=ref, seeds=[0, 1], batch_size=16, cache_dir=tmp_path, **KW)
    first = gs.run_protocol({"g": {"fn": gen, "z_dim": 3}}, ext, **kw)
    calls.update(extract=0, latents=[])
    again = gs.run_protocol({"g": {"fn": gen, "z_dim": 3}}, ext, **kw)
    assert calls["extract"] == 0 and calls["latents"] == [16]  # only the 16 images shown are made again
    torch.testing.assert_close(again.images["g"], first.images["g"])
    with torch.no_grad():
        gen.lin.bias.add_(0.5)  # other weights: other images, so the cache must miss
    gs.run_protocol({"g": {"fn": gen, "z_dim": 3}}, ext, **kw)
    assert calls["extract"] > 0
