"""The item store: decoded once, read back per item, the same items with or without workers."""

from __future__ import annotations

import functools
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from medgan.data.base import BadInputLog, DataError, ItemListDataset, iter_batches, subjects_of
from medgan.data.item_store import ItemStore, build_store


def decode_file(entry: str, *, root: str, size: int) -> list[dict]:
    """Reads one '.txt' file holding an integer; 'bad' makes a DataError (a broken file)."""
    text = (Path(root) / entry).read_text()
    if text == "bad":
        raise DataError(f"{Path(root) / entry}: pixel data unreadable")
    value = int(text)
    image = np.full((1, size, size), value / 100.0, np.float32)
    return [{"image": image, "label": value % 2, "subject": f"s-{value // 4}", "meta": {"value": value}},
            {"image": -image, "label": 1 - value % 2, "subject": f"s-{value // 4}", "meta": {"value": -value}}]


decode_file.version = 1


def make_root(tmp_path: Path, n: int, bad: tuple[int, ...] = ()) -> Path:
    root = tmp_path / "data"
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"{i:03d}.txt").write_text("bad" if i in bad else str(i))
    return root


def store_of(root: Path, *, workers: int = 0, skip_bad: bool = True, size: int = 4) -> tuple[ItemStore, BadInputLog]:
    files = sorted(root.glob("*.txt"))
    log = BadInputLog(skip_bad=skip_bad, name="test", root=root)
    store = build_store([f.name for f in files], functools.partial(decode_file, root=str(root), size=size),
                        name="test", root=root, files=files, settings={"size": size}, bad_input=log,
                        where=lambda e: root / e, num_workers=workers, progress=False, expected_items=2 * len(files))
    return store, log


def test_items_equal_the_decoded_items_in_order(tmp_path):
    root = make_root(tmp_path, 7)
    store, _ = store_of(root)
    assert len(store) == 14
    for i in range(7):
        for j, expected in enumerate(decode_file(f"{i:03d}.txt", root=str(root), size=4)):
            got = store.read(2 * i + j)
            np.testing.assert_array_equal(got["image"], expected["image"])
            assert {k: got[k] for k in ("label", "subject", "meta")} == \
                   {k: expected[k] for k in ("label", "subject", "meta")}


def test_workers_write_the_same_store_bytes(tmp_path):
    root = make_root(tmp_path, 9, bad=(4,))
    serial, _ = store_of(root)
    os.environ["MEDGAN_WORKDIR"] = str(tmp_path / "other-work")  # a second, independent store
    try:
        parallel, log = store_of(root, workers=2)
    finally:
        os.environ["MEDGAN_WORKDIR"] = str(Path(serial.folder).parents[2])
    assert parallel.folder != serial.folder
    assert parallel.content == serial.content
    assert (parallel.folder / "image.bin").read_bytes() == (serial.folder / "image.bin").read_bytes()
    assert log.count == 1


def test_reload_reads_the_store_and_replays_the_skips(tmp_path):
    root = make_root(tmp_path, 5, bad=(2,))
    first, log1 = store_of(root)
    assert log1.count == 1 and "004" not in log1.skipped[0][0] and "002.txt" in log1.skipped[0][0]
    assert str(tmp_path) not in json.dumps(json.loads((first.folder / "manifest.json").read_text()))
    (root / "000.txt").write_text("0")  # unchanged bytes, but a new mtime: same items, new folder
    os.utime(root / "000.txt", ns=(1, 1))
    again, log2 = store_of(root)
    assert again.content == first.content and again.folder != first.folder
    third, log3 = store_of(root)
    assert third.folder == again.folder and log3.skipped == log2.skipped == log1.skipped
    with pytest.raises(DataError, match="002.txt: pixel data unreadable"):
        store_of(root, skip_bad=False)


def test_a_changed_file_or_setting_rebuilds(tmp_path):
    root = make_root(tmp_path, 3)
    a, _ = store_of(root)
    (root / "001.txt").write_text("17")
    b, _ = store_of(root)
    c, _ = store_of(root, size=5)
    assert len({a.folder, b.folder, c.folder}) == 3
    assert b.read(2)["meta"] == {"value": 17} and c.read(0)["image"].shape == (1, 5, 5)


def test_mismatched_item_shape_names_the_file(tmp_path):
    root = make_root(tmp_path, 3)

    files = sorted(root.glob("*.txt"))
    with pytest.raises(DataError, match=r"002\.txt: item 'image' is float32\[1, 3, 3\]"):
        build_store([f.name for f in files], functools.partial(_uneven, root=str(root)), name="uneven", root=root,
                    files=files, settings={}, bad_input=BadInputLog(name="t", root=root), where=lambda e: root / e,
                    progress=False)
    assert not list((Path(os.environ["MEDGAN_WORKDIR"])).rglob("uneven-*"))  # nothing half-written is kept


def _uneven(entry: str, *, root: str) -> list[dict]:
    size = 3 if entry.startswith("002") else 4
    return [{"image": np.zeros((1, size, size), np.float32), "subject": "s", "meta": {}}]


def test_dataset_over_a_store(tmp_path):
    root = make_root(tmp_path, 6)
    store, _ = store_of(root)
    in_memory = ItemListDataset([store.read(i) for i in range(len(store))])
    on_disk = ItemListDataset(store)
    assert on_disk.rows == in_memory.rows and subjects_of(on_disk) == subjects_of(in_memory)
    assert on_disk.subjects == in_memory.subjects
    for a, b in zip(iter_batches(on_disk, batch_size=5), iter_batches(in_memory, batch_size=5)):
        assert torch.equal(a, b)
    # a DataLoader with worker processes reads through its own file descriptors
    loaded = torch.cat([b["image"] for b in DataLoader(on_disk, batch_size=4, num_workers=2)])
    assert torch.equal(loaded, torch.cat(list(iter_batches(in_memory, batch_size=4))))
    assert pickle.loads(pickle.dumps(on_disk)).records[3]["meta"] == in_memory.records[3]["meta"]
    assert on_disk.fingerprint() != ItemListDataset(store_of(make_root(tmp_path / "x", 5))[0]).fingerprint()


def test_iterating_reads_one_item_at_a_time(tmp_path, monkeypatch):
    """Iteration reads rows with pread, one item per call, never the whole file."""
    root = make_root(tmp_path, 4)
    store, _ = store_of(root, size=8)
    sizes = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: sizes.append(n) or real(fd, n, off))
    for _ in iter_batches(ItemListDataset(store), batch_size=3):
        pass
    assert sizes == [8 * 8 * 4] * len(store)


def test_the_store_is_found_again_by_a_new_process(tmp_path):
    """The key must not depend on anything per-process (a function's repr holds its address)."""
    import subprocess
    import sys
    root = make_root(tmp_path, 3)
    first, _ = store_of(root)
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parents[2])!r}); "
              f"from pathlib import Path; import tests.data.test_item_store as t; "
              f"print(t.store_of(Path({str(root)!r}))[0].folder)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "MEDGAN_WORKDIR": os.environ["MEDGAN_WORKDIR"]})
    assert out.stdout.strip() == str(first.folder)
