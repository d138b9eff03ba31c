import os
import pickle

import pytest
import torch

from medgan.atomic import CorruptFileError, UnsafeFileError, torch_load
from medgan.train import CheckpointError, CheckpointIO, seed_everything, train
from tests.train.toy import ToyGANStep, ToyImages


class _RunsCode:
    """Unpickling this runs code: it would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "checkpoints" / "step_00000001.pt"
    evil.parent.mkdir()
    torch.save({"format": "medgan-checkpoint-v1", "step": 1, "payload": _RunsCode(str(marker))}, evil)
    with pytest.raises(UnsafeFileError, match="refused to load"):
        torch_load(evil)
    with pytest.raises(UnsafeFileError):
        CheckpointIO(tmp_path).load_latest()  # never silently skipped
    assert not marker.exists(), "loading must not execute the pickled code"

    # The raw pickle protocol too (no torch zip container).
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_RunsCode(str(marker))))
    with pytest.raises((UnsafeFileError, CorruptFileError)):
        torch_load(raw)
    assert not marker.exists()


def _train(tmp_path, steps, **kw):
    seed_everything(0)
    step = ToyGANStep()
    return train(step, ToyImages(), run_dir=tmp_path, total_steps=steps, batch_size=8, progress=False, **kw).run_dir


def test_truncated_checkpoint_is_reported_and_previous_used(tmp_path, caplog):
    io = CheckpointIO(_train(tmp_path, 4, checkpoint_every=2, keep_checkpoints=3))
    newest, previous = io.list()[:2]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=newest.name):
        io.load(newest)
    state = io.load_latest()
    assert state["step"] == 2 and state["path"] == str(previous)
    assert newest.name in caplog.text
    # Resuming continues from the previous checkpoint and reaches the end.
    seed_everything(0)
    result = train(ToyGANStep(), ToyImages(), run_dir=tmp_path, total_steps=4, batch_size=8, progress=False,
                   checkpoint_every=2, keep_checkpoints=3)
    assert result.step == 4 and result.trained_steps == 2


def test_all_checkpoints_corrupt_is_a_clear_error(tmp_path):
    run_dir = _train(tmp_path, 2)
    for p in CheckpointIO(run_dir).list():
        p.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        CheckpointIO(run_dir).load_latest()


def test_atomic_save_leaves_no_partial_file(tmp_path, monkeypatch):
    io = CheckpointIO(tmp_path)
    io.save({"x": torch.ones(3)}, 1)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        io.save({"x": torch.zeros(3)}, 2)
    monkeypatch.undo()
    assert [p.name for p in io.list()] == ["step_00000001.pt"]
    assert not [p for p in io.dir.iterdir() if p.name.endswith(".tmp")]
    assert torch.equal(io.load(io.path(1))["x"], torch.ones(3))


def test_not_a_medgan_checkpoint(tmp_path):
    path = tmp_path / "checkpoints" / "step_00000003.pt"
    path.parent.mkdir()
    torch.save({"weights": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match="format"):
        CheckpointIO.load(path)
