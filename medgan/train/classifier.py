"""Supervised classifier training through the one engine, and batched prediction.

:class:`ClassifierStep` is a :class:`~medgan.train.step.TrainingStep` for a
:class:`medgan.models.classifiers.Classifier`, so classifiers get the same progress bar, JSONL
log, atomic checkpoints and resume as the GANs. :func:`train_classifier` is the one-call form
that returns the trained model and its history; :func:`predict_proba` scores a dataset or a
tensor of images.

Targets come from each item's ``"label"``: an int class index (softmax head, or a 0/1 label
for a one-output sigmoid head) or a float32 multi-label vector (sigmoid head with K outputs).
Items with label -1 (unlabelled) must be filtered out before training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from medgan.train.engine import select_device, train
from medgan.train.fingerprint import digest, tensor_digest
from medgan.train.step import StepContext, TrainingStep

__all__ = ["ClassifierStep", "ImageLabelDataset", "classification_loss", "predict_proba", "train_classifier"]


def _targets(labels: torch.Tensor, *, head: str, num_outputs: int) -> torch.Tensor:
    if head == "softmax":
        return labels.long().view(-1)
    targets = labels.float()
    if targets.ndim == 1:
        targets = targets.view(-1, 1)
    if targets.shape[1] != num_outputs:
        raise ValueError(f"labels have {targets.shape[1]} columns but the classifier has {num_outputs} sigmoid outputs")
    return targets


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, *, head: str,
                        pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean loss matching the head: BCE-with-logits for ``sigmoid`` (``pos_weight`` per output, to
    balance rare positives), cross-entropy for ``softmax``.

    logits (N, K); labels (N,) int / (N,) 0-1 / (N, K) float.
    """
    if head not in ("sigmoid", "softmax"):
        raise ValueError(f"head must be 'sigmoid' or 'softmax', not {head!r}")
    targets = _targets(labels, head=head, num_outputs=logits.shape[1])
    if head == "softmax":
        return F.cross_entropy(logits, targets)
    return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight)


class ClassifierStep(TrainingStep):
    """One supervised step: loss, backward, Adam(W) update; logs loss and accuracy.

    Args:
        model: a :class:`~medgan.models.classifiers.Classifier` (has ``head`` and ``num_outputs``).
        lr, weight_decay, betas: AdamW settings.
        pos_weight: optional per-output positive weights for the sigmoid head (list of K floats).
        lr_decay: ``"none"`` or ``"cosine"`` (cosine to 0 over the run, via ``ctx.progress``).
    """

    def __init__(self, model: nn.Module, *, lr: float = 1e-3, weight_decay: float = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.999), pos_weight: Sequence[float] | None = None,
                 lr_decay: str = "none"):
        if lr_decay not in ("none", "cosine"):
            raise ValueError(f"lr_decay must be 'none' or 'cosine', not {lr_decay!r}")
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=tuple(betas))
        super().__init__(nets={"classifier": model}, optimizers={"classifier": opt})
        self.base_lr = lr
        self.lr_decay = lr_decay
        self.pos_weight = None if pos_weight is None else torch.tensor(list(pos_weight), dtype=torch.float32)

    @property
    def schedule_uses_total_steps(self) -> bool:
        return self.lr_decay == "cosine"  # the cosine reads ctx.progress

    @property
    def model(self) -> nn.Module:
        return self.nets["classifier"]

    def train_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        model, opt = self.model, self.optimizers["classifier"]
        if self.lr_decay == "cosine":
            for group in opt.param_groups:
                group["lr"] = float(self.base_lr * 0.5 * (1 + np.cos(np.pi * ctx.progress)))  # a numpy scalar would not load weights-only
        images, labels = batch["image"], batch["label"]
        opt.zero_grad(set_to_none=True)
        with ctx.autocast():
            logits = model(images)
        pos_weight = self.pos_weight.to(ctx.device) if self.pos_weight is not None else None
        loss = classification_loss(logits.float(), labels, head=model.head, pos_weight=pos_weight)
        ctx.backward(loss)
        ctx.optimizer_step(opt)
        with torch.no_grad():
            targets = _targets(labels, head=model.head, num_outputs=logits.shape[1])
            if model.head == "softmax":
                accuracy = (logits.argmax(1) == targets).float().mean()
            else:
                accuracy = ((logits > 0).float() == targets).float().mean()
        return {"loss": loss.item(), "accuracy": accuracy.item()}


