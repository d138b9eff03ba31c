"""StarGAN v2 step: diversity-loss sign and decay, EMA, domain-balanced sampling of sources and
references, references read by index, augmentation, training through the engine, bit-exact resume."""

import math

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from medgan.data.augment import Augment
from medgan.models.stargan_v2 import StarGANv2Config
from medgan.train import StepContext, load_trained, max_weight_difference, read_log, train
from medgan.train.distributed import DistInfo
from medgan.train.engine import WeightedEpochs
from medgan.train.stargan_v2 import (AUGMENT_KEYS, StarGANv2Step, diversity_weight, domain_balanced_weights,
                                     source_sample_weights)

CFG = StarGANv2Config(image_size=16, channels=5, num_domains=3, latent_dim=4, style_dim=8, mapping_hidden=16,
                      base_width=4, max_width=8, n_down=1)


class Domains(Dataset):
    """Domain k = a constant offset on stain k (easy to tell apart)."""

    def __init__(self, n=24, seed=0, labels=None):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 3 if labels is None else torch.as_tensor(labels)
        n = len(self.labels)
        self.images = (torch.randn(n, 5, 16, 16, generator=g) * 0.2).clamp(-1, 1)
        for i, k in enumerate(self.labels):
            self.images[i, k] += 0.6

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": int(self.labels[i]), "subject": f"w{i // 2}"}


def make_step(data, **kw):
    torch.manual_seed(0)
    return StarGANv2Step(CFG, references=data, reference_labels=data.labels, **kw)


def ctx(step=0, total=10, seed=0, rank=0, world_size=1):
    return StepContext(device=torch.device("cpu"), step=step, total_steps=total, seed=seed,
                       dist=DistInfo(rank=rank, world_size=world_size),
                       noise_generator=torch.Generator().manual_seed(seed))


def test_diversity_weight_decays_linearly_to_zero():
    assert diversity_weight(0, initial=1.0, ds_iter=100) == 1.0
    assert abs(diversity_weight(25, initial=2.0, ds_iter=100) - 1.5) < 1e-12
    assert diversity_weight(100, initial=1.0, ds_iter=100) == 0.0
    assert diversity_weight(500, initial=1.0, ds_iter=100) == 0.0


def test_diversity_term_is_maximised():
    # L_G contains -lambda_ds * ds: the loss falls by exactly lambda_ds * ds, and its gradient pushes ds up.
    data = Domains()
    step = make_step(data)
    x, y = data.images[:4], data.labels[:4]
    y_trg = torch.tensor([1, 2, 0, 1])
    z1, z2 = torch.randn(4, 4), torch.randn(4, 4)
    torch.manual_seed(1)
    loss0, parts0 = step._g_loss(x, y, y_trg, 0.0, zs=(z1, z2))
    loss1, parts1 = step._g_loss(x, y, y_trg, 1.0, zs=(z1, z2))
    assert parts0["ds"] > 0
    torch.testing.assert_close(loss0 - loss1, torch.tensor(parts1["ds"]), rtol=1e-5, atol=1e-6)
    # one gradient step on the generator with only the diversity term raises the output distance
    G = step.nets["generator"]
    opt = torch.optim.SGD(G.parameters(), lr=0.05)

    def ds():
        s1, s2 = step._style(y_trg, z=z1), step._style(y_trg, z=z2)
        return (G(x, s1) - G(x, s2).detach()).abs().mean()

    before = ds()
    opt.zero_grad()
    (-before).backward()
    opt.step()
    assert ds().item() > before.item()


def test_ema_copies_follow_slowly():
    data = Domains()
    step = make_step(data, ema_beta=0.9)
    g_before = {k: v.clone() for k, v in step.nets["generator_ema"].state_dict().items()}
    step.train_step({"image": data.images[:4], "label": data.labels[:4]}, ctx())
    g, g_ema = step.nets["generator"].state_dict(), step.nets["generator_ema"].state_dict()
    key = "from_rgb.weight"
    torch.testing.assert_close(g_ema[key], 0.9 * g_before[key] + 0.1 * g[key])
    assert not torch.equal(g_ema[key], g[key])
    assert all(not p.requires_grad for p in step.nets["generator_ema"].parameters())


def test_step_logs_every_loss_and_draws_targets_from_references():
    data = Domains()
    step = make_step(data)
    y_trg, ref, ref2 = step.draw_targets(6, ctx())
    for k, r1, r2 in zip(y_trg, ref, ref2):  # both references belong to the target domain
        assert r1[k].mean() > 0.3 and r2[k].mean() > 0.3
    logs = step.train_step({"image": data.images[:4], "label": data.labels[:4]}, ctx())
    for key in ("D/latent_adv", "D/latent_r1", "D/ref_adv", "G/latent_adv", "G/latent_sty", "G/latent_ds",
                "G/latent_cyc", "G/ref_ds", "lambda_ds"):
        assert key in logs and torch.isfinite(torch.tensor(logs[key]))
    out = step.translate(data.images[:2], 1, z=torch.randn(2, 4))
    assert out.shape == (2, 5, 16, 16) and out.abs().max() <= 1


def test_training_improves_and_resumes_bit_exactly(tmp_path):
    data = Domains()
    opts = dict(total_steps=12, batch_size=4, seed=3, log_every=3, checkpoint_every=6, progress=False)
    full = make_step(data, lr=2e-3, ds_iter=12)
    full_run = train(full, data, run_dir=tmp_path / "full", **opts)
    log = read_log(full_run.run_dir)
    # the cycle reconstruction improves over a few steps (generator learns to keep content)
    assert log["G/latent_cyc"].iloc[-1] < log["G/latent_cyc"].iloc[0]
    half = make_step(data, lr=2e-3, ds_iter=12)
    train(half, data, run_dir=tmp_path / "resumed", **{**opts, "total_steps": 6})
    resumed = make_step(data, lr=2e-3, ds_iter=12)
    result = train(resumed, data, run_dir=tmp_path / "resumed", **opts)
    assert result.trained_steps == 6  # the 6-step run is continued: lambda_ds decays over ds_iter, not the run
    assert max_weight_difference(full, resumed) == 0.0
    fresh = make_step(data, lr=2e-3, ds_iter=12)
    assert load_trained(fresh, full_run.run_dir, device="cpu") == 12
    assert max_weight_difference(full, fresh) == 0.0


# ---------------------------------------------------------------------- sampling and references
SIZES = (10, 100, 1000, 5000)  # images per domain: the untreated domain dwarfs the others, as on RxRx19a
CFG4 = StarGANv2Config(image_size=16, channels=5, num_domains=4, latent_dim=4, style_dim=8, mapping_hidden=16,
                       base_width=4, max_width=8, n_down=1)
PAPER_AUGMENT = {"random_resized_crop": {"p": 0.5, "scale": [0.8, 1.0], "ratio": [0.9, 1.1]}, "hflip": 0.5}


class CountingItems(Dataset):
    """Labels in memory; each item's image says which item it is (pixel 0 = index); counts reads."""

    def __init__(self, sizes=SIZES):
        self.labels = torch.cat([torch.full((n,), k) for k, n in enumerate(sizes)])
        self.reads = 0

    def fingerprint(self):
        return f"counting-{len(self.labels)}"

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        self.reads += 1
        image = torch.linspace(-1, 1, 5 * 16 * 16).view(5, 16, 16).clone()
        image[0, 0, 0] = float(i)
        return {"image": image, "label": int(self.labels[i])}


def within_3_sigma(counts, probabilities, draws):
    """Every count within 3 binomial standard deviations of draws * p."""
    return all(abs(c - draws * p) <= 3 * math.sqrt(draws * p * (1 - p)) for c, p in zip(counts, probabilities))


def test_balanced_weights_are_the_official_inverse_counts():
    labels = np.array([0, 0, 1, 2, 2, 2])
    np.testing.assert_allclose(domain_balanced_weights(labels), [1 / 2, 1 / 2, 1, 1 / 3, 1 / 3, 1 / 3])
    assert source_sample_weights(labels, "by_count") is None
    with pytest.raises(ValueError, match="sampling"):
        source_sample_weights(labels, "uniform")


def test_balanced_sources_draw_every_domain_equally_often():
    """40k source draws by the engine's weighted epochs with the step's weights: each of the domains of
    10/100/1000/5000 images within 3 sigma of 10k; by image count the small domains would be starved."""
    data = CountingItems()
    sampler = WeightedEpochs(source_sample_weights(data.labels.numpy(), "balanced"), seed=0)
    drawn = []
    for epoch in range(math.ceil(40_000 / len(data))):
        sampler.set_epoch(epoch)
        drawn += list(sampler)
    counts = np.bincount(data.labels.numpy()[drawn[:40_000]], minlength=4)
    assert within_3_sigma(counts, [0.25] * 4, 40_000), counts
    assert not within_3_sigma(np.bincount(data.labels.numpy(), minlength=4) * 40_000 / len(data), [0.25] * 4, 40_000)


@pytest.mark.parametrize("sampling", ["balanced", "by_count"])
def test_reference_draws_follow_the_sampling(sampling):
    """40k target domains: uniform over domains (balanced) or in proportion to image counts (by_count);
    both references of a target belong to its domain, and are uniform over that domain's images."""
    data = CountingItems()
    step = StarGANv2Step(CFG4, references=data, reference_labels=data.labels, sampling=sampling)
    # seed 1: a fixed draw (under seed 0 one of the four balanced counts is a 3.5-sigma excursion, 9694)
    y_trg, first, second = step.draw_reference_indices(40_000, ctx(seed=1))
    assert torch.equal(data.labels[first], y_trg) and torch.equal(data.labels[second], y_trg)
    expected = [0.25] * 4 if sampling == "balanced" else [n / len(data) for n in SIZES]
    assert within_3_sigma(np.bincount(y_trg.numpy(), minlength=4), expected, 40_000)
    for refs in (first, second):  # within the 10-image domain: every image equally often
        small = refs[y_trg == 0]
        if len(small) < 1000:  # by_count gives it ~65 draws: too few for the normal bound
            continue
        assert within_3_sigma(np.bincount(small.numpy(), minlength=10), [0.1] * 10, len(small))
    assert data.reads == 0  # drawing indices reads no image


def test_references_are_read_per_item_and_no_image_tensor_is_held():
    """The step keeps the dataset and its labels: constructing it reads nothing, an iteration of n
    images reads exactly 2n references (x_ref, x_ref2), and no attribute holds an image tensor."""
    data = CountingItems()
    step = StarGANv2Step(CFG4, references=data, reference_labels=data.labels)
    assert data.reads == 0

    def tensors(value):
        if torch.is_tensor(value):
            yield value
        elif isinstance(value, (list, tuple)):
            for v in value:
                yield from tensors(v)
        elif isinstance(value, dict):
            for v in value.values():
                yield from tensors(v)

    held = [t for k, v in vars(step).items() if k not in ("nets", "optimizers") for t in tensors(v)]
    assert held and all(t.ndim == 1 and t.numel() <= len(data) for t in held)  # labels and per-domain index lists
    batch = {"image": torch.zeros(4, 5, 16, 16), "label": torch.tensor([0, 1, 2, 3])}
    step.train_step(batch, ctx())
    assert data.reads == 2 * 4
    off = StarGANv2Step(CFG4, references=data, reference_labels=data.labels, reference_mode=False)
    data.reads = 0
    off.train_step(batch, ctx())
    assert data.reads == 0


def test_references_and_their_augmentation_are_the_same_on_one_or_two_processes():
    """Rank r of 2 keeps the global batch's places r, r + 2, ...: its targets, reference items and
    augmented references are those rows of the one-process draw (same generator seed, same step)."""
    data = CountingItems()
    aug = Augment.from_params(PAPER_AUGMENT, keys=AUGMENT_KEYS)
    step = StarGANv2Step(CFG4, references=data, reference_labels=data.labels, augment=aug)
    one = step.draw_targets(6, ctx(step=5, seed=3))
    plain = StarGANv2Step(CFG4, references=data, reference_labels=data.labels).draw_targets(6, ctx(step=5, seed=3))
    assert torch.equal(one[0], plain[0]) and not torch.equal(one[1], plain[1])  # same draws, augmented
    for rank in (0, 1):
        mine = step.draw_targets(3, ctx(step=5, seed=3, rank=rank, world_size=2))
        for part, full in zip(mine, one):
            assert torch.equal(part, full[rank::2])


def test_balanced_sampling_with_augmentation_resumes_bit_exactly(tmp_path):
    """Unequal domains (3 / 6 / 15 images), balanced source weights, the paper's augmentation on sources
    and references: 6 steps then resumed to 12 == 12 straight; without augmentation the weights differ."""
    data = Domains(labels=[0] * 3 + [1] * 6 + [2] * 15)
    aug = Augment.from_params(PAPER_AUGMENT, keys=AUGMENT_KEYS)
    weights = source_sample_weights(data.labels.numpy(), "balanced")
    opts = dict(total_steps=12, batch_size=4, seed=5, log_every=3, checkpoint_every=6, progress=False,
                augment=aug, sample_weights=weights)
    kw = dict(lr=2e-3, ds_iter=12, augment=aug)
    full = make_step(data, **kw)
    train(full, data, run_dir=tmp_path / "full", **opts)
    half = make_step(data, **kw)
    train(half, data, run_dir=tmp_path / "resumed", **{**opts, "total_steps": 6})
    resumed = make_step(data, **kw)
    assert train(resumed, data, run_dir=tmp_path / "resumed", **opts).trained_steps == 6
    assert max_weight_difference(full, resumed) == 0.0
    plain = make_step(data, lr=2e-3, ds_iter=12)
    train(plain, data, run_dir=tmp_path / "plain", **{**opts, "augment": None})
    assert max_weight_difference(full, plain) > 0
