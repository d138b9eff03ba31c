"""StarGAN v2 training step (Choi et al. 2020, the official ``core/solver.py`` objective).

One iteration = four updates, as in the official solver:

1. D, latent-guided target: ``L_D = BCE(D_y(x), 1) + BCE(D_ỹ(G(x, F_ỹ(z))), 0) + λ_reg · R1``
2. D, reference-guided target: the same with ``s̃ = E_ỹ(x_ref)``
3. G, mapping network F and style encoder E, latent-guided:
   ``L_G = L_adv + λ_sty |E_ỹ(G(x, s̃)) - s̃| - λ_ds |G(x, s̃1) - G(x, s̃2)| + λ_cyc |G(G(x, s̃), E_y(x)) - x|``
4. G only, reference-guided (same objective, styles from two references of domain ỹ).

then EMA (β = 0.999) of G, F and E. λ_ds decays linearly from its initial value to 0 over
``ds_iter`` iterations (``ctx.step``). R1 is ``0.5 · E||∇_x D_y(x)||²`` on real images (γ = 1).
Adam(lr 1e-4, β = (0, 0.99), weight decay 1e-4) for G, E, D; the mapping network uses lr 1e-6.

Sampling (``sampling``). The official loaders (``core/data_loader.py``: ``_make_balanced_sampler``
for both ``get_train_loader(which='source')`` and ``which='reference'``) draw every domain equally
often: item weights ``1 / count(domain of the item)``. ``"balanced"`` (the default) does the same:

- source images: the engine draws them with ``sample_weights =`` :func:`domain_balanced_weights`
  (the job passes them; :func:`source_sample_weights`);
- target domain ỹ uniform over the domains, then the two references ``x_ref`` and ``x_ref2``
  uniform over the images of ỹ (the official ``ReferenceDataset`` pairs each image with another
  of its own domain; here the second is an independent draw from that domain).

``"by_count"`` weights by image count instead: sources uniform over images (the engine's plain
shuffle), ỹ the domain of a reference drawn uniformly over all images, ``x_ref2`` uniform over ỹ.

References are read from the dataset by index each iteration (two ``__getitem__`` calls per
image of the batch); the step holds the dataset and its label array, never the images. All its
random numbers come from the engine's noise generator, drawn for the whole global batch, and
rank ``r`` keeps rows ``r, r + N, ...``, the places its source images have in the global batch
(``DistributedSampler``'s deal): runs are reproducible, exact on resume and the same on 1 or N
processes. ``augment`` (an :class:`~medgan.data.augment.Augment` with keys :data:`AUGMENT_KEYS`,
the one the engine applies to the source images) transforms ``x_ref`` and ``x_ref2`` too, each with
its own draw, as the official reference loader applies its transform to both images.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from medgan import losses
from medgan.models.stargan_v2 import StarGANv2Config, build_stargan_v2
from medgan.train.fingerprint import dataset_identity
from medgan.train.step import StepContext, TrainingStep, ema_update, set_requires_grad

__all__ = ["AUGMENT_KEYS", "SAMPLING", "StarGANv2Step", "diversity_weight", "domain_balanced_weights",
           "source_sample_weights"]

SAMPLING = ("balanced", "by_count")
# The entries an Augment for this step names: the source batch ("image", applied by the engine) and the
# two references (applied by the step); each key is its own draw stream.
AUGMENT_KEYS = ("image", "x_ref", "x_ref2")


def diversity_weight(step: int, *, initial: float, ds_iter: int) -> float:
    """λ_ds at iteration ``step`` (0-based): ``initial · max(0, 1 - step / ds_iter)`` (linear decay to 0)."""
    if ds_iter <= 0:
        return 0.0
    return initial * max(0.0, 1.0 - step / ds_iter)


def domain_balanced_weights(labels) -> np.ndarray:
    """(N,) float64 weight ``1 / count(label_i)`` per item: every domain is drawn equally often
    (the official ``core/data_loader._make_balanced_sampler``)."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    counts = np.bincount(labels)
    return 1.0 / counts[labels]


def source_sample_weights(labels, sampling: str) -> np.ndarray | None:
    """The engine's ``sample_weights`` for the source images: balanced weights, or None (``by_count``:
    the engine's uniform shuffle over images)."""
    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
    return domain_balanced_weights(labels) if sampling == "balanced" else None


