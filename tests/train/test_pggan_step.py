"""PGGAN and DCGAN steps through the one engine: schedule, learning, bit-exact resume."""

import pytest
import torch

from medgan.models.dcgan import DCGANConfig
from medgan.models.pggan import PGGANConfig
from medgan.train import max_weight_difference, read_log, seed_everything, train
from medgan.train.dcgan import DCGANStep
from medgan.train.pggan import GrowthSchedule, PGGANStep, real_at_resolution
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
