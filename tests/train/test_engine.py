import json

import pytest
import torch

from medgan.train import read_log, seed_everything, train
from medgan.train.checkpoint import CheckpointIO
from tests.train.toy import ToyGANStep, ToyImages


class Interrupt(Exception):
    pass


class InterruptingStep(ToyGANStep):
    def __init__(self, stop_at):
        super().__init__()
        self.stop_at = stop_at

    def train_step(self, batch, ctx):
        if ctx.step == self.stop_at:
            raise Interrupt
        return super().train_step(batch, ctx)


def fresh(cls=ToyGANStep, *args):
    seed_everything(0)
    return cls(*args)


def weights(step):
    return {f"{n}.{k}": v.clone() for n, net in step.nets.items() for k, v in net.state_dict().items()}


def test_resume_is_bit_exact(tmp_path):
    kw = dict(total_steps=12, batch_size=8, seed=3, log_every=2, progress=False)
    straight = fresh()
    train(straight, ToyImages(), run_dir=tmp_path / "straight", **kw)

    interrupted = fresh(InterruptingStep, 7)
    with pytest.raises(Interrupt):
        train(interrupted, ToyImages(), run_dir=tmp_path / "resumed", checkpoint_every=5, **kw)
    assert [p.name for p in CheckpointIO(tmp_path / "resumed").list()] == ["step_00000005.pt"]

    resumed = fresh()  # a new process would rebuild the model from scratch
    result = train(resumed, ToyImages(), run_dir=tmp_path / "resumed", checkpoint_every=5, **kw)
    assert result.step == 12 and result.trained_steps == 7
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # The log holds each step once, and matches the uninterrupted run.
    la, lb = read_log(tmp_path / "straight"), read_log(tmp_path / "resumed")
    assert list(la["step"]) == list(lb["step"]) == [2, 4, 6, 8, 10, 12]
    assert la["loss_D"].tolist() == pytest.approx(lb["loss_D"].tolist(), rel=0, abs=0)


def test_finished_run_is_reloaded_not_retrained(tmp_path):
    kw = dict(total_steps=4, batch_size=8, progress=False)
    first = fresh()
    train(first, ToyImages(), run_dir=tmp_path, **kw)
    again = fresh()
    result = train(again, ToyImages(), run_dir=tmp_path, **kw)
    assert result.trained_steps == 0
    for k, v in weights(first).items():
        assert torch.equal(v, weights(again)[k])


def test_changed_configuration_is_set_aside_not_resumed(tmp_path):
    train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=4, batch_size=8, progress=False,
          fingerprint={"lr": 1})
    result = train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=4, batch_size=8, progress=False,
                   fingerprint={"lr": 2})
    assert result.trained_steps == 4
    superseded = list(tmp_path.glob("superseded-*/checkpoints/*.pt"))
    assert superseded, "the earlier run's checkpoints must be kept, not deleted"


def test_outputs_log_samples_and_checkpoint(tmp_path):
    result = train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=6, batch_size=8, log_every=3,
                   sample_every=3, checkpoint_every=3, keep_checkpoints=1, progress=False)
    assert list(result.history["step"]) == [3, 6]
    assert {"loss_D", "loss_G", "time_s"} <= set(result.history.columns)
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_00000003.png", "step_00000006.png"]
    assert [p.name for p in CheckpointIO(tmp_path).list()] == ["step_00000006.pt"]
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert all(json.loads(line)["step"] for line in lines)


def test_bad_batch_size_is_clear(tmp_path):
    with pytest.raises(ValueError, match="fewer than one batch"):
        train(fresh(), ToyImages(n=4), run_dir=tmp_path, total_steps=1, batch_size=8, progress=False)


def test_bf16_autocast_runs_and_learns_nothing_nan(tmp_path):
    result = train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=4, batch_size=8, precision="bf16",
                   log_every=1, progress=False)
    assert result.history[["loss_D", "loss_G"]].notna().all().all()


def test_unknown_precision_is_refused(tmp_path):
    with pytest.raises(ValueError, match="precision"):
        train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=1, batch_size=8, precision="fp8", progress=False)


def test_sample_images_leaves_batchnorm_statistics_alone(tmp_path):
    from torch import nn

    from medgan.train import sample_images

    step = fresh()
    step.nets["G"].append(nn.BatchNorm1d(64))
    before = {k: v.clone() for k, v in step.nets["G"].state_dict().items()}
    images = sample_images(step, 4)
    assert images.shape == (4, 1, 8, 8)
    after = step.nets["G"].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
