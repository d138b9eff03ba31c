"""A tiny GAN step and dataset the engine tests share (no batch norm, so ranks can match exactly)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from medgan.train import TrainingStep, seed_everything, set_requires_grad, train


class ToyImages(Dataset):
    """Blurry blobs, 1x8x8, in [-1, 1]."""

    def __init__(self, n: int = 64, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
        centres = torch.rand(n, 2, generator=g) * 6 + 1
        blobs = torch.exp(-((yy - centres[:, 0, None, None]) ** 2 + (xx - centres[:, 1, None, None]) ** 2) / 4)
        self.images = (blobs * 2 - 1).unsqueeze(1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": 0, "subject": f"s{i}"}


class ToyGANStep(TrainingStep):
    z_dim = 4

    def __init__(self, lr: float = 1e-2):
        G = nn.Sequential(nn.Linear(self.z_dim, 32), nn.LeakyReLU(0.2), nn.Linear(32, 64), nn.Tanh())
        D = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
        super().__init__(nets={"G": G, "D": D},
                         optimizers={"G": torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.999)),
                                     "D": torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))})

    def generate(self, z):
        return self.nets["G"](z).view(-1, 1, 8, 8)

    def train_step(self, batch, ctx):
        G, D = self.nets["G"], self.nets["D"]
        real = batch["image"]
        bce = nn.functional.binary_cross_entropy_with_logits
        z = ctx.randn(real.shape[0], self.z_dim)
        fake = self.generate(z)
        set_requires_grad(D, True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        d_real, d_fake = D(real), D(fake.detach())
        loss_d = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        ctx.backward(loss_d)
        ctx.optimizer_step(self.optimizers["D"])
        set_requires_grad(D, False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        d_fake = D(fake)
        loss_g = bce(d_fake, torch.ones_like(d_fake))
        ctx.backward(loss_g)
        ctx.optimizer_step(self.optimizers["G"])
        return {"loss_D": loss_d.item(), "loss_G": loss_g.item()}

    def sample(self, n, ctx):
        return self.generate(ctx.fixed_randn(n, self.z_dim))


def assert_matches_one_process(weights: dict, run_dir, *, steps: int, batch: int) -> None:
    """``weights`` (from a multi-process run of ddp_worker.py) equal one process's toy GAN trained with the
    same global batch, seed and noise: equal up to float summation order."""
    seed_everything(0)
    single = ToyGANStep()
    train(single, ToyImages(), run_dir=run_dir, total_steps=steps, batch_size=batch, seed=5, progress=False,
          device="cpu")
    ref = {f"{n}.{k}": v for n, net in single.nets.items() for k, v in net.state_dict().items()}
    assert weights.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(weights[k], ref[k], rtol=1e-4, atol=1e-5, msg=k)
