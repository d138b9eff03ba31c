"""CycleGAN training step (Zhu et al. 2017), its image pool and the unpaired-data feed.

Objective per iteration (A and B are the two domains; ``G_AB``: A -> B, ``G_BA``: B -> A;
``D_A`` judges domain A, ``D_B`` domain B)::

    loss_G = LSGAN(D_B(G_AB(a))) + LSGAN(D_A(G_BA(b)))
             + lambda_cycle * (|G_BA(G_AB(a)) - a|_1 + |G_AB(G_BA(b)) - b|_1)
             + lambda_identity * lambda_cycle * (|G_AB(b) - b|_1 + |G_BA(a) - a|_1)
    loss_D_B = 0.5 * [(D_B(b) - 1)^2 + D_B(pool_B(G_AB(a)))^2]      (and D_A alike)

as in the reference implementation: Adam(2e-4, betas 0.5/0.999), one optimizer for both
generators and one for both discriminators, discriminators fed from a 50-image history pool,
learning rate constant for the first half and linearly decayed to 0 over the second half
(driven by the engine's ``ctx.progress``, so resume is exact).

Batches are ``{"A": (N, C_A, H, W), "B": (N, C_B, H, W)}`` in [-1, 1]; :class:`UnpairedDataset`
builds them from any two ``medgan.data`` datasets (or one paired dataset, with the pairing broken).
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping

import torch
from torch import nn
from torch.utils.data import Dataset

from medgan import losses
from medgan.models.image_to_image import dropout_seed, forward_in_mode
from medgan.train.fingerprint import dataset_identity, digest
from medgan.train.step import StepContext, TrainingStep, set_requires_grad

__all__ = ["CycleGANStep", "ImagePool", "UnpairedDataset", "linear_decay_factor", "translate"]


class ImagePool:
    """History of generated images (Shrivastava et al. 2017) that the discriminators see.

    Until ``pool_size`` images are stored, each query image is stored and returned as is.
    Once full, each image is, with probability 1/2, swapped for a random stored one (which is
    returned, the new one taking its place), else returned as is. ``pool_size=0`` disables it.
    Random draws come from the caller (``uniform(n) -> tensor of n values in [0, 1)``, e.g.
    ``ctx.rand``) so that runs, resumes and ranks are reproducible.
    """

    def __init__(self, pool_size: int = 50):
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, not {pool_size}")
        self.pool_size = pool_size
        self.images: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, images: torch.Tensor, uniform) -> torch.Tensor:
        """Images (N, C, H, W) -> (N, C, H, W) mixing the new images and older ones from the pool."""
        if self.pool_size == 0:
            return images
        draws = uniform(len(images), 2).cpu()  # column 0: swap or not; column 1: which slot
        out = []
        for image, (swap, slot) in zip(images.detach(), draws.tolist()):
            if len(self.images) < self.pool_size:
                self.images.append(image.clone())
                out.append(image)
            elif swap > 0.5:
                index = min(int(slot * self.pool_size), self.pool_size - 1)
                out.append(self.images[index])
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict[str, Any]:
        stored = torch.stack(self.images).cpu() if self.images else torch.zeros(0)
        return {"pool_size": self.pool_size, "images": stored}

    def load_state_dict(self, state: Mapping[str, Any], *, device: torch.device | None = None) -> None:
        if int(state["pool_size"]) != self.pool_size:
            raise ValueError(f"image pool: checkpoint pool_size {state['pool_size']} != {self.pool_size}")
        stored = state["images"]
        self.images = [image.to(device) if device is not None else image for image in stored] if stored.numel() else []


class UnpairedDataset(Dataset):
    """Every (a, b) combination of two datasets as one dataset of ``{"A": image, "B": image}`` items.

    Shuffling the ``len(a) * len(b)`` combinations draws the A and B image of each item
    independently, as CycleGAN's reference data loader does (random B for each A), while staying
    a plain map-style dataset the engine can order, split across ranks and resume exactly.
    ``key_a``/``key_b`` pick the tensor of each item: pass one paired dataset twice with
    ``key_a="image", key_b="target"`` to train CycleGAN on paired data with the pairs ignored.
    One epoch of the engine is therefore ``len(a) * len(b)`` items; count training in steps.
    """

    def __init__(self, a: Dataset, b: Dataset, *, key_a: str = "image", key_b: str = "image"):
        if len(a) == 0 or len(b) == 0:
            raise ValueError(f"UnpairedDataset needs non-empty datasets, got {len(a)} A and {len(b)} B items")
        self.a, self.b, self.key_a, self.key_b = a, b, key_a, key_b

    def __len__(self) -> int:
        return len(self.a) * len(self.b)

    def fingerprint(self) -> str:
        """The two sides' identities (hashing every combination would cost len(a) * len(b) items)."""
        return digest([dataset_identity(self.a), dataset_identity(self.b), self.key_a, self.key_b])[:16]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        i, j = divmod(int(index), len(self.b))
        return {"A": self.a[i][self.key_a], "B": self.b[j][self.key_b]}


