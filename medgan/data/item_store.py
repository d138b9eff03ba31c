"""The preprocessed item store: a dataset's files are decoded once, and items are read from disk after.

A loader indexes its files and metadata (cheap), then hands :func:`build_store` a list of
*entries* (one per file, series or patient) and a *decode* function that turns one entry into
finished items (pixels resized and scaled, labels, meta). The store decodes every entry once,
in parallel worker processes with a progress bar, and writes the items under the dataset's work
directory; every later run with the same files and settings reads them back.

Format, and why: one flat file of fixed-size rows per array key (``image.f32``, ``target.f32`` ...)
plus a JSON manifest (dtype, shape, the non-array fields of every row, the skipped entries).
- Rows are appended in order as workers finish, so a bad file is simply not written: there is no
  ``.npy`` header to rewrite and no index to compact.
- An item is read with one ``os.pread`` per key. Nothing is memory-mapped, so iterating a dataset
  of any size leaves the process's resident memory flat (mapped pages would count in its RSS).
- ``numpy.memmap(path, dtype, mode="r", shape=(n, *shape))`` opens a key's file in other tools.
MONAI's ``PersistentDataset`` was the alternative: one pickle per item means tens of thousands of
small files and an unpickle per read, and it keys items by their transform chain, not the files.

The store's folder name is a hash of the data's identity (every source file's path relative to
the root, size and modification time), the entries, the decode function and its settings. A
finished store is renamed into place in one step, so a killed build leaves no half store.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from medgan import atomic
from medgan.config import dataset_work_dir, ensure_free_space
from medgan.data.base import BadInputLog, DataError

STORE_FORMAT = 1
MANIFEST = "manifest.json"
ARRAY_SUFFIX = ".bin"

logger = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    """A row field as JSON can hold it (numpy scalars become Python numbers)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def file_identity(root: Path, files: Iterable[str | os.PathLike]) -> str:
    """A digest of each file's path relative to ``root``, size and modification time (stat only)."""
    digest = hashlib.sha256()
    for path in sorted(str(p) for p in files):
        stat = os.stat(path)
        digest.update(f"{os.path.relpath(path, root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _callable_identity(decode: Callable) -> str:
    """A decode function by name (and a partial's bound arguments): never by ``repr``, whose memory
    address changes in every process and would make every run rebuild its store."""
    if isinstance(decode, functools.partial):
        keywords = json.dumps(_plain(decode.keywords), sort_keys=True, default=repr)
        return f"{_callable_identity(decode.func)}({_plain(list(decode.args))!r}, {keywords})"
    if not hasattr(decode, "__qualname__"):  # a callable object: its class and its settings
        state = json.dumps(_plain(dict(vars(decode))), sort_keys=True, default=str)
        kind = type(decode)
        return f"{kind.__module__}.{kind.__qualname__}#v{getattr(decode, 'version', 0)}({state})"
    return f"{decode.__module__}.{decode.__qualname__}#v{getattr(decode, 'version', 0)}"


def store_key(*, name: str, identity: str, entries: Sequence[Any], decode: Callable, settings: Mapping) -> str:
    digest = hashlib.sha256()
    for part in (STORE_FORMAT, name, identity, _callable_identity(decode),
                 json.dumps(_plain(dict(settings)), sort_keys=True, default=repr), repr(list(entries))):
        digest.update(f"{part}\0".encode())
    return digest.hexdigest()[:20]


class ItemStore:
    """The decoded items of one dataset, on disk. ``len(store)`` items; ``store.read(i)`` -> dict.

    ``rows[i]`` holds item i's non-array fields (subject, label, meta ...) in memory: metadata
    loops use it and never touch pixels. ``content`` is a digest of every stored byte, computed
    while building: the dataset's identity for the training engine.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        manifest = json.loads((self.folder / MANIFEST).read_text())
        self.rows: list[dict[str, Any]] = manifest["rows"]
        self.arrays: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
            key: (np.dtype(spec["dtype"]), tuple(spec["shape"])) for key, spec in manifest["arrays"].items()}
        self.rejected: list[dict[str, str]] = manifest["rejected"]
        self.content: str = manifest["content"]
        self._row_bytes = {key: dtype.itemsize * int(np.prod(shape)) for key, (dtype, shape) in self.arrays.items()}
        self._files: dict[str, int] = {}
        self._pid = -1

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        return len(self) * sum(self._row_bytes.values())

    def _fd(self, key: str) -> int:
        if self._pid != os.getpid():  # a DataLoader worker: file descriptors are per process
            self._files, self._pid = {}, os.getpid()
        if key not in self._files:
            self._files[key] = os.open(self.folder / f"{key}{ARRAY_SUFFIX}", os.O_RDONLY)
        return self._files[key]

    def read_array(self, key: str, index: int) -> np.ndarray:
        dtype, shape = self.arrays[key]
        size = self._row_bytes[key]
        data = os.pread(self._fd(key), size, index * size)
        if len(data) != size:
            raise DataError(f"{self.folder / (key + ARRAY_SUFFIX)}: item store truncated at row {index}; "
                            f"delete the folder to rebuild it")
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()

    def read(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.rows):
            raise IndexError(index)
        record = {key: self.read_array(key, index) for key in self.arrays}
        record.update(self.rows[index])
        return record

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_files": {}, "_pid": -1}

    def __del__(self):
        if getattr(self, "_pid", -1) == os.getpid():
            for fd in self._files.values():
                try:
                    os.close(fd)
                except OSError:
                    pass


class _Writer:
    """Appends items to the row files of a store being built, hashing every byte as it goes."""

    def __init__(self, folder: Path, *, expected_items: int, what: str):
        self.folder, self.expected, self.what = folder, expected_items, what
        self.arrays: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
        self.files: dict[str, Any] = {}
        self.rows: list[dict[str, Any]] = []
        self.digest = hashlib.sha256()

    def add(self, item: Mapping[str, Any], where: str) -> None:
        arrays = {k: np.ascontiguousarray(v) for k, v in item.items() if isinstance(v, np.ndarray)}
        if not self.arrays:
            self.arrays = {k: (a.dtype, a.shape) for k, a in arrays.items()}
            row_bytes = sum(a.nbytes for a in arrays.values())
            ensure_free_space(self.folder, row_bytes * max(self.expected, 1) + 65536, self.what)
            self.files = {k: open(self.folder / f"{k}{ARRAY_SUFFIX}", "wb") for k in arrays}
        for key, array in arrays.items():
            if key not in self.arrays or (array.dtype, array.shape) != self.arrays[key]:
                raise DataError(f"{where}: item {key!r} is {array.dtype}{list(array.shape)}, the dataset's "
                                f"items are {self._spec(key)}")
        if set(arrays) != set(self.arrays):
            raise DataError(f"{where}: item has arrays {sorted(arrays)}, the dataset's items have "
                            f"{sorted(self.arrays)}")
        for key in sorted(arrays):
            data = arrays[key].data.cast("B")
            self.digest.update(data)
            self.files[key].write(data)
        row = {k: _plain(v) for k, v in item.items() if k not in arrays}
        self.digest.update(json.dumps(row, sort_keys=True).encode())
        self.rows.append(row)

    def _spec(self, key: str) -> str:
        if key not in self.arrays:
            return "without it"
        dtype, shape = self.arrays[key]
        return f"{dtype}{list(shape)}"

    def close(self) -> None:
        for f in self.files.values():
            if not f.closed:
                f.flush()
                os.fsync(f.fileno())
                f.close()


def _decode_all(decode: Callable, entries: Sequence[Any], num_workers: int) -> Iterator[tuple[Any, Any]]:
    """(entry, items or the DataError it raised), in entry order, holding at most a few entries' items
    in memory: a window of ``2 * num_workers`` decodes is in flight."""
    if num_workers <= 0:
        for entry in entries:
            yield entry, _call_guarded(decode, entry)
        return
    # forkserver, not fork: a fork of a process with threads (torch's pools, tqdm's monitor, a
    # notebook kernel's) can copy a held lock into the worker, which then waits for ever
    with ProcessPoolExecutor(max_workers=num_workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
        window: deque = deque()
        for entry in entries:
            window.append((entry, pool.submit(_call_guarded, decode, entry)))
            if len(window) >= 2 * num_workers:
                yield window[0][0], window.popleft()[1].result()
        while window:
            yield window[0][0], window.popleft()[1].result()


def _call_guarded(decode: Callable, entry: Any) -> Any:
    try:
        return decode(entry)
    except DataError as exc:
        return exc


def build_store(entries: Sequence[Any], decode: Callable[[Any], list[dict[str, Any]]], *, name: str,
                root: str | os.PathLike, files: Iterable[str | os.PathLike], settings: Mapping[str, Any],
                bad_input: BadInputLog, where: Callable[[Any], str | os.PathLike],
                num_workers: int = 0, progress: bool = True, expected_items: int | None = None) -> ItemStore:
    """The item store of ``entries``: read back when it exists, else decoded once and written.

    Args:
        entries: picklable descriptions of what to decode (paths, settings), in item order.
        decode: entry -> list of item dicts (arrays: fixed dtype and shape per key across the
            dataset; other values: JSON-able row fields). A module-level function (workers import
            it); a ``version`` attribute, bumped when its output changes, rebuilds old stores.
            A :class:`DataError` skips the entry through ``bad_input`` (or raises, per its policy).
        name: the loader's name (the store folder's prefix; never data-derived).
        root: the data root (the store lives in its work directory, never inside it).
        files: every source file the entries read, for the identity (path, size, mtime).
        settings: every preprocessing setting that changes the output.
        where: entry -> its file or folder, for messages.
        num_workers: decoding processes (0: in this process).
        expected_items: items the build will write, for the free-space check (default: one per entry).

    Skipped entries are recorded in the manifest (messages already scrubbed of the root) and
    reported through ``bad_input`` again on every later load, so the counts in a report do not
    depend on whether the store was fresh.
    """
    root = Path(root)
    identity = file_identity(root, files)
    key = store_key(name=name, identity=identity, entries=entries, decode=decode, settings=settings)
    parent = dataset_work_dir(root) / "items"
    folder = parent / f"{name}-{key}"
    if not (folder / MANIFEST).is_file():
        _build(folder, entries, decode, name=name, bad_input=bad_input, where=where, num_workers=num_workers,
               progress=progress, expected_items=len(entries) if expected_items is None else expected_items)
        return ItemStore(folder)
    store = ItemStore(folder)
    for rejected in store.rejected:  # the same skips as the build that wrote it
        if not bad_input.skip_bad:
            raise DataError(rejected["reason"])
        bad_input.skipped.append((rejected["where"], rejected["reason"]))
    if store.rejected:
        logger.warning("%s: %d item(s) skipped as bad input when the store was built", name, len(store.rejected))
    return store


def _build(folder: Path, entries, decode, *, name, bad_input, where, num_workers, progress, expected_items):
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    writer = _Writer(tmp, expected_items=expected_items, what=f"the {name} item store")
    rejected: list[dict[str, str]] = []
    try:
        for entry, result in tqdm(_decode_all(decode, entries, num_workers), total=len(entries),
                                  desc=f"{name}: decoding", disable=not progress):
            if isinstance(result, DataError):
                before = bad_input.count
                bad_input.reject(result, where(entry))  # raises unless bad input is being skipped
                if bad_input.count > before:
                    where_, reason = bad_input.skipped[-1]
                    rejected.append({"where": str(where_), "reason": str(reason)})
                continue
            for item in result:
                writer.add(item, str(where(entry)))
        writer.close()
        if not writer.rows:
            raise DataError(f"{name}: no items decoded ({len(rejected)} skipped as bad input)")
        manifest = {"format": STORE_FORMAT, "content": writer.digest.hexdigest()[:32],
                    "arrays": {k: {"dtype": d.str, "shape": list(s)} for k, (d, s) in writer.arrays.items()},
                    "rows": writer.rows, "rejected": rejected}
        atomic.write_text(tmp / MANIFEST, json.dumps(manifest))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished the same store first: theirs is identical
            if not (folder / MANIFEST).is_file():
                raise
    finally:
        writer.close()
        shutil.rmtree(tmp, ignore_errors=True)
