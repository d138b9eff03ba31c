"""Feature cache: features are computed once per (dataset, split, extractor, preprocessing)
and re-used by every metric and every re-scoring of a study.

Its caller is ``medgan.metrics.features.extract_features(..., cache_dir=...)``, whose key
(``feature_cache_key``) holds the images' digest and shape and the extractor's name, architecture
and weights. The file name is the md5 of the canonical JSON of the key parts (as stylegan2-ada
caches its feature statistics); the file is an ``.npz`` written to a temporary file and
``os.replace``-d into place (``medgan.atomic``), so a reader sees a whole file or none, and two
processes filling the same entry both leave a whole one. It also stores the key JSON, which is
checked on load.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from medgan.atomic import write_bytes

__all__ = ["cache_key", "cache_path", "cached_features", "REQUIRED_KEY_PARTS"]

REQUIRED_KEY_PARTS = ("dataset", "split", "extractor", "preprocessing")
_log = logging.getLogger(__name__)


def _canonical(key_parts: dict) -> str:
    if not isinstance(key_parts, dict):
        raise TypeError(f"key_parts must be a dict, got {type(key_parts).__name__}")
    missing = [k for k in REQUIRED_KEY_PARTS if k not in key_parts]
    if missing:
        raise ValueError(f"feature cache key_parts is missing {missing}; it needs {list(REQUIRED_KEY_PARTS)} "
                         f"(e.g. preprocessing = a dict of window, size, channel handling)")
    try:
        return json.dumps(key_parts, sort_keys=True, separators=(",", ":"), default=_json_default)
    except TypeError as exc:
        raise TypeError(f"feature cache key_parts must be JSON-serialisable: {exc}") from exc


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (np.ndarray, tuple)):
        return list(np.asarray(value).tolist())
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def cache_key(key_parts: dict) -> str:
    """md5 hex digest of the canonical (sorted-keys) JSON of ``key_parts``."""
    return hashlib.md5(_canonical(key_parts).encode("utf-8")).hexdigest()


def cache_path(key_parts: dict, *, cache_dir: str | os.PathLike) -> Path:
    extractor = str(key_parts.get("extractor", "features")).split("[")[0].replace(os.sep, "_")
    return Path(cache_dir) / f"{extractor}-{cache_key(key_parts)}.npz"


def _load(path: Path, canonical: str) -> tuple[np.ndarray, np.ndarray | None] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            stored_key = str(data["key"])
            if stored_key != canonical:
                _log.warning("%s: stored key differs from the requested one (hash collision?); recomputing", path)
                return None
            feats = data["features"]
            probs = data["probs"] if "probs" in data.files else None
            return feats, probs
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        _log.warning("%s: unreadable feature cache (%s); recomputing", path, exc)
        return None


def cached_features(key_parts: dict, compute: Callable[[], tuple[np.ndarray, np.ndarray | None]], *,
                    cache_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Return cached (features, probs) for ``key_parts``, computing and storing them on a miss.

    Args:
        key_parts: JSON-serialisable dict with at least 'dataset', 'split', 'extractor' (the
            extractor's ``.name``) and 'preprocessing'; anything else that changes the features
            (image size, number of samples, generator checkpoint) belongs in it too.
        compute: no-argument callable returning (features (N, D), probs (N, C) or None), e.g.
            ``lambda: extract_features(extractor, images, batch_size=64)``.
        cache_dir: folder of the cache files (created if needed).

    A corrupt or mismatched cache file is recomputed and replaced (with a warning).
    """
    canonical = _canonical(key_parts)
    path = cache_path(key_parts, cache_dir=cache_dir)
    if path.exists():
        loaded = _load(path, canonical)
        if loaded is not None:
            return loaded
    result = compute()
    if not (isinstance(result, tuple) and len(result) == 2):
        raise TypeError("cached_features: compute() must return (features, probs or None)")
    feats, probs = np.asarray(result[0]), (None if result[1] is None else np.asarray(result[1]))
    if feats.ndim != 2:
        raise ValueError(f"cached_features: compute() returned features of shape {feats.shape}, expected (N, D)")
    arrays = {"features": feats, "key": np.array(canonical)}
    if probs is not None:
        arrays["probs"] = probs
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes(path, buffer.getvalue())
    return feats, probs
