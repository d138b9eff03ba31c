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


def straight_and_resumed(tmp_path, monkeypatch, **options) -> tuple[ConvToyStep, ConvToyStep]:
    """Three steps straight, and three steps interrupted after a checkpoint at step 2 then resumed."""
    kw = dict(KW, total_steps=3, **options)
    straight = fresh()
    first = train(straight, ToyImages(), run_dir=tmp_path / "straight", **kw)
    original = ConvToyStep.train_step

    def interrupting(self, batch, ctx):
        if ctx.step == 2:
            raise Interrupt
        return original(self, batch, ctx)

    monkeypatch.setattr(ConvToyStep, "train_step", interrupting)
    with pytest.raises(Interrupt):
        train(fresh(), ToyImages(), run_dir=tmp_path / "resumed", checkpoint_every=2, **kw)
    monkeypatch.setattr(ConvToyStep, "train_step", original)
    assert CheckpointIO(tmp_path / "resumed" / first.run_dir.name).steps() == [2]
    resumed = fresh()
    result = train(resumed, ToyImages(), run_dir=tmp_path / "resumed", checkpoint_every=2, **kw)
    assert result.step == 3 and result.trained_steps == 1
    return straight, resumed


def test_bf16_resume_on_cpu_is_bit_exact(tmp_path, monkeypatch):
    straight, resumed = straight_and_resumed(tmp_path, monkeypatch, precision="bf16")
    assert max_weight_difference(straight, resumed) == 0.0
    assert set(resumed.seen) == {torch.bfloat16}


class LayoutToyStep(ConvToyStep):
    """ConvToyStep that also records the memory layout of the image batches it is handed."""

    def __init__(self):
        super().__init__()
        self.batch_channels_last: list[bool] = []

    def train_step(self, batch, ctx):
        image = batch["image"]  # NHWC strides have stride 1 along channels, even for one channel
        self.batch_channels_last.append(image.is_contiguous(memory_format=torch.channels_last) and image.stride(1) == 1)
        return super().train_step(batch, ctx)


def test_channels_last_puts_weights_and_batches_in_nhwc_and_trains_the_same_model(tmp_path):
    seed_everything(0)
    nhwc = LayoutToyStep()
    seed_everything(0)
    nchw = LayoutToyStep()
    r_nhwc = train(nhwc, ToyImages(), run_dir=tmp_path, total_steps=3, memory_format="channels_last", **KW)
    r_nchw = train(nchw, ToyImages(), run_dir=tmp_path, total_steps=3, memory_format="contiguous", **KW)
    convs = [p for net in nhwc.nets.values() for p in net.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert any(not p.is_contiguous() for p in convs)  # (a one-channel kernel is both layouts at once)
    assert nhwc.batch_channels_last == [True] * 3 and nchw.batch_channels_last == [False] * 3
    assert r_nhwc.run_dir != r_nchw.run_dir  # other kernels, other rounding: its own run folder
    # The same model up to float rounding: same losses, weights within a few ulps of Adam's steps.
    assert r_nhwc.history["loss_D"].to_numpy() == pytest.approx(r_nchw.history["loss_D"].to_numpy(), rel=1e-5)
    assert max_weight_difference(nhwc, nchw) < 1e-4


def test_auto_memory_format_and_the_contiguous_default_keep_the_run_key(tmp_path):
    from medgan.train.engine import resolve_memory_format
    assert resolve_memory_format("auto", torch.device("cpu"), "bf16") == "contiguous"
    assert resolve_memory_format("auto", torch.device("cuda"), "fp32") == "contiguous"
    assert resolve_memory_format("auto", torch.device("cuda"), "bf16") == "channels_last"
    assert resolve_memory_format("auto", torch.device("cuda"), "fp16") == "channels_last"
    assert resolve_memory_format("channels_last", torch.device("cpu"), "fp32") == "channels_last"
    with pytest.raises(ValueError, match="memory_format"):
        resolve_memory_format("nhwc", torch.device("cpu"), "fp32")
    # On the CPU, auto is contiguous: the same run folder as before the option existed, so no model retrains.
    a = train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=2, **KW)
    b = train(fresh(), ToyImages(), run_dir=tmp_path, total_steps=2, memory_format="contiguous", **KW)
    assert a.run_dir == b.run_dir and b.trained_steps == 0


def test_cudnn_benchmark_is_only_set_on_cuda_and_restored(tmp_path):
    before = torch.backends.cudnn.benchmark
    seen = []
    original = ConvToyStep.train_step

    class Spy(ConvToyStep):
        def train_step(self, batch, ctx):
            seen.append(torch.backends.cudnn.benchmark)
            return original(self, batch, ctx)

    seed_everything(0)
    train(Spy(), ToyImages(), run_dir=tmp_path, total_steps=2, cudnn_benchmark=True, **KW)
    assert seen == [False, False]  # a CPU run never turns it on
    assert torch.backends.cudnn.benchmark == before


def test_channels_last_resume_is_bit_exact(tmp_path, monkeypatch):
    straight, resumed = straight_and_resumed(tmp_path, monkeypatch, memory_format="channels_last")
    assert max_weight_difference(straight, resumed) == 0.0
    assert all(p.is_contiguous(memory_format=torch.channels_last)
               for net in resumed.nets.values() for p in net.parameters() if p.dim() == 4)
