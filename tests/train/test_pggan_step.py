"""PGGAN and DCGAN steps through the one engine: schedule, learning, bit-exact resume."""

import numpy as np
import pytest
import torch

from medgan.models.dcgan import DCGANConfig
from medgan.models.pggan import EqualizedConv2d, PGGANConfig
from medgan.train import max_weight_difference, read_log, seed_everything, train
from medgan.train.dcgan import DCGANStep
from medgan.train.engine import BatchSchedule
from medgan.train.pggan import GrowthSchedule, ImageGrowthSchedule, PGGANStep, growth_changes, real_at_resolution
from tests.train.toy import ToyImages

TINY = PGGANConfig(resolution=8, channels=1, z_dim=8, width=1 / 32)


def test_schedule_grows_and_fades():
    s = GrowthSchedule(total_steps=100, max_depth=2, fade_fraction=0.5, final_weight=2.0)
    assert s.boundaries() == [0, 25, 50, 100]
    assert s.at(0) == (0, 1.0) and s.at(24) == (0, 1.0)
    depth, alpha = s.at(25)
    assert depth == 1 and 0 < alpha < 0.1
    assert s.at(37) == (1, 1.0)  # 13 of 12.5 fade-in steps done
    assert s.at(60)[0] == 2 and s.at(60)[1] < 1 and s.at(99) == (2, 1.0)
    depths = [s.at(i)[0] for i in range(100)]
    assert depths == sorted(depths)
    assert [r["resolution"] for r in s.table()] == [4, 8, 16]
    # Karras et al.: 600k images at 4x4, then 1.2M (fade + stable) per resolution.
    paper = GrowthSchedule(412_500, 5, 0.5, 1.0, 0.5).table()
    assert paper[0]["steps"] * 16 == 600_000 and all(r["steps"] * 16 == 1_200_000 for r in paper[1:])
    with pytest.raises(ValueError):
        GrowthSchedule(10, 1, fade_fraction=1.5)


def test_real_images_follow_the_fade():
    x = torch.randn(2, 1, 8, 8)
    assert real_at_resolution(x, 1, 1.0).shape == (2, 1, 8, 8)
    low = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
    torch.testing.assert_close(real_at_resolution(x, 1, 0.0), low)
    assert real_at_resolution(x, 0, 1.0).shape == (2, 1, 4, 4)


def _pixel_gap(images, real):
    # distance of the generated pixel mean / std to the real ones
    return abs(images.mean() - real.mean()).item() + abs(images.std() - real.std()).item()


def test_pggan_learns_and_logs_growth(tmp_path):
    seed_everything(0)
    data = ToyImages(64)
    step = PGGANStep(TINY, total_steps=24, lr=3e-3, ema_decay=0.9)
    z = torch.randn(64, TINY.z_dim)
    before = _pixel_gap(step.generator(ema=False)(z), data.images)
    result = train(step, data, run_dir=tmp_path, total_steps=24, batch_size=8, seed=0, progress=False, log_every=4)
    after = _pixel_gap(step.generator(ema=False)(z), data.images)
    assert after < before
    log = read_log(result.run_dir)
    assert set(log["resolution"]) == {4.0, 8.0} and log["alpha"].min() < 1
    assert torch.isfinite(torch.tensor(log[["loss_D", "loss_G", "gp"]].to_numpy())).all()
    assert (result.run_dir / "samples").is_dir()
    assert step.generator()(z[:3]).shape == (3, 1, 8, 8)


def test_dcgan_learns(tmp_path):
    seed_everything(0)
    data = ToyImages(64)
    step = DCGANStep(DCGANConfig(image_size=8, z_dim=8, g_width=8, d_width=8), lr=2e-3)
    z = torch.randn(64, 8)
    before = _pixel_gap(step.generator()(z), data.images)
    step.nets["G"].train()
    result = train(step, data, run_dir=tmp_path, total_steps=20, batch_size=8, seed=0, progress=False)
    after = _pixel_gap(step.generator()(z), data.images)
    assert after < before
    assert {"loss_D", "loss_G", "D(x)", "D(G(z))"} <= set(read_log(result.run_dir).columns)


@pytest.mark.parametrize("kind", ["pggan", "dcgan"])
def test_resume_is_bit_exact(tmp_path, kind):
    def make():
        seed_everything(0)
        if kind == "pggan":
            return PGGANStep(TINY, total_steps=8)
        return DCGANStep(DCGANConfig(image_size=8, z_dim=8, g_width=4, d_width=4))

    data = ToyImages(32)
    straight = make()
    train(straight, data, run_dir=tmp_path / "a", total_steps=8, batch_size=8, seed=3, progress=False)
    # Interrupted at step 5 after a checkpoint at 4 (PGGAN's growth plan depends on the total, so a
    # 4-step run would be another run), then resumed by a fresh process.
    half = make()
    original = half.train_step

    def power_cut(batch, ctx):
        if ctx.step == 5:
            raise RuntimeError("power cut")
        return original(batch, ctx)

    half.train_step = power_cut
    with pytest.raises(RuntimeError, match="power cut"):
        train(half, data, run_dir=tmp_path / "b", total_steps=8, batch_size=8, seed=3, progress=False,
              checkpoint_every=4)
    resumed = make()
    result = train(resumed, data, run_dir=tmp_path / "b", total_steps=8, batch_size=8, seed=3, progress=False)
    assert result.trained_steps == 4
    assert max_weight_difference(straight, resumed) == 0.0
    if kind == "pggan":  # the growth state came back with the weights
        assert int(resumed.nets["G_ema"].depth) == 1


