import numpy as np
import pytest

from medgan.metrics.cache import cache_key, cache_path, cached_features

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