def _global_rows(fn, ctx: StepContext, n: int, *shape: int) -> torch.Tensor:
    """``fn`` numbers for the global batch of ``n * world_size`` rows from the engine's shared noise
    generator; this rank keeps rows ``rank, rank + N, ...`` (its source images' places), on the CPU."""
    world, rank = ctx.dist.world_size, ctx.dist.rank
    full = fn((n * world, *shape), generator=ctx.noise_generator)
    return full[rank::world]


class StarGANv2Step(TrainingStep):
    """StarGAN v2 for ``config.channels``-channel images and ``config.num_domains`` domains.

    Args:
        config: architecture (:class:`~medgan.models.stargan_v2.StarGANv2Config`).
        references: the dataset references are read from by index (items hold ``"image"``, (C, S, S)
            float in [-1, 1]); usually the training set itself. Only it and its labels are kept.
        reference_labels: (M,) domain of each item of ``references`` (every domain must occur).
        sampling: ``"balanced"`` (official: every domain equally often) or ``"by_count"``; see the module.
        augment: the :class:`~medgan.data.augment.Augment` the engine applies to sources, keys
            :data:`AUGMENT_KEYS`; the step applies it to the references (None = no augmentation).
        lr, mapping_lr, betas, weight_decay: Adam settings (official 1e-4, 1e-6, (0, 0.99), 1e-4).
        lambda_reg, lambda_sty, lambda_ds, lambda_cyc: loss weights (official ``main.py`` defaults
            1, 1, 1, 1 = the CelebA-HQ command; the AFHQ command of the README uses λ_ds = 2).
        ds_iter: iterations over which λ_ds decays to 0.
        ema_beta: EMA decay (0.999).
        reference_mode: also run the reference-guided D and G updates (official: yes).

    ``nets``: generator, mapping_network, style_encoder, discriminator and ``*_ema`` copies of the first three.
    """

    def __init__(self, config: StarGANv2Config, *, references: Dataset, reference_labels,
                 sampling: str = "balanced", augment=None,
                 lr: float = 1e-4, mapping_lr: float = 1e-6, betas: Sequence[float] = (0.0, 0.99),
                 weight_decay: float = 1e-4, lambda_reg: float = 1.0, lambda_sty: float = 1.0,
                 lambda_ds: float = 1.0, lambda_cyc: float = 1.0, ds_iter: int = 100_000, ema_beta: float = 0.999,
                 reference_mode: bool = True):
        if sampling not in SAMPLING:
            raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
        labels = torch.as_tensor(np.asarray(reference_labels, dtype=np.int64)).view(-1)
        if len(labels) != len(references):
            raise ValueError(f"{len(references)} reference items but {len(labels)} labels")
        missing = sorted(set(range(config.num_domains)) - set(labels.tolist()))
        if missing:
            raise ValueError(f"reference_labels hold no image of domain(s) {missing}")
        if augment is not None and not {"x_ref", "x_ref2"} <= set(augment.keys):
            raise ValueError(f"augment must name the references too: keys {AUGMENT_KEYS}, got {augment.keys}")
        nets = build_stargan_v2(config)
        for name in ("generator", "mapping_network", "style_encoder"):
            nets[f"{name}_ema"] = copy.deepcopy(nets[name]).requires_grad_(False)
        betas = tuple(betas)
        opts = {name: torch.optim.Adam(nets[name].parameters(), lr=mapping_lr if name == "mapping_network" else lr,
                                       betas=betas, weight_decay=weight_decay)
                for name in ("generator", "mapping_network", "style_encoder", "discriminator")}
        super().__init__(nets=nets, optimizers=opts)
        self.config = config
        self._references = references  # read per item; private: the fingerprint takes its identity below
        self.reference_identity = dataset_identity(references)
        self.reference_labels = labels
        self._domain_index = [torch.nonzero(labels == k).view(-1) for k in range(config.num_domains)]
        self.sampling = sampling
        self.augment = augment
        self.lambda_reg, self.lambda_sty, self.lambda_cyc = lambda_reg, lambda_sty, lambda_cyc
        self.lambda_ds_initial, self.ds_iter = lambda_ds, ds_iter
        self.ema_beta = ema_beta
        self.reference_mode = reference_mode

    # ------------------------------------------------------------------ helpers
    def _in_domain(self, domains: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """For each (domain k, uniform u): the item at place ``floor(u · n_k)`` of domain k."""
        out = []
        for k, v in zip(domains.tolist(), u.tolist()):
            members = self._domain_index[k]
            out.append(members[min(int(v * len(members)), len(members) - 1)])
        return torch.stack(out) if out else torch.zeros(0, dtype=torch.long)

    def draw_reference_indices(self, n: int, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Target domains ỹ (n,) and the items of ``references`` (n,) x 2 of the two references of each,
        on the CPU, for this rank's n places of the global batch (see the module on ``sampling``)."""
        u = _global_rows(torch.rand, ctx, n, 3).double()
        if self.sampling == "balanced":
            k = self.config.num_domains
            y_trg = (u[:, 0] * k).long().clamp_max(k - 1)
            first = self._in_domain(y_trg, u[:, 1])
        else:
            m = len(self.reference_labels)
            first = (u[:, 0] * m).long().clamp_max(m - 1)
            y_trg = self.reference_labels[first]
        return y_trg, first, self._in_domain(y_trg, u[:, 2])

    def read_references(self, indices: torch.Tensor, device: torch.device) -> torch.Tensor:
        """(n, C, S, S) float images of ``references`` at ``indices``, read item by item, on ``device``."""
        images = [torch.as_tensor(self._references[int(i)]["image"]).float() for i in indices.tolist()]
        return torch.stack(images).to(device)

    def draw_targets(self, n: int, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Target domains (n,) and two reference images of each, (n, C, S, S) x 2 (augmented each with its
        own draw when the step has ``augment``), on ``ctx.device``."""
        y_trg, first, second = self.draw_reference_indices(n, ctx)
        x_ref, x_ref2 = self.read_references(first, ctx.device), self.read_references(second, ctx.device)
        if self.augment is not None:
            out = self.augment({"x_ref": x_ref, "x_ref2": x_ref2}, seed=ctx.seed, step=ctx.step,
                               rank=ctx.dist.rank, world_size=ctx.dist.world_size)
            x_ref, x_ref2 = out["x_ref"], out["x_ref2"]
        return y_trg.to(ctx.device), x_ref, x_ref2

    def _style(self, y_trg, *, z=None, ref=None, ema: bool = False) -> torch.Tensor:
        suffix = "_ema" if ema else ""
        if z is not None:
            return self.nets["mapping_network" + suffix](z, y_trg)
        return self.nets["style_encoder" + suffix](ref, y_trg)

    def _d_loss(self, x_real, y_org, y_trg, *, z=None, ref=None) -> tuple[torch.Tensor, dict[str, float]]:
        D, G = self.nets["discriminator"], self.nets["generator"]
        x_real = x_real.detach().requires_grad_(True)
        out_real = D(x_real, y_org)
        # R1 = 0.5 * E||grad||^2 (the official r1_reg); losses.r1_penalty is E||grad||^2.
        r1 = 0.5 * losses.r1_penalty(out_real, x_real)
        with torch.no_grad():
            x_fake = G(x_real.detach(), self._style(y_trg, z=z, ref=ref))
        out_fake = D(x_fake, y_trg)
        adv = losses.d_nonsaturating(out_real, out_fake)
        loss = adv + self.lambda_reg * r1
        return loss, {"adv": adv.item(), "r1": r1.item()}

    def _g_loss(self, x_real, y_org, y_trg, lambda_ds, *, zs=None, refs=None) -> tuple[torch.Tensor, dict[str, float]]:
        G, D, E = self.nets["generator"], self.nets["discriminator"], self.nets["style_encoder"]
        first, second = (dict(z=zs[0]), dict(z=zs[1])) if zs is not None else (dict(ref=refs[0]), dict(ref=refs[1]))
        s_trg = self._style(y_trg, **first)
        x_fake = G(x_real, s_trg)
        adv = losses.g_nonsaturating(D(x_fake, y_trg))
        sty = (E(x_fake, y_trg) - s_trg).abs().mean()
        x_fake2 = G(x_real, self._style(y_trg, **second)).detach()
        ds = (x_fake - x_fake2).abs().mean()
        x_rec = G(x_fake, E(x_real, y_org))
        cyc = losses.cycle_l1(x_rec, x_real)
        loss = adv + self.lambda_sty * sty - lambda_ds * ds + self.lambda_cyc * cyc
        return loss, {"adv": adv.item(), "sty": sty.item(), "ds": ds.item(), "cyc": cyc.item()}

    def _update(self, loss, ctx, names) -> None:
        for name in names:
            self.optimizers[name].zero_grad(set_to_none=True)
        ctx.backward(loss)
        for name in names:
            ctx.optimizer_step(self.optimizers[name])

    # ------------------------------------------------------------------ the iteration
    def train_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        x_real = batch["image"].float()
        y_org = torch.as_tensor(batch["label"], device=ctx.device).long().view(-1)
        n = x_real.shape[0]
        if self.reference_mode:
            y_trg, x_ref, x_ref2 = self.draw_targets(n, ctx)
        else:  # the same draws, without reading the references
            y_trg = self.draw_reference_indices(n, ctx)[0].to(ctx.device)
        # Latents like the references: rows of the global batch at this rank's places.
        z1, z2 = (_global_rows(torch.randn, ctx, n, self.config.latent_dim).to(ctx.device) for _ in range(2))
        lambda_ds = diversity_weight(ctx.step, initial=self.lambda_ds_initial, ds_iter=self.ds_iter)
        D = self.nets["discriminator"]
        logs: dict[str, float] = {"lambda_ds": lambda_ds}

        set_requires_grad(D, True)
        with ctx.autocast():
            d_loss, parts = self._d_loss(x_real, y_org, y_trg, z=z1)
        self._update(d_loss, ctx, ["discriminator"])
        logs.update({"D/latent_" + k: v for k, v in parts.items()})
        if self.reference_mode:
            with ctx.autocast():
                d_loss, parts = self._d_loss(x_real, y_org, y_trg, ref=x_ref)
            self._update(d_loss, ctx, ["discriminator"])
            logs.update({"D/ref_" + k: v for k, v in parts.items()})

        set_requires_grad(D, False)
        with ctx.autocast():
            g_loss, parts = self._g_loss(x_real, y_org, y_trg, lambda_ds, zs=(z1, z2))
        self._update(g_loss, ctx, ["generator", "mapping_network", "style_encoder"])
        logs.update({"G/latent_" + k: v for k, v in parts.items()})
        if self.reference_mode:
            with ctx.autocast():
                g_loss, parts = self._g_loss(x_real, y_org, y_trg, lambda_ds, refs=(x_ref, x_ref2))
            self._update(g_loss, ctx, ["generator"])
            logs.update({"G/ref_" + k: v for k, v in parts.items()})
        set_requires_grad(D, True)

        for name in ("generator", "mapping_network", "style_encoder"):
            ema_update(self.nets[name + "_ema"], self.nets[name], self.ema_beta)
        return logs

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def translate(self, x: torch.Tensor, y_trg: torch.Tensor | int, *, z: torch.Tensor | None = None,
                  ref: torch.Tensor | None = None, ema: bool = True) -> torch.Tensor:
        """Translate images x (N, C, S, S) into domain(s) ``y_trg`` with a latent z (N, latent_dim)
        or reference images ref (N, C, S, S); returns (N, C, S, S) clamped to [-1, 1]."""
        if (z is None) == (ref is None):
            raise ValueError("translate: give exactly one of z (latent-guided) or ref (reference-guided)")
        device = next(self.nets["generator"].parameters()).device
        x = x.to(device).float()
        y = torch.as_tensor(y_trg, device=device).long().view(-1)
        if len(y) == 1:
            y = y.expand(len(x))
        s = self._style(y, z=None if z is None else z.to(device), ref=None if ref is None else ref.to(device), ema=ema)
        return self.nets["generator_ema" if ema else "generator"](x, s).clamp(-1, 1)

    def sample(self, n: int, ctx: StepContext) -> torch.Tensor:
        """n translations (EMA nets, fixed latents) of fixed training images, target domain cycling 0..K-1."""
        idx = torch.arange(n) % len(self.reference_labels)
        y = torch.arange(n) % self.config.num_domains
        z = ctx.fixed_randn(n, self.config.latent_dim)
        return self.translate(self.read_references(idx, torch.device("cpu")), y, z=z)