# --- the official growth plan in images, per-resolution minibatch and lr, Adam reset (issue 16) ----------
def _official_resolution(cur_nimg: int, *, resolution_log2: int, training_kimg: float, transition_kimg: float) -> int:
    """tkarras/progressive_growing_of_gans train.py TrainingSchedule (lines 103-116), lod_initial_resolution 4."""
    kimg = cur_nimg / 1000.0
    phase_dur = training_kimg + transition_kimg
    phase_idx = int(np.floor(kimg / phase_dur))
    phase_kimg = kimg - phase_idx * phase_dur
    lod = resolution_log2 - 2 - phase_idx - max(phase_kimg - training_kimg, 0.0) / transition_kimg
    lod = max(lod, 0.0)
    return 2 ** (resolution_log2 - int(np.floor(lod)))


def test_image_schedule_counts_images_with_a_minibatch_per_resolution():
    # 4 -> 32 px: 64 images stable at 4x4, then 64 fading + 64 stable per resolution, 96 more at 32 px.
    s = ImageGrowthSchedule(stable_images=64, fade_images=64, total_images=64 + 3 * 128 + 96, batch_sizes=(16, 8, 8, 4))
    rows = s.table()
    assert [r["resolution"] for r in rows] == [4, 8, 16, 32]
    assert [(r["fade_in_steps"], r["steps"]) for r in rows] == [(0, 4), (8, 16), (8, 16), (16, 16 + 40)]
    assert [r["images"] for r in rows] == [64, 128, 128, 64 + 64 + 96]
    assert s.total_steps == 4 + 16 + 16 + 56 and s.boundaries() == [0, 4, 20, 36, 92]
    assert s.batch_schedule() == [[0, 16], [4, 8], [36, 4]]
    # Every step trains at the official code's resolution for the images shown before it, except the
    # first step of each fade-in (the official code switches one minibatch later: lod is still whole there).
    batches, shown = BatchSchedule(s.batch_schedule()), 0
    for step in range(s.total_steps):
        depth, alpha = s.at(step)
        official = _official_resolution(shown, resolution_log2=5, training_kimg=0.064, transition_kimg=0.064)
        if step not in s.boundaries():
            assert 4 * 2 ** depth == official, step
        shown += batches.per_rank_at(step)
    assert shown == s.total_images
    assert s.at(4) == (1, 1 / 8) and s.at(11) == (1, 1.0) and s.at(91) == (3, 1.0)
    with pytest.raises(ValueError, match="ends before the growth"):
        ImageGrowthSchedule(stable_images=64, fade_images=64, total_images=100, batch_sizes=(16, 8))
    # The shortest plan (a rehearsal): one step per stretch, the last resolution only faded in (alpha 1 at once).
    short = ImageGrowthSchedule(stable_images=1, fade_images=1, total_images=16, batch_sizes=(1,) * 9)
    assert short.total_steps == 16 and short.at(15) == (8, 1.0) and short.table()[-1]["steps"] == 1


def test_image_schedule_at_the_papers_values():
    # Official 600k + 600k, the preset-v2-2gpus minibatches (config.py line 101), 130 epochs of 111,163 images.
    s = ImageGrowthSchedule(600_000, 600_000, 130 * 111_163, (256, 256, 128, 64, 32, 16, 8, 8, 8))
    rows = s.table()
    assert rows[0]["images"] == 600_064 and rows[-1]["resolution"] == 1024
    assert all(abs(r["images"] - 1_200_000) < 2 * r["batch_size"] for r in rows[1:-1])
    assert rows[-1]["steps"] == 75_000 + 606_399  # fade-in, then 4,851,190 images at batch 8


def test_growth_changes_where_the_official_lod_floor_or_ceil_changes():
    s = ImageGrowthSchedule(stable_images=2, fade_images=4, total_images=2 + 4 + 4, batch_sizes=(1, 1))
    # steps 0-1 at 4x4; fade-in at steps 2-5 (alpha 1/4 .. 1); stable from step 5 on
    lods = [s.max_depth - d + (1 - a) for d, a in (s.at(k) for k in range(s.total_steps))]
    official = [k for k in range(1, s.total_steps)
                if np.floor(lods[k]) != np.floor(lods[k - 1]) or np.ceil(lods[k]) != np.ceil(lods[k - 1])]
    assert official == [2, 5]
    assert [k for k in range(s.total_steps) if growth_changes(s, k)] == official
    equal_shares = GrowthSchedule(total_steps=100, max_depth=2, fade_fraction=0.5, final_weight=2.0)
    assert [k for k in range(100) if growth_changes(equal_shares, k)] == [25, 37, 50, 74]


