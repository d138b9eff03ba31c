import json

import pytest
import torch

from medgan.train import read_log, seed_everything, train
from medgan.train.checkpoint import CheckpointIO
from medgan.train.engine import RunFolderBusyError, RunLock
from tests.train.toy import ToyGANStep, ToyImages


class Interrupt(Exception):
    pass


class DecayingToyStep(ToyGANStep):
    """A toy step whose learning rate decays over the run, so its result depends on the total."""

    schedule_uses_total_steps = True

    def train_step(self, batch, ctx):
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = 1e-2 * (1 - ctx.progress)
        return super().train_step(batch, ctx)


def fresh(cls=ToyGANStep, *args, seed=0):
    seed_everything(seed)
    return cls(*args)


def weights(step):
    return {f"{n}.{k}": v.clone() for n, net in step.nets.items() for k, v in net.state_dict().items()}


def same_weights(a, b):
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


KW = dict(batch_size=8, progress=False)


def test_resume_is_bit_exact(tmp_path, monkeypatch):
    kw = dict(total_steps=12, batch_size=8, seed=3, log_every=2, progress=False)
    straight = fresh()
    first = train(straight, ToyImages(), run_dir=tmp_path / "straight", **kw)

    original = ToyGANStep.train_step

    def interrupting(self, batch, ctx):
        if ctx.step == 7:
            raise Interrupt
        return original(self, batch, ctx)

    monkeypatch.setattr(ToyGANStep, "train_step", interrupting)
    with pytest.raises(Interrupt):
        train(fresh(), ToyImages(), run_dir=tmp_path / "resumed", checkpoint_every=5, **kw)
    monkeypatch.setattr(ToyGANStep, "train_step", original)
    run_dir = first.run_dir.parent.parent / "resumed" / first.run_dir.name  # same settings, same key
    assert CheckpointIO(run_dir).steps() == [5]

    resumed = fresh()  # a new process would rebuild the model from scratch
    result = train(resumed, ToyImages(), run_dir=tmp_path / "resumed", checkpoint_every=5, **kw)
    assert result.run_dir == run_dir
    assert result.step == 12 and result.trained_steps == 7
    assert same_weights(straight, resumed)
    # The log holds each step once, and matches the uninterrupted run.
    la, lb = read_log(first.run_dir), read_log(result.run_dir)
    assert list(la["step"]) == list(lb["step"]) == [2, 4, 6, 8, 10, 12]
    assert la["loss_D"].tolist() == pytest.approx(lb["loss_D"].tolist(), rel=0, abs=0)


def test_finished_run_is_reloaded_not_retrained(tmp_path):
    first = fresh()
    a = train(first, ToyImages(), run_dir=tmp_path, total_steps=4, **KW)
    again = fresh()
    b = train(again, ToyImages(), run_dir=tmp_path, total_steps=4, **KW)
    assert b.trained_steps == 0 and b.run_dir == a.run_dir
    assert same_weights(first, again)


def test_a_rerun_with_the_trained_step_object_finds_its_run(tmp_path):
    step = fresh()
    a = train(step, ToyImages(), run_dir=tmp_path, total_steps=4, **KW)
    b = train(step, ToyImages(), run_dir=tmp_path, total_steps=4, **KW)  # a re-run notebook cell
    assert b.trained_steps == 0 and b.run_dir == a.run_dir


@pytest.mark.parametrize("change", [dict(seed=1), dict(batch_size=16), dict(precision="bf16"),
                                    dict(fingerprint={"extra": 1}), dict(data_seed=1), dict(init_seed=1), dict(lr=1e-3)])
def test_any_change_that_changes_the_weights_never_reuses_a_model(tmp_path, change):
    base = fresh()
    a = train(base, ToyImages(), run_dir=tmp_path, total_steps=4, **KW)
    kw = dict(KW)
    kw.update({k: v for k, v in change.items() if k in ("seed", "batch_size", "precision", "fingerprint")})
    step = fresh(ToyGANStep, change.get("lr", 1e-2), seed=change.get("init_seed", 0))
    b = train(step, ToyImages(seed=change.get("data_seed", 0)), run_dir=tmp_path, total_steps=4, **kw)
    assert b.trained_steps == 4 and b.run_dir != a.run_dir
    assert CheckpointIO(a.run_dir).steps() == [4], "the other setting's model is kept"


def test_switching_between_two_settings_reuses_each_model(tmp_path):
    a = train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=4, seed=0, **KW)
    b = train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=4, seed=1, **KW)
    again = train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=4, seed=0, **KW)
    assert (a.trained_steps, b.trained_steps, again.trained_steps) == (4, 4, 0)
    assert again.run_dir == a.run_dir != b.run_dir


