import pytest
import torch

from medgan.data.augment import Augment
from medgan.models.image_to_image import define_discriminator, define_generator
from medgan.train import max_weight_difference, seed_everything, train
from medgan.train.pix2pix import Pix2PixStep


class Paired(torch.utils.data.Dataset):
    """x -> y = a fixed, learnable mapping (brighten and flip), 1x16x16."""

    def __init__(self, n=32):
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(n, 1, 16, 16, generator=g) * 2 - 1
        self.y = (self.x.flip(-1) * 0.5 + 0.3).clamp(-1, 1)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i], "target": self.y[i], "subject": f"p{i // 4}"}


def make_step(**kw):
    seed_everything(0)
    G = define_generator("unet_16", 1, 1, width=8, norm="batch", dropout=True)
    D = define_discriminator(2, width=8, n_layers=2, norm="batch")
    return Pix2PixStep(G, D, **kw)


def test_discriminator_is_conditional_on_the_pair():
    step = make_step()
    seen = []
    step.nets["D"].register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[1]))
    from medgan.train.step import StepContext

    ds = Paired(8)
    batch = {"image": ds.x[:4], "target": ds.y[:4]}
    step.train_step(batch, StepContext(device=torch.device("cpu"), step=0, total_steps=10))
    assert seen and all(c == 2 for c in seen)  # (input, output) stacked on channels


def test_l1_term_falls_and_lr_decays(tmp_path):
    step = make_step(lr=1e-3)
    result = train(step, Paired(), run_dir=tmp_path, total_steps=60, batch_size=8, log_every=10, progress=False)
    l1 = result.history["l1"].tolist()
    assert l1[-1] < 0.75 * l1[0], l1
    lr = result.history["lr"].tolist()
    assert lr[0] == pytest.approx(1e-3) and lr[-1] < lr[0] / 2  # linear decay over the second half


def test_interrupted_run_resumes_bit_exact(tmp_path):
    """Stopped at step 5 (after the checkpoint at 4), resumed: the lr schedule and weights match."""
    kw = dict(total_steps=8, batch_size=8, progress=False, checkpoint_every=4)
    straight = make_step()
    train(straight, Paired(), run_dir=tmp_path / "a", **kw)
    interrupted = make_step()
    original = interrupted.train_step

    def stop_at_5(batch, ctx):
        if ctx.step == 5:
            raise RuntimeError("power cut")
        return original(batch, ctx)

    interrupted.train_step = stop_at_5
    with pytest.raises(RuntimeError, match="power cut"):
        train(interrupted, Paired(), run_dir=tmp_path / "b", **kw)
    resumed = make_step()
    result = train(resumed, Paired(), run_dir=tmp_path / "b", **kw)
    assert result.trained_steps == 4
    assert max_weight_difference(straight, resumed) == 0.0


class SameTwice(Paired):
    """Pairs whose target is the input itself, so any misaligned augmentation shows."""

    def __init__(self, n=32):
        super().__init__(n)
        self.y = self.x.clone()


PAIRED_AUGMENT = Augment.from_params({"hflip": 0.5, "resize_crop": {"load": 18, "crop": 16}},
                                     keys=("image", "target"), paired=True)


def test_paired_augmentation_keeps_each_pair_aligned_and_resumes_bit_exact(tmp_path):
    kw = dict(total_steps=8, batch_size=8, progress=False, checkpoint_every=4, augment=PAIRED_AUGMENT)
    seen = []
    straight = make_step()
    original_straight = straight.train_step

    def record(batch, ctx):
        seen.append((batch["image"].clone(), batch["target"].clone()))
        return original_straight(batch, ctx)

    straight.train_step = record
    train(straight, SameTwice(), run_dir=tmp_path / "a", **kw)
    raw = SameTwice().x
    assert len(seen) == 8
    for image, target in seen:
        assert torch.equal(image, target)  # one draw for both halves of a pair
    # and the augmentation did something: most augmented images are no raw image
    assert sum(not any(torch.equal(img, r) for r in raw) for image, _ in seen for img in image) > 32
    interrupted = make_step()
    original = interrupted.train_step

    def stop_at_5(batch, ctx):
        if ctx.step == 5:
            raise RuntimeError("power cut")
        return original(batch, ctx)

    interrupted.train_step = stop_at_5
    with pytest.raises(RuntimeError, match="power cut"):
        train(interrupted, SameTwice(), run_dir=tmp_path / "b", **kw)
    resumed = make_step()
    result = train(resumed, SameTwice(), run_dir=tmp_path / "b", **kw)
    assert result.trained_steps == 4
    assert max_weight_difference(straight, resumed) == 0.0
