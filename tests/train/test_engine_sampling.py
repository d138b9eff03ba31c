"""The engine's augmentation hook and weighted sampling: applied, fingerprinted, exact on resume."""

import pytest
import torch

from medgan.data.augment import Augment
from medgan.train import seed_everything, train
from medgan.train.engine import WeightedEpochs
from tests.train.toy import ToyGANStep, ToyImages

AUG = Augment.from_params({"hflip": 0.5, "random_resized_crop": {"p": 0.5, "scale": [0.8, 1.0],
                                                                   "ratio": [0.9, 1.1]}}, keys=["image"])


def fresh():
    seed_everything(0)
    return ToyGANStep()


def same_weights(a, b):
    return all(torch.equal(x, y) for n in a.nets for x, y in zip(a.nets[n].state_dict().values(),
                                                                  b.nets[n].state_dict().values()))


def run(tmp, step, steps, **kw):
    return train(step, ToyImages(32), run_dir=tmp, total_steps=steps, batch_size=8, progress=False,
                 checkpoint_every=3, **kw)


def test_augmentation_changes_training_and_the_run_key(tmp_path):
    plain, aug = fresh(), fresh()
    r0 = run(tmp_path, plain, 4)
    r1 = run(tmp_path, aug, 4, augment=AUG)
    assert r0.run_dir != r1.run_dir
    assert not same_weights(plain, aug)


def test_resume_with_augmentation_and_weights_is_exact(tmp_path):
    weights = torch.linspace(1, 4, 32)
    whole = fresh()
    run(tmp_path / "a", whole, 7, augment=AUG, sample_weights=weights)
    part = fresh()
    run(tmp_path / "b", part, 3, augment=AUG, sample_weights=weights)
    resumed = fresh()
    r = run(tmp_path / "b", resumed, 7, augment=AUG, sample_weights=weights)
    assert r.trained_steps == 4
    assert same_weights(whole, resumed)


def test_weighted_epochs_draw_in_proportion_and_deal_like_one_process():
    w = torch.tensor([1.0] * 10 + [9.0] * 10)
    one = list(WeightedEpochs(w, seed=5))
    assert len(one) == 20
    counts = torch.zeros(20)
    sampler = WeightedEpochs(w, seed=5)
    for epoch in range(2000):
        sampler.set_epoch(epoch)
        counts += torch.bincount(torch.tensor(list(sampler)), minlength=20)
    heavy = float(counts[10:].sum()) / float(counts.sum())
    n = float(counts.sum())
    assert abs(heavy - 0.9) < 3 * (0.9 * 0.1 / n) ** 0.5
    parts = [list(WeightedEpochs(w, num_replicas=4, rank=r, seed=5)) for r in range(4)]
    merged = [parts[i % 4][i // 4] for i in range(20)]
    assert merged == one


def test_batch_schedule_reads_on_through_epochs():
    from medgan.train.engine import BatchSchedule, _StreamBatches
    from torch.utils.data import DistributedSampler
    schedule = BatchSchedule([[0, 4], [3, 7], [6, 2]])
    assert [schedule.per_rank_at(k) for k in range(8)] == [4, 4, 4, 7, 7, 7, 2, 2]
    assert [schedule.consumed(k) for k in (0, 3, 4, 6, 8)] == [0, 12, 19, 33, 37]
    sampler = DistributedSampler(list(range(10)), num_replicas=1, rank=0, shuffle=True, seed=1, drop_last=True)
    stream = [i for b in _StreamBatches(sampler, schedule, 0, 8) for i in b]
    assert len(stream) == 37
    for e in range(3):  # every full epoch of 10 is one permutation of the data
        assert sorted(stream[10 * e:10 * e + 10]) == list(range(10))
    # starting mid-run gives exactly the rest of the stream
    assert [i for b in _StreamBatches(sampler, schedule, 4, 8) for i in b] == stream[19:]
    assert BatchSchedule([[0, 8]]).identity() == 8 and BatchSchedule(8).constant


class Interrupt(Exception):
    pass


def test_resume_with_a_batch_schedule_is_exact(tmp_path, monkeypatch):
    kw = dict(total_steps=9, batch_size=[[0, 4], [3, 8], [6, 2]], seed=2, progress=False, checkpoint_every=4)
    straight = fresh()
    train(straight, ToyImages(20), run_dir=tmp_path / "a", **kw)
    original = ToyGANStep.train_step

    def interrupting(self, batch, ctx):
        if ctx.step == 5:
            raise Interrupt
        return original(self, batch, ctx)

    monkeypatch.setattr(ToyGANStep, "train_step", interrupting)
    with pytest.raises(Interrupt):
        train(fresh(), ToyImages(20), run_dir=tmp_path / "b", **kw)
    monkeypatch.setattr(ToyGANStep, "train_step", original)
    resumed = fresh()
    r = train(resumed, ToyImages(20), run_dir=tmp_path / "b", **kw)
    assert r.trained_steps == 5  # resumed from the checkpoint at step 4, inside the batch-8 phase
    assert same_weights(straight, resumed)
    constant = fresh()
    assert not same_weights(straight, constant)
