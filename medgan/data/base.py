"""Shared pieces of every loader: the error type, pseudonymous subject keys, skip logging,
and an in-memory Dataset over decoded arrays."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

logger = logging.getLogger("medgan.data")

# Default salt for pseudonyms; a site may set its own so keys cannot be recomputed elsewhere.
DEFAULT_SALT = "medgan-subject-v1"


class DataError(ValueError):
    """Bad input data. The message always names the file (or folder) and the field at fault."""


def subject_key(raw_id: str, *, salt: str | None = None) -> str:
    """Pseudonymous subject key: ``"s-"`` + 12 hex digits of SHA-256(salt + raw_id).

    ``salt`` defaults to ``$MEDGAN_SUBJECT_SALT`` or :data:`DEFAULT_SALT`. The raw id (e.g. a
    DICOM PatientID) never leaves this function.
    """
    salt = salt if salt is not None else os.environ.get("MEDGAN_SUBJECT_SALT", DEFAULT_SALT)
    digest = hashlib.sha256(f"{salt}\x00{raw_id}".encode("utf-8")).hexdigest()
    return f"s-{digest[:12]}"


class BadInputLog:
    """Collects bad-input problems for one loader.

    With ``skip_bad=False`` (default) :meth:`problem` raises :class:`DataError` at once; with
    ``skip_bad=True`` it logs a warning, records ``(file, reason)`` in :attr:`skipped` and
    returns, so the caller skips the item. Loaders report the count, never shrink silently.
    """

    def __init__(self, *, skip_bad: bool = False, name: str = "data"):
        self.skip_bad = skip_bad
        self.name = name
        self.skipped: list[tuple[str, str]] = []

    def problem(self, path: str | os.PathLike, reason: str) -> None:
        message = f"{path}: {reason}"
        if not self.skip_bad:
            raise DataError(message)
        self.skipped.append((str(path), reason))
        logger.warning("%s: skipped %s", self.name, message)

    def reject(self, error: DataError, where: str | os.PathLike) -> None:
        """Re-raise ``error`` unchanged, or (``skip_bad``) log it and record ``(where, message)``.

        ``error``'s message already names the file and field; ``where`` is the item skipped
        (a slice, a site, a patient folder).
        """
        if not self.skip_bad:
            raise error
        self.skipped.append((str(where), str(error)))
        logger.warning("%s: skipped %s (%s)", self.name, where, error)

    @property
    def count(self) -> int:
        return len(self.skipped)

    def summary(self) -> str:
        return f"{self.name}: {self.count} item(s) skipped as bad input"


def check_finite(array: np.ndarray, path: str | os.PathLike, field: str) -> None:
    """Raise :class:`DataError` if ``array`` has NaN/Inf, naming the file and field."""
    if not np.all(np.isfinite(array)):
        n_bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise DataError(f"{path}: {field} has {n_bad} NaN/Inf value(s)")


def to_image_tensor(array: np.ndarray) -> torch.Tensor:
    """(H, W) or (C, H, W) float array already in [-1, 1] -> float32 tensor (C, H, W)."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 2:
        array = array[None]
    return torch.from_numpy(np.ascontiguousarray(array))


class ItemListDataset(Dataset):
    """Dataset over a list of decoded items, each a dict of numpy arrays and scalars.

    Arrays are decoded once at construction (the loaders do the heavy reading), so an epoch
    costs only tensor conversion. ``records`` entries hold ``image`` (C,H,W) float32 in [-1,1],
    ``label``, ``subject``, ``meta`` and optionally ``target``/``mask``/``truth``.
    ``transform`` (optional) maps the finished item dict to a new dict (augmentation).
    """

    def __init__(self, records: Sequence[dict[str, Any]], *, transform: Callable | None = None):
        self.records = list(records)
        self.transform = transform
        if self.records:
            keys = set(self.records[0]["meta"])
            for record in self.records:
                if set(record["meta"]) != keys:  # the contract: same meta keys for every item
                    raise AssertionError(f"meta keys differ: {sorted(keys)} vs {sorted(record['meta'])}")

    def __len__(self) -> int:
        return len(self.records)

    def fingerprint(self) -> str:
        """Content hash of the decoded records (arrays by bytes; labels, subjects, meta by value).

        The engine's dataset identity; computed once, as the records do not change.
        """
        if getattr(self, "_fingerprint", None) is None:
            h = hashlib.sha256()
            transform = self.transform
            h.update(f"transform={getattr(transform, '__qualname__', type(transform).__name__)}".encode())
            for record in self.records:
                for key in sorted(record):
                    value = record[key]
                    h.update(key.encode())
                    if isinstance(value, np.ndarray):
                        h.update(f"{value.dtype}{value.shape}".encode())
                        h.update(np.ascontiguousarray(value).reshape(-1).view(np.uint8).data)
                    else:
                        h.update(repr(value).encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    @property
    def subjects(self) -> list[str]:
        """Sorted distinct subject keys present in this dataset."""
        return sorted({r["subject"] for r in self.records})

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        item: dict[str, Any] = {}
        for key, value in record.items():
            if key in ("image", "target", "mask", "truth"):
                item[key] = to_image_tensor(value)
            elif key == "label" and isinstance(value, np.ndarray):
                item[key] = torch.from_numpy(value.astype(np.float32))
            elif key == "meta":
                item[key] = dict(value)
            else:
                item[key] = value
        return self.transform(item) if self.transform else item


def stack_items(dataset: Dataset, key: str = "image") -> torch.Tensor:
    """Every item's ``key`` tensor of a dataset, stacked: (N, C, H, W) for images."""
    return torch.stack([dataset[i][key] for i in range(len(dataset))])


def subjects_of(dataset: Dataset) -> list[str]:
    """The pseudonymous subject key of every item, in order."""
    return [dataset[i]["subject"] for i in range(len(dataset))]


def filter_by_split(subjects: Sequence[str], split_map: dict[str, str] | None,
                    split: str | None) -> set[str]:
    """Subjects kept for ``split`` (all when ``split`` is None)."""
    if split is None:
        return set(subjects)
    if split_map is None:
        raise DataError(f"split={split!r} requested but no split mapping was given")
    names = set(split_map.values())
    if split not in names:
        raise DataError(f"split={split!r} not in the split file (has {sorted(names)})")
    return {s for s in subjects if split_map.get(s) == split}


def require_dir(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: {what} folder not found")
    return path
