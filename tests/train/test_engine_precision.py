"""``precision: bf16`` on the CPU: autocast really runs, weights stay float32, resume is bit-exact."""

import pytest
import torch
from torch import nn

from medgan.train import StepContext, TrainingStep, max_weight_difference, seed_everything, set_requires_grad, train
from medgan.train.checkpoint import CheckpointIO
from tests.train.toy import ToyImages


class Interrupt(Exception):
    pass


class ConvToyStep(TrainingStep):
    """A tiny conv GAN whose forward passes run under ``ctx.autocast()``, as every medgan step's do."""

    z_dim = 4

    def __init__(self):
        G = nn.Sequential(nn.Linear(self.z_dim, 2 * 4 * 4), nn.Unflatten(1, (2, 4, 4)), nn.Upsample(scale_factor=2),
                          nn.Conv2d(2, 1, 3, padding=1), nn.Tanh())
        D = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(64, 1))
        super().__init__(nets={"G": G, "D": D},
                         optimizers={k: torch.optim.Adam(n.parameters(), lr=1e-2, betas=(0.5, 0.999))
                                     for k, n in (("G", G), ("D", D))})
        self.seen: list[torch.dtype] = []  # dtypes of the convs' outputs, in call order
        for net in (G, D):
            for m in net.modules():
                if isinstance(m, nn.Conv2d):
                    m.register_forward_hook(lambda _m, _i, out: self.seen.append(out.dtype))

    def train_step(self, batch, ctx: StepContext):
        G, D = self.nets["G"], self.nets["D"]
        real = batch["image"]
        bce = nn.functional.binary_cross_entropy_with_logits
        set_requires_grad(D, True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with ctx.autocast():
            fake = G(ctx.randn(real.shape[0], self.z_dim))
            d_real, d_fake = D(real).float(), D(fake.detach()).float()
            loss_d = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        ctx.backward(loss_d)
        ctx.optimizer_step(self.optimizers["D"])
        set_requires_grad(D, False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with ctx.autocast():
            d_fake = D(fake).float()
            loss_g = bce(d_fake, torch.ones_like(d_fake))
        ctx.backward(loss_g)
        ctx.optimizer_step(self.optimizers["G"])
        return {"loss_D": loss_d.item(), "loss_G": loss_g.item()}


def fresh() -> ConvToyStep:
    seed_everything(0)
    return ConvToyStep()


KW = dict(batch_size=8, seed=3, device="cpu", progress=False)


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_cpu_precision_sets_the_forward_dtype_and_keeps_float32_weights(tmp_path, precision, dtype):
    step = fresh()
    train(step, ToyImages(), run_dir=tmp_path, total_steps=3, precision=precision, **KW)
    assert len(step.seen) == 3 * 4  # per step: G(z), D(real), D(fake) for D, D(fake) for G
    assert set(step.seen) == {dtype}
    assert all(p.dtype == torch.float32 for net in step.nets.values() for p in net.parameters())


def test_bf16_trains_differently_from_fp32_in_its_own_run_folder(tmp_path):
    a, b = fresh(), fresh()
    ra = train(a, ToyImages(), run_dir=tmp_path, total_steps=3, precision="fp32", **KW)
    rb = train(b, ToyImages(), run_dir=tmp_path, total_steps=3, precision="bf16", **KW)
    assert ra.run_dir != rb.run_dir  # the precision is part of the run's fingerprint
    assert max_weight_difference(a, b) > 0  # bf16 really changed the arithmetic


def test_bf16_resume_on_cpu_is_bit_exact(tmp_path, monkeypatch):
    straight = fresh()
    first = train(straight, ToyImages(), run_dir=tmp_path / "straight", total_steps=3, precision="bf16", **KW)

    original = ConvToyStep.train_step

    def interrupting(self, batch, ctx):
        if ctx.step == 2:
            raise Interrupt
        return original(self, batch, ctx)

    monkeypatch.setattr(ConvToyStep, "train_step", interrupting)
    with pytest.raises(Interrupt):
        train(fresh(), ToyImages(), run_dir=tmp_path / "resumed", total_steps=3, precision="bf16",
              checkpoint_every=2, **KW)
    monkeypatch.setattr(ConvToyStep, "train_step", original)
    run_dir = tmp_path / "resumed" / first.run_dir.name
    assert CheckpointIO(run_dir).steps() == [2]

    resumed = fresh()
    result = train(resumed, ToyImages(), run_dir=tmp_path / "resumed", total_steps=3, precision="bf16",
                   checkpoint_every=2, **KW)
    assert result.step == 3 and result.trained_steps == 1
    assert max_weight_difference(straight, resumed) == 0.0
    assert set(resumed.seen) == {torch.bfloat16}