class ImageLabelDataset(Dataset):
    """In-memory images with labels (e.g. pseudo-labelled synthetic images) in the data contract's item form.

    images (N, C, H, W) float in [-1, 1]; labels (N,) int or (N, K) float; subjects optional str keys.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | np.ndarray, subjects: Sequence[str] | None = None):
        images = torch.as_tensor(images, dtype=torch.float32)
        labels = torch.as_tensor(np.asarray(labels))
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.float() if labels.is_floating_point() else labels.long()
        self.subjects = list(subjects) if subjects is not None else [f"synthetic-{i:06d}" for i in range(len(images))]

    def __len__(self) -> int:
        return len(self.images)

    def fingerprint(self) -> str:
        """Hash of the images, labels and subjects (the engine's dataset identity)."""
        return digest([tensor_digest(self.images), tensor_digest(self.labels), self.subjects])[:16]

    def __getitem__(self, i: int) -> dict[str, Any]:
        label = self.labels[i]
        return {"image": self.images[i], "label": label if label.ndim else label.item(), "subject": self.subjects[i]}


def train_classifier(model: nn.Module, dataset: Dataset, *, run_dir: str | Path, steps: int, batch_size: int,
                     lr: float = 1e-3, weight_decay: float = 1e-4, pos_weight: Sequence[float] | None = None,
                     lr_decay: str = "none", seed: int = 0, device: str = "auto", log_every: int = 10,
                     fingerprint: Mapping[str, Any] | None = None, resume: bool = True,
                     desc: str = "classifier") -> tuple[nn.Module, pd.DataFrame]:
    """Train ``model`` on ``dataset`` for ``steps`` iterations through :func:`medgan.train.train`.

    Checkpoints are written atomically to ``run_dir/checkpoints``; a finished run with the same
    ``fingerprint`` is reloaded instead of retrained. Returns ``(model in eval mode, history)``
    where history has columns ``step, time_s, loss, accuracy`` (training batches).
    """
    step = ClassifierStep(model, lr=lr, weight_decay=weight_decay, pos_weight=pos_weight, lr_decay=lr_decay)
    fp = {"arch": getattr(model, "arch", type(model).__name__), "head": getattr(model, "head", None),
          "steps": steps, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
          "pos_weight": list(pos_weight) if pos_weight is not None else None, "lr_decay": lr_decay,
          "n_items": len(dataset), **dict(fingerprint or {})}
    result = train(step, dataset, run_dir=run_dir, total_steps=steps, batch_size=min(batch_size, len(dataset)),
                   seed=seed, device=device, log_every=log_every, fingerprint=fp, resume=resume, desc=desc)
    model.eval()
    return model, result.history


@torch.no_grad()
def predict_proba(model: nn.Module, data: Dataset | torch.Tensor, *, batch_size: int = 64, device: str = "auto",
                  progress: bool = False) -> np.ndarray:
    """Probabilities (N, K) float64 in [0, 1] for a dataset (items with ``"image"``) or an image tensor (N, C, H, W).

    The model is put in eval mode (batch-norm running statistics) and left on ``device``.
    """
    dev = select_device(device)
    model.eval().to(dev)
    if torch.is_tensor(data):
        chunks = torch.split(data, batch_size)
    else:
        chunks = (b["image"] for b in DataLoader(data, batch_size=batch_size, shuffle=False))
    out = []
    for images in tqdm(chunks, disable=not progress, desc="predict"):
        logits = model(images.to(dev, torch.float32))
        out.append(model.probabilities(logits).double().cpu())
    return torch.cat(out).numpy()
