"""Translation scores on a toy translator whose behaviour is known exactly; they stream their images."""

import weakref

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
    assert eval_set.read_sources().shape == (9, C, S, S) and eval_set.read_truth(range(9)).shape == (9, K, C, S, S)
    assert [len(r) for r in eval_set.reference_index] == [4, 4, 4]
    assert [len(r) for r in eval_set.real_index] == [10, 10, 10]
    for k in range(K):  # sources and references of a domain are disjoint held-out images of it
        sources = set(eval_set.source_index[eval_set.source_labels == k].tolist())
        assert not sources & set(eval_set.reference_index[k].tolist())
        assert (eval_set.heldout_labels[eval_set.reference_index[k]] == k).all()
        assert (eval_set.train_labels[eval_set.real_index[k]] == k).all()


def test_a_dataset_and_its_tensors_give_the_same_scores(eval_set):
    """The eval set of datasets (items read on demand) scores exactly as the one of tensors."""
    as_datasets = sts.make_eval_set(sts.TensorImages(eval_set.train.images), eval_set.train_labels.numpy(),
                                    sts.TensorImages(eval_set.heldout.images, eval_set.heldout.truth),
                                    eval_set.heldout_labels.numpy(), domain_names=eval_set.domain_names,
                                    stain_names=eval_set.stain_names, max_sources_per_domain=3, seed=0)
    assert as_datasets.has_truth and as_datasets.source_index.equal(eval_set.source_index)
    kw = dict(n_styles=2, extractor=MeanPerStain(), distance=l1_spec(), classifier=OffsetClassifier(), seed=0)
    for mode in ("latent", "reference"):
        a = sts.score_translations(PerfectTranslator(), eval_set, mode=mode, **kw)
        b = sts.score_translations(PerfectTranslator(), as_datasets, mode=mode, **kw)
        assert a.equals(b)


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
    real = sum(len(r) for r in eval_set.real_index)
    assert extractor.seen == translations + real
    extractor.seen = 0
    again = sts.score_translations(PerfectTranslator(), eval_set, mode="latent", **kw)
    assert extractor.seen == translations  # the real sets were not extracted again
    assert np.allclose(again["fid"], first["fid"])
    extractor.seen = 0
    sts.real_baselines(eval_set, extractor=extractor, cache_dir=tmp_path)
    held = sum(len(h) for h in eval_set.heldout_index)
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


class GeneratedImages(torch.utils.data.Dataset):
    """Images made on demand from their index (nothing held): counts the items alive at once."""

    def __init__(self, labels, *, truth: bool = False):
        self.labels, self.truth = labels, truth
        self.alive, self.most_alive, self.reads = 0, 0, 0

    def __len__(self):
        return len(self.labels)

    def _gone(self):
        self.alive -= 1

    def __getitem__(self, i):
        image = domain_images(self.labels[i:i + 1], seed=int(i))[0]
        self.reads += 1
        self.alive += 1
        self.most_alive = max(self.most_alive, self.alive)
        weakref.finalize(image, self._gone)
        item = {"image": image}
        if self.truth:
            item["truth"] = torch.stack([PerfectTranslator().translate(image[None], k, z=torch.zeros(1, 2))[0]
                                         for k in range(K)])
        return item


class LargestInput(MeanPerStain):
    """MeanPerStain that records the largest storage (in images) behind any batch it is given."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def forward(self, x):
        self.largest = max(self.largest, x.untyped_storage().nbytes() // (C * S * S * x.element_size()))
        return super().forward(x)


@pytest.mark.parametrize("n_train", [60, 600])
def test_scoring_streams_its_images_in_bounded_batches(n_train):
    """However large the sets, the scores hold a bounded number of images: items are read a batch at
    a time and dropped, and no batch is a view into a set gathered in memory."""
    train = GeneratedImages(torch.arange(n_train) % K)
    heldout = GeneratedImages(torch.arange(n_train // 2) % K, truth=True)
    eval_set = sts.make_eval_set(train, train.labels, heldout, heldout.labels, domain_names=["a", "b", "c"],
                                 stain_names=list("VWXYZ"), max_sources_per_domain=4, seed=0)
    extractor = LargestInput()
    kw = dict(n_styles=2, extractor=extractor, distance=l1_spec(), classifier=OffsetClassifier(), seed=0,
              chunk=4, batch_size=8)
    for mode in ("latent", "reference"):
        scores = sts.score_translations(PerfectTranslator(), eval_set, mode=mode, **kw)
        assert (scores["accuracy"] == 1.0).all()
    sts.real_baselines(eval_set, extractor=extractor, classifier=OffsetClassifier(), batch_size=8)
    assert train.reads >= n_train and heldout.reads >= n_train // 2  # every real image was seen ...
    assert train.most_alive <= 8 and heldout.most_alive <= 8  # ... at most one batch of them at a time
    assert extractor.largest <= 8  # batches of 8 real images, or chunks of 4 sources x 2 styles
