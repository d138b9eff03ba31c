"""Seeded subject-level splits, kept in the dataset's work folder (never inside the data root, which
may be read-only) and reused by every notebook."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from medgan import atomic
from medgan.config import dataset_work_dir, ensure_free_space
from medgan.data.base import DataError

DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def _normalise_fractions(fractions: Mapping[str, float] | Iterable[float]) -> dict[str, float]:
    if not isinstance(fractions, Mapping):
        values = list(fractions)
        names = ["train", "val", "test"][: len(values)] if len(values) <= 3 else [f"split{i}" for i in range(len(values))]
        fractions = dict(zip(names, values))
    fractions = {str(k): float(v) for k, v in fractions.items()}
    if any(v < 0 for v in fractions.values()) or abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise DataError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    return fractions


def subject_split(subjects: Iterable[str], *, fractions: Mapping[str, float] | Iterable[float],
                  seed: int, path: str | os.PathLike) -> dict[str, str]:
    """Map each subject key to a split name; never splits a subject's slices apart.

    Args:
        subjects: pseudonymous subject keys (duplicates ignored).
        fractions: split name -> fraction (summing to 1), or a sequence read as train/val/test.
        seed: the shuffle seed.
        path: JSON file (:func:`split_path`: in the dataset's work folder). If it exists with the
            same subjects, fractions and seed, its mapping is returned unchanged; otherwise a new
            one is written atomically, after checking the work folder's disk has room for it.

    Counts per split are ``round(fraction * n)`` with the remainder going to the first split,
    and every split with a positive fraction gets at least one subject when n allows.
    """
    subjects = sorted(set(subjects))
    fractions = _normalise_fractions(fractions)
    path = Path(path)
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: split file is not valid JSON ({exc})") from exc
        if (stored.get("subjects") == subjects and stored.get("fractions") == fractions
                and stored.get("seed") == seed):
            return dict(stored["mapping"])
    n = len(subjects)
    names = list(fractions)
    counts = [int(round(fractions[name] * n)) for name in names]
    positive = [i for i, name in enumerate(names) if fractions[name] > 0]
    if n >= len(positive):
        for i in positive:
            if counts[i] == 0:
                counts[i] = 1
    while sum(counts) > n:  # take back from the largest split
        counts[int(np.argmax(counts))] -= 1
    counts[0] += n - sum(counts)
    order = np.random.default_rng(seed).permutation(n)
    mapping: dict[str, str] = {}
    start = 0
    for name, count in zip(names, counts):
        for index in order[start:start + count]:
            mapping[subjects[index]] = name
        start += count
    text = json.dumps({"seed": seed, "fractions": fractions, "subjects": subjects, "mapping": mapping},
                      indent=1, sort_keys=True)
    ensure_free_space(path.parent, len(text.encode("utf-8")), "the subject split")
    atomic.write_text(path, text)
    return mapping


def split_path(root: str | os.PathLike, *, fractions, seed: int, prefix: str = "splits") -> Path:
    """Where a loader keeps the split of the dataset at ``root``:
    ``<dataset work dir>/splits_seed<seed>_<name><pct>-....json`` (never inside ``root``, which may be read-only).

    The name carries seed and fractions, so notebooks asking for different splits never
    overwrite each other, and notebooks asking for the same one share it.
    """
    fractions = _normalise_fractions(fractions)
    tag = "-".join(f"{name}{round(value * 100)}" for name, value in fractions.items())
    return dataset_work_dir(root) / f"{prefix}_seed{seed}_{tag}.json"
