import pytest
import torch

from medgan.models.image_to_image import define_discriminator, define_generator
from medgan.train import max_weight_difference, read_log, seed_everything, train
from medgan.train.cyclegan import CycleGANStep, ImagePool, UnpairedDataset, linear_decay_factor
from tests.train.toy import ToyImages


class _Domain(torch.utils.data.Dataset):
    """Toy blobs (domain A) or their negatives (domain B): a learnable 1x8x8 translation."""

    def __init__(self, negate, n=24, seed=0):
        self.images = ToyImages(n, seed).images * (-1 if negate else 1)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": 0, "subject": f"s{i}"}


def _step(**kw):
    seed_everything(0)
    nets = [define_generator("resnet_1blocks", 1, 1, width=4), define_generator("resnet_1blocks", 1, 1, width=4),
            define_discriminator(1, width=4, n_layers=1), define_discriminator(1, width=4, n_layers=1)]
    return CycleGANStep(*nets, **{"lr": 2e-3, "pool_size": 4, **kw})


def _data():
    return UnpairedDataset(_Domain(False, seed=0), _Domain(True, seed=1))


class _Uniform:
    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)

    def __call__(self, *shape):
        return torch.rand(shape, generator=self.g)


def test_image_pool_fills_then_swaps_half():
    pool = ImagePool(4)
    uniform = _Uniform(0)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first, uniform), first)  # filling: returned as given
    assert len(pool) == 4
    new = (100 + torch.arange(200.0)).view(200, 1, 1, 1)
    out = pool.query(new, uniform)
    swapped = out != new
    assert len(pool) == 4
    assert 70 < swapped.sum().item() < 130  # each image swapped with probability 1/2
    # a swapped image is one stored earlier (an initial one or an earlier query image), never a later one
    for i in torch.nonzero(swapped.flatten()).flatten().tolist():
        value = out.flatten()[i].item()
        assert value in (0.0, 1.0, 2.0, 3.0) or 100 <= value < 100 + i
    # nothing is lost or duplicated: what went in = what came out + what the pool holds
    everything = sorted(first.flatten().tolist() + new.flatten().tolist())
    assert sorted(out.flatten().tolist() + [img.item() for img in pool.images]) == everything
    assert torch.equal(ImagePool(0).query(new, uniform), new)


def test_image_pool_state_round_trip():
    pool = ImagePool(3)
    pool.query(torch.randn(5, 1, 2, 2), _Uniform(1))
    copy = ImagePool(3)
    copy.load_state_dict(pool.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(pool.images, copy.images)) and len(copy) == 3
    with pytest.raises(ValueError, match="pool_size"):
        ImagePool(2).load_state_dict(pool.state_dict())


def test_linear_decay_schedule():
    assert linear_decay_factor(0.0) == 1.0 and linear_decay_factor(0.49) == 1.0
    assert linear_decay_factor(0.75) == pytest.approx(0.5)
    assert linear_decay_factor(1.0) == 0.0
    assert linear_decay_factor(0.9, decay_start=1.0) == 1.0


def test_unpaired_dataset_covers_all_combinations():
    data = _data()
    assert len(data) == 24 * 24
    item = data[24 * 3 + 5]
    assert torch.equal(item["A"], data.a[3]["image"]) and torch.equal(item["B"], data.b[5]["image"])


def test_cycle_consistency_improves_with_training(tmp_path):
    step = _step()
    result = train(step, _data(), run_dir=tmp_path, total_steps=60, batch_size=4, seed=0, log_every=10,
                   progress=False)
    log = read_log(result.run_dir)
    cycle = log["cycle_A"] + log["cycle_B"]
    assert cycle.iloc[-1] < 0.7 * cycle.iloc[0]
    assert log["lr"].iloc[-1] < log["lr"].iloc[0]  # second half decays
    assert result.step == 60
    for key in ("loss_D_A", "loss_D_B", "adv_AB", "identity_A"):
        assert torch.isfinite(torch.tensor(log[key].values)).all()
    # the trained A -> B generator moves towards the negated image better than the identity does
    a = torch.stack([_Domain(False, seed=7)[i]["image"] for i in range(8)])
    with torch.no_grad():
        fake_b = step.nets["G_AB"].eval()(a)
    assert (fake_b - (-a)).abs().mean() < (a - (-a)).abs().mean()


def test_checkpoint_resume_is_bit_exact_including_pools(tmp_path):
    kw = dict(total_steps=8, batch_size=2, seed=1, log_every=1, progress=False)
    straight = _step()
    first_run = train(straight, _data(), run_dir=tmp_path / "straight", **kw)

    class Stop(Exception):
        pass

    first = _step()
    original = first.train_step

    def stop_at_5(batch, ctx):
        if ctx.step == 5:
            raise Stop
        return original(batch, ctx)

    first.train_step = stop_at_5
    with pytest.raises(Stop):
        train(first, _data(), run_dir=tmp_path / "resumed", checkpoint_every=3, **kw)
    resumed = _step()
    result = train(resumed, _data(), run_dir=tmp_path / "resumed", **kw)
    assert result.trained_steps == 5
    assert max_weight_difference(straight, resumed) == 0.0
    for domain in ("A", "B"):
        a, b = straight.pools[domain].images, resumed.pools[domain].images
        assert len(a) == len(b) == 4 and all(torch.equal(x, y) for x, y in zip(a, b))
    assert read_log(first_run.run_dir)["loss_G"].tolist() == read_log(result.run_dir)["loss_G"].tolist()


def test_identity_needs_matching_channels(tmp_path):
    seed_everything(0)
    step = CycleGANStep(define_generator("resnet_0blocks", 1, 2, width=2), define_generator("resnet_0blocks", 2, 1, width=2),
                        define_discriminator(1, width=2, n_layers=1), define_discriminator(2, width=2, n_layers=1))
    from medgan.train.step import StepContext
    batch = {"A": torch.zeros(1, 1, 8, 8), "B": torch.zeros(1, 2, 8, 8)}
    with pytest.raises(ValueError, match="lambda_identity=0"):
        step.train_step(batch, StepContext(device=torch.device("cpu"), step=0, total_steps=1))