def test_more_steps_continue_a_finished_run_and_equal_a_run_from_scratch(tmp_path):
    short = train(fresh(), ToyImages(), run_dir=tmp_path / "a", total_steps=4, **KW)
    longer_step = fresh()
    longer = train(longer_step, ToyImages(), run_dir=tmp_path / "a", total_steps=10, **KW)
    assert longer.run_dir == short.run_dir and longer.trained_steps == 6
    scratch_step = fresh()
    train(scratch_step, ToyImages(), run_dir=tmp_path / "b", total_steps=10, **KW)
    assert same_weights(longer_step, scratch_step)


def test_more_steps_with_a_schedule_over_the_total_train_in_their_own_folder(tmp_path):
    short = train(fresh(DecayingToyStep), ToyImages(), run_dir=tmp_path, total_steps=4, **KW)
    step = fresh(DecayingToyStep)
    longer = train(step, ToyImages(), run_dir=tmp_path, total_steps=10, **KW)
    assert longer.trained_steps == 10 and longer.run_dir != short.run_dir
    scratch = fresh(DecayingToyStep)
    train(scratch, ToyImages(), run_dir=tmp_path / "scratch", total_steps=10, **KW)
    assert same_weights(step, scratch)
    assert CheckpointIO(short.run_dir).steps() == [4]


def test_fewer_steps_use_the_checkpoint_at_exactly_that_step(tmp_path):
    train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=10, checkpoint_every=4, keep_checkpoints=3, log_every=2, **KW)
    step = fresh()
    result = train(step, ToyImages(), run_dir=tmp_path, total_steps=8, **KW)
    assert result.trained_steps == 0 and result.step == 8
    assert list(result.history["step"]) == [2, 4, 6, 8]
    scratch = fresh()
    train(scratch, ToyImages(), run_dir=tmp_path / "scratch", total_steps=8, **KW)
    assert same_weights(step, scratch)
    assert CheckpointIO(result.run_dir).steps() == [10, 8, 4], "the longer run is untouched"


def test_fewer_steps_without_that_checkpoint_train_in_their_own_folder(tmp_path):
    long = train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=10, **KW)
    step = fresh()
    short = train(step, ToyImages(), run_dir=tmp_path, total_steps=6, **KW)
    assert short.trained_steps == 6 and short.step == 6 and short.run_dir != long.run_dir
    scratch = fresh()
    train(scratch, ToyImages(), run_dir=tmp_path / "scratch", total_steps=6, **KW)
    assert same_weights(step, scratch)
    assert CheckpointIO(long.run_dir).steps() == [10]


def test_the_final_checkpoint_of_every_finished_length_is_kept(tmp_path):
    train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=4, keep_checkpoints=1, **KW)
    result = train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=9, checkpoint_every=2, keep_checkpoints=1, **KW)
    assert CheckpointIO(result.run_dir).steps() == [9, 4]
    again = train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=4, **KW)
    assert again.trained_steps == 0 and again.run_dir == result.run_dir


def test_a_run_folder_in_use_is_locked(tmp_path):
    first = train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=2, **KW)
    with RunLock(first.run_dir):  # as another process training the same job would hold it
        with pytest.raises(RunFolderBusyError, match="another process"):
            train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=4, **KW)
    assert train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=4, **KW).trained_steps == 2


def test_a_checkpoint_of_another_configuration_is_set_aside_not_resumed(tmp_path):
    first = train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=4, **KW)
    io = CheckpointIO(first.run_dir)
    state = io.load(io.path(4))
    state["fingerprint"] = "{}"  # as a checkpoint written under other rules would carry
    torch.save({k: v for k, v in state.items() if k != "format"} | {"format": state["format"]}, io.path(4))
    result = train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=4, **KW)
    assert result.trained_steps == 4
    assert list(first.run_dir.glob("superseded-*/checkpoints/*.pt")), "the earlier checkpoints are kept"


def test_outputs_log_samples_checkpoint_and_fingerprint(tmp_path):
    result = train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=6, batch_size=8, log_every=3,
                   sample_every=3, checkpoint_every=3, keep_checkpoints=1, progress=False)
    run_dir = result.run_dir
    assert run_dir.parent == tmp_path
    assert list(result.history["step"]) == [3, 6]
    assert {"loss_D", "loss_G", "time_s"} <= set(result.history.columns)
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["step_00000003.png", "step_00000006.png"]
    assert [p.name for p in CheckpointIO(run_dir).list()] == ["step_00000006.pt"]
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    assert all(json.loads(line)["step"] for line in lines)
    identity = json.loads((run_dir / "fingerprint.json").read_text())
    assert identity["seed"] == 0 and identity["batch_size"] == 8 and identity["dataset"]["length"] == 64
    assert set(identity["step"]["nets"]) == {"G", "D"}


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
