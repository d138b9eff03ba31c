"""StarGAN v2 step: diversity-loss sign and decay, EMA, training through the engine, bit-exact resume."""

import torch
from torch.utils.data import Dataset

from medgan.models.stargan_v2 import StarGANv2Config
from medgan.train import StepContext, load_trained, max_weight_difference, read_log, train
from medgan.train.stargan_v2 import StarGANv2Step, diversity_weight

CFG = StarGANv2Config(image_size=16, channels=5, num_domains=3, latent_dim=4, style_dim=8, mapping_hidden=16,
                      base_width=4, max_width=8, n_down=1)


class Domains(Dataset):
    """Domain k = a constant offset on stain k (easy to tell apart)."""

    def __init__(self, n=24, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 3
        self.images = (torch.randn(n, 5, 16, 16, generator=g) * 0.2).clamp(-1, 1)
        for i, k in enumerate(self.labels):
            self.images[i, k] += 0.6

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": int(self.labels[i]), "subject": f"w{i // 2}"}


def make_step(data, **kw):
    torch.manual_seed(0)
    return StarGANv2Step(CFG, reference_images=data.images, reference_labels=data.labels, **kw)


def ctx(step=0, total=10, seed=0):
    return StepContext(device=torch.device("cpu"), step=step, total_steps=total,
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