def linear_decay_factor(progress: float, *, decay_start: float = 0.5) -> float:
    """Learning-rate factor: 1 until ``decay_start`` (fraction of training), then linear to 0 at the end."""
    if not 0.0 <= decay_start <= 1.0:
        raise ValueError(f"decay_start must be in [0, 1], not {decay_start}")
    if progress < decay_start:
        return 1.0
    return max(0.0, 1.0 - (progress - decay_start) / max(1e-12, 1.0 - decay_start))


def apply_linear_decay(optimizers: Mapping[str, torch.optim.Optimizer], base_lr: float, progress: float, *,
                       decay_start: float = 0.5) -> float:
    """Set every optimizer's learning rate to ``base_lr * linear_decay_factor(progress)``; returns it.

    Computed from the engine's progress each step (not a stateful scheduler), so resume is exact.
    """
    lr = base_lr * linear_decay_factor(progress, decay_start=decay_start)
    for opt in optimizers.values():
        for group in opt.param_groups:
            group["lr"] = lr
    return lr


@torch.no_grad()
def translate(generator: nn.Module, images: torch.Tensor, *, batch_size: int = 32,
              device: torch.device | str | None = None, mode: str = "eval", seed: int = 0,
              start: int = 0) -> torch.Tensor:
    """Apply ``generator`` to images (N, C, H, W) in [-1, 1], ``batch_size`` at a time; result on the CPU.

    ``mode`` (:data:`medgan.models.image_to_image.INFERENCE_MODES`, see ``forward_in_mode``): ``"eval"``
    uses batch norm's running statistics and no dropout, so the batch size changes nothing;
    ``"train"`` normalises each batch of ``batch_size`` images with its own statistics (the reference
    test script runs batches of 1) and keeps dropout on, with the masks of the batch starting at image
    ``i`` drawn from ``dropout_seed(seed, start + i)``. ``start``: the index of ``images[0]`` in the
    whole set, so a set translated in pieces (batch size 1, or pieces of whole batches) matches one pass.
    The generator is left in the mode it was in, its running statistics untouched.
    """
    device = device or next(generator.parameters()).device
    out = [forward_in_mode(generator, images[i:i + batch_size].to(device), mode=mode,
                           seed=dropout_seed(seed, start + i)).float().cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else images.new_zeros((0, *images.shape[1:]))


class CycleGANStep(TrainingStep):
    """CycleGAN: two generators, two (PatchGAN) discriminators, LSGAN + cycle L1 (+ identity L1).

    Args:
        G_AB, G_BA: generators A -> B and B -> A (e.g. ``define_generator("resnet_9blocks", 1, 1)``).
        D_A, D_B: discriminators of domain A and B (e.g. ``define_discriminator(1)``).
        lr: Adam learning rate (2e-4 in the paper). betas: Adam betas ((0.5, 0.999)).
        lambda_cycle: weight of each cycle L1 term (10).
        lambda_identity: identity weight relative to ``lambda_cycle`` (reference default 0.5;
            0 turns it off; only possible when A and B have the same number of channels).
        pool_size: image-pool size per domain (50; 0 = no pool).
        decay_start: fraction of training after which the learning rate decays linearly to 0
            (0.5 = "100 epochs constant + 100 decaying"; 1.0 = constant).
        sample_inputs: optional (A images, B images) shown by :meth:`sample` (rows of real,
            translated, reconstructed).
    """

    def __init__(self, G_AB: nn.Module, G_BA: nn.Module, D_A: nn.Module, D_B: nn.Module, *, lr: float = 2e-4,
                 betas: tuple[float, float] = (0.5, 0.999), lambda_cycle: float = 10.0,
                 lambda_identity: float = 0.5, pool_size: int = 50, decay_start: float = 0.5,
                 sample_inputs: tuple[torch.Tensor, torch.Tensor] | None = None):
        betas = tuple(float(b) for b in betas)
        optimizers = {
            "G": torch.optim.Adam(itertools.chain(G_AB.parameters(), G_BA.parameters()), lr=lr, betas=betas),
            "D": torch.optim.Adam(itertools.chain(D_A.parameters(), D_B.parameters()), lr=lr, betas=betas),
        }
        super().__init__(nets={"G_AB": G_AB, "G_BA": G_BA, "D_A": D_A, "D_B": D_B}, optimizers=optimizers)
        self.lr = float(lr)
        self.lambda_cycle = float(lambda_cycle)
        self.lambda_identity = float(lambda_identity)
        self.decay_start = float(decay_start)
        linear_decay_factor(0.0, decay_start=self.decay_start)  # validates decay_start
        self.pools = {"A": ImagePool(pool_size), "B": ImagePool(pool_size)}
        self.sample_inputs = sample_inputs

    @property
    def schedule_uses_total_steps(self) -> bool:
        return self.decay_start < 1.0  # the decay reads ctx.progress

    def _set_lr(self, progress: float) -> float:
        return apply_linear_decay(self.optimizers, self.lr, progress, decay_start=self.decay_start)

    def train_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        G_AB, G_BA, D_A, D_B = (self.nets[k] for k in ("G_AB", "G_BA", "D_A", "D_B"))
        real_a, real_b = batch["A"], batch["B"]
        lr = self._set_lr(ctx.progress)

        # --- generators ---
        set_requires_grad(D_A, False)
        set_requires_grad(D_B, False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with ctx.autocast():
            fake_b = G_AB(real_a)
            rec_a = G_BA(fake_b)
            fake_a = G_BA(real_b)
            rec_b = G_AB(fake_a)
            adv_ab = losses.g_lsgan(D_B(fake_b))
            adv_ba = losses.g_lsgan(D_A(fake_a))
            cycle_a = losses.cycle_l1(rec_a, real_a)
            cycle_b = losses.cycle_l1(rec_b, real_b)
            loss_g = adv_ab + adv_ba + self.lambda_cycle * (cycle_a + cycle_b)
            scalars = {}
            if self.lambda_identity > 0:
                if real_a.shape[1] != real_b.shape[1]:
                    raise ValueError(f"identity loss needs equal channels in A and B, got {real_a.shape[1]} and "
                                     f"{real_b.shape[1]}; set lambda_identity=0")
                idt_b = losses.identity_l1(G_AB(real_b), real_b)
                idt_a = losses.identity_l1(G_BA(real_a), real_a)
                loss_g = loss_g + self.lambda_identity * self.lambda_cycle * (idt_a + idt_b)
                scalars = {"identity_A": idt_a.item(), "identity_B": idt_b.item()}
        ctx.backward(loss_g)
        ctx.optimizer_step(self.optimizers["G"])

        # --- discriminators, on real images and pooled fakes ---
        set_requires_grad(D_A, True)
        set_requires_grad(D_B, True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        pooled_b = self.pools["B"].query(fake_b.detach(), ctx.rand)
        pooled_a = self.pools["A"].query(fake_a.detach(), ctx.rand)
        with ctx.autocast():
            loss_d_b = losses.d_lsgan(D_B(real_b), D_B(pooled_b))
            loss_d_a = losses.d_lsgan(D_A(real_a), D_A(pooled_a))
        ctx.backward(loss_d_a + loss_d_b)
        ctx.optimizer_step(self.optimizers["D"])
        return {"loss_G": loss_g.item(), "adv_AB": adv_ab.item(), "adv_BA": adv_ba.item(),
                "cycle_A": cycle_a.item(), "cycle_B": cycle_b.item(), **scalars,
                "loss_D_A": loss_d_a.item(), "loss_D_B": loss_d_b.item(), "lr": lr}

    @torch.no_grad()
    def sample(self, n: int, ctx: StepContext) -> torch.Tensor | None:
        """Rows of (real A, A->B, A->B->A, real B, B->A, B->A->B) for the stored sample inputs."""
        if self.sample_inputs is None:
            return None
        a, b = (x[: max(1, n // 6)].to(ctx.device) for x in self.sample_inputs)
        if a.shape[1] != b.shape[1]:
            return None  # a grid needs one channel count
        G_AB, G_BA = self.nets["G_AB"], self.nets["G_BA"]
        fb, fa = G_AB(a), G_BA(b)
        k = min(len(a), len(b))
        rows = [a[:k], fb[:k], G_BA(fb)[:k], b[:k], fa[:k], G_AB(fa)[:k]]
        return torch.stack(rows, 1).flatten(0, 1).float()

    def extra_state(self) -> dict[str, Any]:
        return {"pool_A": self.pools["A"].state_dict(), "pool_B": self.pools["B"].state_dict()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        device = next(self.nets["G_AB"].parameters()).device
        for domain in ("A", "B"):
            if f"pool_{domain}" in state:
                self.pools[domain].load_state_dict(state[f"pool_{domain}"], device=device)
