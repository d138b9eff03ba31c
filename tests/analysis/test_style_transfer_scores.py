"""Translation scores on a toy translator whose behaviour is known exactly."""

import numpy as np
import pytest
import torch
from torch import nn

from medgan.analysis import style_transfer_scores as sts
from medgan.metrics.features import DomainCNN

K, C, S = 3, 5, 8


def domain_images(labels, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(labels), C, S, S, generator=g) * 0.1
    for i, k in enumerate(labels):
        x[i, int(k)] += 0.8
    return x


class PerfectTranslator:
    """Moves the domain offset to the target stain; the latent z adds variation to stain 4 only."""

    class config:
        latent_dim = 2

    def translate(self, x, y, *, z=None, ref=None):
        y = torch.as_tensor(y).long().view(-1).expand(len(x))
        out = x.clone()
        out[:, :K] = x[:, :K] - 0.8 * (x[:, :K].mean((2, 3), keepdim=True) > 0.4).float()
        out[torch.arange(len(x)), y] += 0.8
        style = z[:, :1] if z is not None else ref.mean((1, 2, 3))[:, None]
        out[:, 4] += style[:, :, None].expand(-1, S, S) * 0.3
        return out


class MeanPerStain(nn.Module):
    """Extractor: per-stain mean (features) — separates the domains perfectly."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.name = "mean-per-stain"

    def forward(self, x):
        return x.mean((2, 3)), None


class OffsetClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x[:, :K].mean((2, 3))


def l1_spec():
    fn = lambda a, b: (a - b).abs().mean((1, 2, 3)).numpy()  # noqa: E731

    def stain(a, b, c):
        return (a[:, c] - b[:, c]).abs().mean((1, 2)).numpy()

    return sts.DistanceSpec(name="L1", fn=fn, stain_fn=stain)


@pytest.fixture
def eval_set():
    train_labels = torch.arange(30) % K
    held_labels = torch.arange(24) % K
    held = domain_images(held_labels, seed=1)
    # truth: the same crop rendered in every domain = offset moved to that stain
    truth = torch.stack([PerfectTranslator().translate(held, k, z=torch.zeros(len(held), 2)) for k in range(K)], 1)
    return sts.make_eval_set(domain_images(train_labels), train_labels, held, held_labels,
                             domain_names=["a", "b", "c"], stain_names=list("VWXYZ"), heldout_truth=truth,
                             max_sources_per_domain=3, seed=0)


def test_make_eval_set_splits_sources_and_references(eval_set):
    assert eval_set.sources.shape == (9, C, S, S) and eval_set.truth.shape == (9, K, C, S, S)
    assert [len(r) for r in eval_set.references_by_domain] == [4, 4, 4]
    assert [len(r) for r in eval_set.real_by_domain] == [10, 10, 10]


def test_scores_of_a_perfect_translator_against_identity(eval_set):
    kw = dict(n_styles=3, extractor=MeanPerStain(), distance=l1_spec(), classifier=OffsetClassifier(), seed=0)
    latent = sts.score_translations(PerfectTranslator(), eval_set, mode="latent", **kw)
    ident = sts.score_translations(PerfectTranslator(), eval_set, mode="identity", **kw)
    assert list(latent["target"]) == ["a", "b", "c"] and (latent["n_sources"] == 6).all()
    assert (latent["accuracy"] == 1.0).all() and (ident["accuracy"] == 0.0).all()
    assert (latent["fid"] < ident["fid"]).all()
    # diversity lives in stain Z (index 4) only
    assert (latent["lpips_Z"] > 0.01).all()
    assert np.allclose(latent[["lpips_V", "lpips_W", "lpips_X", "lpips_Y"]].to_numpy(), 0, atol=1e-7)
    assert (latent["truth_l1"] < latent["identity_l1"]).all() and (ident["lpips"] == 0).all()
    ref = sts.score_translations(PerfectTranslator(), eval_set, mode="reference", **kw)
    assert (ref["accuracy"] == 1.0).all()
    real = sts.real_baselines(eval_set, extractor=MeanPerStain(), classifier=OffsetClassifier())
    assert (real["accuracy"] == 1.0).all()


class CountingExtractor(MeanPerStain):
    """MeanPerStain that counts the images it has seen."""

    def __init__(self):
        super().__init__()
        self.seen = 0

    def forward(self, x):
        self.seen += len(x)
        return super().forward(x)


def test_real_set_features_come_from_the_cache_on_a_second_run(eval_set, tmp_path):
    extractor = CountingExtractor()
    kw = dict(extractor=extractor, distance=l1_spec(), n_styles=2, seed=0, per_stain=False, cache_dir=tmp_path)
    first = sts.score_translations(PerfectTranslator(), eval_set, mode="latent", **kw)
    translations = int(first["n_outputs"].sum())
    real = sum(len(r) for r in eval_set.real_by_domain)
    assert extractor.seen == translations + real
    extractor.seen = 0
    again = sts.score_translations(PerfectTranslator(), eval_set, mode="latent", **kw)
    assert extractor.seen == translations  # the real sets were not extracted again
    assert np.allclose(again["fid"], first["fid"])
    extractor.seen = 0
    sts.real_baselines(eval_set, extractor=extractor, cache_dir=tmp_path)
    held = sum(len(h) for h in eval_set.heldout_by_domain)
    assert extractor.seen == held  # training sets cached; held-out sets seen once
    extractor.seen = 0
    sts.real_baselines(eval_set, extractor=extractor, cache_dir=tmp_path)
    assert extractor.seen == 0


def test_fallback_distance_is_named_and_per_stain_swaps_one_stain(monkeypatch):
    monkeypatch.delenv("MEDGAN_LPIPS_BACKBONE_WEIGHTS", raising=False)
    torch.manual_seed(0)
    cnn = DomainCNN(in_channels=C, num_classes=K, feature_dim=8, width=4, num_blocks=2).eval()
    spec = sts.make_distance(extractor=cnn)
    assert spec.name.startswith("LPIPS-style distance on")
    x = torch.randn(2, C, S, S)
    y = x.clone()
    y[:, 3] += 1.0  # only stain 3 differs
    assert np.allclose(spec.stain_fn(x, y, 0), 0) and (spec.stain_fn(x, y, 3) > 0).all()
    with pytest.raises(ValueError, match="no LPIPS weights"):
        sts.make_distance(extractor=None)