def _recording_adam_steps(step):
    """Wrap ``train_step`` to record, after each iteration, Adam's step count and whether its second
    moment equals (1 - beta2) * grad^2 (true right after a reset: the moments restarted from zero)."""
    original, records = step.train_step, []
    p = next(iter(step.nets["G"].parameters()))  # the 4x4 block's weight, used at every depth

    def recorded(batch, ctx):
        out = original(batch, ctx)
        state = step.optimizers["G"].state[p]
        beta2 = step.optimizers["G"].param_groups[0]["betas"][1]
        fresh = torch.equal(state["exp_avg_sq"], (1 - beta2) * p.grad * p.grad)
        records.append((ctx.step, int(state["step"]), fresh, step.optimizers["G"].param_groups[0]["lr"]))
        return out

    step.train_step = recorded
    return records


def _official_step(**kw):
    seed_everything(0)
    schedule = ImageGrowthSchedule(stable_images=16, fade_images=16, total_images=64, batch_sizes=(8, 4))
    return PGGANStep(TINY, schedule=schedule, lr_per_resolution=[1e-3, 2e-3], **kw), schedule


def test_adam_is_reset_when_a_fade_in_starts_and_ends_and_nowhere_else(tmp_path):
    step, schedule = _official_step(reset_adam_at_growth=True)
    assert schedule.total_steps == 2 + 4 + 8 and schedule.batch_schedule() == [[0, 8], [2, 4]]
    records = _recording_adam_steps(step)
    train(step, ToyImages(32), run_dir=tmp_path, total_steps=schedule.total_steps, batch_size=schedule.batch_schedule(),
          seed=0, progress=False)
    resets = [k for k in range(schedule.total_steps) if growth_changes(schedule, k)]
    assert resets == [2, 5]
    last = 0
    for k, adam_steps, fresh, lr in records:
        last = k if k in resets else last
        assert adam_steps == k - last + 1, k  # counts restart at each reset
        assert fresh == (k in resets or k == 0), k
        assert lr == (1e-3 if k < 2 else 2e-3)
    # Without the option the moments run on through the growth (today's runs).
    plain, _ = _official_step()
    records = _recording_adam_steps(plain)
    train(plain, ToyImages(32), run_dir=tmp_path / "plain", total_steps=schedule.total_steps,
          batch_size=schedule.batch_schedule(), seed=0, progress=False)
    assert [r[1] for r in records] == list(range(1, schedule.total_steps + 1))
    assert "reset_adam_at_growth" not in PGGANStep(TINY, total_steps=8).initial_config()["settings"]


def test_resume_across_a_growth_reset_is_bit_exact(tmp_path):
    data = ToyImages(32)
    straight, schedule = _official_step(reset_adam_at_growth=True)
    kw = dict(total_steps=schedule.total_steps, batch_size=schedule.batch_schedule(), seed=3, progress=False)
    train(straight, data, run_dir=tmp_path / "a", **kw)
    # A checkpoint after step 4; step 5 (the end of the fade-in: a reset) runs after the resume.
    half, _ = _official_step(reset_adam_at_growth=True)
    original = half.train_step

    def power_cut(batch, ctx):
        if ctx.step == 7:
            raise RuntimeError("power cut")
        return original(batch, ctx)

    half.train_step = power_cut
    with pytest.raises(RuntimeError, match="power cut"):
        train(half, data, run_dir=tmp_path / "b", checkpoint_every=5, **kw)
    resumed, _ = _official_step(reset_adam_at_growth=True)
    result = train(resumed, data, run_dir=tmp_path / "b", **kw)
    assert result.trained_steps == schedule.total_steps - 5
    assert max_weight_difference(straight, resumed) == 0.0
    for name in ("G", "D"):
        a, b = straight.optimizers[name].state_dict()["state"], resumed.optimizers[name].state_dict()["state"]
        assert a.keys() == b.keys() and all(torch.equal(a[i]["exp_avg"], b[i]["exp_avg"]) for i in a)


def test_bf16_runs_every_conv_of_the_step_in_bf16_including_fakes_and_the_gradient_penalty(tmp_path):
    seed_everything(0)
    step = PGGANStep(TINY, total_steps=2, lr=1e-3)
    seen = {"G": [], "D": []}
    for name in ("G", "D"):
        for m in step.nets[name].modules():
            if isinstance(m, EqualizedConv2d):
                m.register_forward_hook(lambda _m, _i, out, name=name: seen[name].append(out.dtype))
    train(step, ToyImages(16), run_dir=tmp_path, total_steps=2, batch_size=4, seed=0, precision="bf16",
          progress=False, sample_every=0)
    # Per step G runs twice (the critic's fakes, the generator's update) and D four times (real, fake,
    # the penalty's interpolates, the generator's update); each pass runs at least one conv.
    assert seen["G"] and seen["D"] and set(seen["G"]) | set(seen["D"]) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for net in step.nets.values() for p in net.parameters())
    assert all(torch.isfinite(p).all() for p in step.nets["D"].parameters())
