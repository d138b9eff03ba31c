import copy

import pytest
import torch

from medgan.models.image_to_image import (define_discriminator, define_generator, depends_on_inference_mode,
                                          dropout_seed)
from medgan.train import max_weight_difference, read_log, seed_everything, train
from medgan.train.cyclegan import CycleGANStep, ImagePool, UnpairedDataset, linear_decay_factor, translate
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


def _trained_looking_unet():
    """A U-Net with batch norm and dropout whose running statistics differ from any one batch's."""
    seed_everything(3)
    net = define_generator("unet_64", 1, 1, width=4, norm="batch", dropout=True)  # unet_64: one dropout level
    assert sum(isinstance(m, torch.nn.Dropout) for m in net.modules()) == 1
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_inference_modes_eval_uses_running_statistics_train_uses_batch_statistics_and_seeded_dropout():
    net = _trained_looking_unet()
    x = torch.rand(3, 1, 64, 64) * 2 - 1
    running = {k: v.clone() for k, v in net.state_dict().items()}
    # eval: the module's eval() forward, whatever the batch size
    reference = copy.deepcopy(net).eval()
    with torch.no_grad():
        expected_eval = torch.cat([reference(x[:2]), reference(x[2:])])
        whole = reference(x)
    assert torch.equal(translate(net, x, batch_size=2, mode="eval"), expected_eval)
    # the same maths at another batch size: equal up to rounding (a conv kernel may block a batch of 3
    # differently from one of 2, so bitwise equality across batch sizes is not guaranteed)
    assert torch.allclose(translate(net, x, batch_size=2, mode="eval"), whole, rtol=0, atol=1e-6)
    # train, batches of 1: a manual train() forward of each image with its dropout seed
    seen = []
    norm = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    hook = norm.register_forward_hook(lambda m, inp, out: seen.append((inp[0].clone(), out.clone())))
    rng = torch.get_rng_state()
    out = translate(net, x, batch_size=1, mode="train", seed=11)
    assert torch.equal(torch.get_rng_state(), rng)  # the dropout draws came from a forked generator
    hook.remove()
    manual = copy.deepcopy(net).train()
    expected = []
    for i in range(len(x)):
        torch.manual_seed(dropout_seed(11, i))
        with torch.no_grad():
            expected.append(manual(x[i:i + 1]))
    assert torch.equal(out, torch.cat(expected))
    # batch norm normalised with the batch's own mean and (biased) variance, not the running ones
    features, normalised = seen[0]
    mean = features.mean(dim=(0, 2, 3), keepdim=True)
    var = features.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    closed = (features - mean) / torch.sqrt(var + norm.eps) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)
    assert torch.allclose(normalised, closed, atol=1e-5)
    # nothing changed: running statistics, the module's mode, the global RNG
    assert all(torch.equal(v, running[k]) for k, v in net.state_dict().items())
    assert not net.training
    # the modes differ, the seed moves the dropout masks, and a set translated in pieces matches one pass
    assert (out - expected_eval).abs().mean() > 1e-3
    assert not torch.equal(translate(net, x, batch_size=1, mode="train", seed=12), out)
    pieces = torch.cat([translate(net, x[:2], batch_size=1, mode="train", seed=11),
                        translate(net, x[2:], batch_size=1, mode="train", seed=11, start=2)])
    assert torch.equal(pieces, out)
    # the test batch size is part of train mode: batch statistics over 3 images are other numbers
    assert not torch.allclose(translate(net, x, batch_size=3, mode="train", seed=11), out)
    with pytest.raises(ValueError, match="inference mode"):
        translate(net, x, mode="test")


def test_instance_norm_without_dropout_is_the_same_in_both_modes():
    seed_everything(0)
    net = define_generator("resnet_2blocks", 1, 1, width=4)  # CycleGAN's: instance norm, no dropout
    assert not depends_on_inference_mode(net)
    assert depends_on_inference_mode(_trained_looking_unet())
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(translate(net, x, batch_size=1, mode="train"), translate(net, x, batch_size=1, mode="eval"))
    assert torch.allclose(translate(net, x, batch_size=2, mode="train"), translate(net, x, batch_size=1, mode="eval"),
                          atol=1e-6)  # per-image statistics: the batch size changes nothing but rounding
