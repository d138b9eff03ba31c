import json
import os
import pickle

import pytest
import torch
from torch import nn

from medgan.atomic import CorruptFileError, UnsafeFileError, torch_load
from medgan.train import CheckpointError, CheckpointIO, load_trained, read_log, seed_everything, train
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
    with pytest.raises(UnsafeFileError, match="raw.pt"):
        torch_load(raw)
    assert not marker.exists()


def test_unsafe_newest_checkpoint_stops_resume_even_with_a_good_older_one(tmp_path, caplog):
    """Never fall back past a file that may have been tampered with."""
    run_dir = _train(tmp_path, 2)
    io = CheckpointIO(run_dir)
    assert io.load_latest()["step"] == 2  # a good checkpoint exists
    marker = tmp_path / "pwned"
    evil = io.path(3)
    torch.save({"format": "medgan-checkpoint-v1", "step": 3, "payload": _RunsCode(str(marker))}, evil)
    with pytest.raises(UnsafeFileError, match=evil.name) as info:
        io.load_latest()
    assert info.value.path == evil and "not tried" in str(info.value)
    with pytest.raises(UnsafeFileError, match=evil.name):
        seed_everything(0)
        train(ToyGANStep(), ToyImages(), run_dir=tmp_path, total_steps=4, batch_size=8, progress=False)
    assert not marker.exists(), "loading must not execute the pickled code"
    assert "resuming from" not in caplog.text


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


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4])
def test_tiny_checkpoint_is_corrupt_and_the_older_one_is_used(tmp_path, size, caplog):
    io = CheckpointIO(_train(tmp_path, 4, checkpoint_every=2, keep_checkpoints=3))
    newest, previous = io.list()[:2]
    newest.write_bytes(newest.read_bytes()[:size])
    with pytest.raises(CorruptFileError, match=newest.name):
        io.load(newest)
    state = io.load_latest()
    assert state["step"] == 2 and state["path"] == str(previous)
    assert newest.name in caplog.text


def test_torn_last_log_line_is_dropped_on_read_and_on_resume(tmp_path, caplog):
    run_dir = _train(tmp_path, 4, checkpoint_every=2, keep_checkpoints=3, log_every=1)
    log_file = run_dir / "log.jsonl"
    complete = log_file.read_text()
    log_file.write_text(complete + '{"step": 5, "time_s": 0.1, "loss_D": 1.2')  # died mid-write
    assert read_log(run_dir)["step"].tolist() == [1, 2, 3, 4]
    assert "cut short" in caplog.text
    # Resume from step 2 (the newest checkpoint is damaged): the log is cut back, torn line included.
    newest = CheckpointIO(run_dir).list()[0]
    newest.write_bytes(newest.read_bytes()[:100])
    seed_everything(0)
    result = train(ToyGANStep(), ToyImages(), run_dir=tmp_path, total_steps=4, batch_size=8, progress=False,
                   checkpoint_every=2, keep_checkpoints=3, log_every=1)
    assert result.trained_steps == 2
    assert log_file.read_text().endswith("\n")
    assert read_log(run_dir)["step"].tolist() == [1, 2, 3, 4]
    assert [json.loads(line)["step"] for line in log_file.read_text().splitlines()] == [1, 2, 3, 4]


def test_bad_line_inside_the_log_names_the_file_and_line(tmp_path):
    run_dir = _train(tmp_path, 3, log_every=1)
    log_file = run_dir / "log.jsonl"
    lines = log_file.read_text().splitlines()
    lines[1] = lines[1][:10]
    log_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorruptFileError, match=r"log.jsonl: line 2"):
        read_log(run_dir)


def test_checkpoint_that_no_longer_fits_the_model_names_file_and_network(tmp_path):
    run_dir = _train(tmp_path, 2)
    wider = ToyGANStep()
    wider.nets["G"] = nn.Sequential(nn.Linear(ToyGANStep.z_dim, 48), nn.LeakyReLU(0.2), nn.Linear(48, 64), nn.Tanh())
    with pytest.raises(CheckpointError, match=r"step_00000002\.pt: network 'G'.*size mismatch") as info:
        load_trained(wider, run_dir, device="cpu")
    assert str(run_dir) in str(info.value)
    fewer = ToyGANStep()
    del fewer.nets["D"]
    with pytest.raises(CheckpointError, match=r"step_00000002\.pt: field 'nets'"):
        load_trained(fewer, run_dir, device="cpu")
