import numpy as np
import pytest
import torch

from medgan.metrics import features as feat
from medgan.metrics.cache import cache_key, cache_path, cached_features
from medgan.metrics.features import DomainCNN, extract_features, feature_cache_key

KEY = {"dataset": "lidc-phantom", "split": "test", "extractor": "domain_cnn[1ch,2cls]#abcd1234",
       "preprocessing": {"window_hu": [-1000, 400], "size": 64}}


def test_computes_once_then_reuses(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.arange(12, dtype=np.float32).reshape(4, 3), np.full((4, 2), 0.5)

    feats, probs = cached_features(KEY, compute, cache_dir=tmp_path)
    feats2, probs2 = cached_features(dict(reversed(list(KEY.items()))), compute, cache_dir=tmp_path)  # key order irrelevant
    assert len(calls) == 1
    np.testing.assert_array_equal(feats, feats2)
    np.testing.assert_array_equal(probs, probs2)
    assert [p.name for p in tmp_path.iterdir()] == [cache_path(KEY, cache_dir=tmp_path).name]  # no temp files left


def test_any_key_change_recomputes(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.zeros((2, 2)), None

    cached_features(KEY, compute, cache_dir=tmp_path)
    changed = dict(KEY, preprocessing={"window_hu": [-1000, 400], "size": 128})
    assert cache_key(changed) != cache_key(KEY)
    feats, probs = cached_features(changed, compute, cache_dir=tmp_path)
    assert len(calls) == 2 and probs is None


def test_corrupt_file_is_recomputed(tmp_path):
    path = cache_path(KEY, cache_dir=tmp_path)
    path.write_bytes(b"not a zip")
    feats, _ = cached_features(KEY, lambda: (np.ones((3, 2)), None), cache_dir=tmp_path)
    np.testing.assert_array_equal(feats, np.ones((3, 2)))
    feats, _ = cached_features(KEY, lambda: pytest.fail("should be cached now"), cache_dir=tmp_path)


def test_missing_key_parts_named(tmp_path):
    with pytest.raises(ValueError, match="preprocessing"):
        cached_features({"dataset": "x", "split": "y", "extractor": "z"}, lambda: None, cache_dir=tmp_path)


# --- the cache behind extract_features(..., cache_dir=...) ---------------------------------------

def _counted_extractor(seed=0):
    torch.manual_seed(seed)
    net = DomainCNN(in_channels=1, num_classes=2, feature_dim=8, width=4, num_blocks=2).eval()
    calls = []
    net.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
    return net, calls


def _images(seed=0, n=10):
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, 1, 8, 8)).astype(np.float32)


def test_second_extraction_runs_no_forward_pass(tmp_path):
    net, calls = _counted_extractor()
    images = _images()
    feats, probs = extract_features(net, images, batch_size=4, cache_dir=tmp_path)
    assert sum(calls) == 10
    feats2, probs2 = extract_features(net, torch.from_numpy(images.copy()), batch_size=5, cache_dir=tmp_path)
    assert sum(calls) == 10  # served from the cache: no forward pass at all
    np.testing.assert_array_equal(feats, feats2)
    np.testing.assert_array_equal(probs, probs2)
    uncached, _ = extract_features(net, images, batch_size=4)
    np.testing.assert_allclose(feats, uncached, rtol=1e-6, atol=1e-7)
    assert len(list(tmp_path.glob("*.npz"))) == 1 and not list(tmp_path.glob(".*.tmp"))


def test_other_weights_or_other_images_miss(tmp_path):
    net, calls = _counted_extractor()
    images = _images()
    extract_features(net, images, cache_dir=tmp_path)
    other, other_calls = _counted_extractor(seed=1)  # same name and architecture, other weights
    assert other.name == net.name
    feats_other, _ = extract_features(other, images, cache_dir=tmp_path)
    assert sum(other_calls) == 10
    np.testing.assert_allclose(feats_other, extract_features(other, images)[0], rtol=1e-6, atol=1e-7)
    with torch.no_grad():  # the same network after a weight update is another extractor
        next(net.parameters()).add_(0.1)
    extract_features(net, images, cache_dir=tmp_path)
    assert sum(calls) == 20
    changed = images.copy()
    changed[3, 0, 2, 2] += 0.5  # one pixel of one image
    extract_features(net, changed, cache_dir=tmp_path)
    extract_features(net, images[:9], cache_dir=tmp_path)  # a subset
    extract_features(net, images.astype(np.float64), cache_dir=tmp_path)  # same values, other dtype
    assert sum(calls) == 20 + 10 + 9 + 10
    assert len(list(tmp_path.glob("*.npz"))) == 6


def test_extractor_settings_are_part_of_the_key():
    torch.manual_seed(0)
    net = feat._build_inception("torchvision", 4)
    images = _images(n=2)
    keys = [feature_cache_key(feat.InceptionV3Extractor(net, name="inception_v3[x]", **kw), images)
            for kw in ({}, {"channel_mode": "concat"}, {"resize_to": 75})]
    assert len({cache_key(k) for k in keys}) == 3


def test_loaders_are_not_cached(tmp_path):
    net, calls = _counted_extractor()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(_images())), batch_size=5)
    extract_features(net, loader, cache_dir=tmp_path)
    extract_features(net, loader, cache_dir=tmp_path)
    assert sum(calls) == 20 and not list(tmp_path.iterdir())
