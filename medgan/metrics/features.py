"""Feature extractors every distribution metric of a study shares, by name.

Registry (``get_extractor(name, **kwargs)``):
  ``inception_v3``            the standard FID network, from a LOCAL weights file (argument or
                              ``$MEDGAN_INCEPTION_WEIGHTS``): pytorch-fid's port of the TF
                              2015-12-05 graph (``pt_inception-2015-12-05-6726825d.pth``) or
                              torchvision's ImageNet ``inception_v3_google-0cc3c7bd.pth``; which one
                              is detected from the state dict and written into ``.name``.
  ``finetuned_inception_v3``  an Inception fine-tuned by ``finetune_inception_v3`` (the CT study),
                              loaded from the file that function saved (``save_path``).
  ``domain_cnn``              a small CNN trained on the study's own labels (``train_domain_cnn``),
                              loaded from its saved file; the default when ImageNet weights are absent.

Every extractor is a ``torch.nn.Module`` whose ``forward(images) -> (features (N, D), logits (N, C)
or None)`` and whose ``.name`` identifies the exact network; put the name beside every number.
Images are (N, C, H, W) float in [-1, 1].

Inception channel handling: C = 3 as is; C = 1 repeated to RGB; any other C (5-stain cells) —
each channel is fed as a grey image and the per-channel features are averaged
(``channel_mode="mean"``, D = 2048) or concatenated (``channel_mode="concat"``, D = 2048·C).

Both trainings (``train_domain_cnn``, ``finetune_inception_v3``) run through the one engine
(:func:`medgan.train.engine.train` with :class:`ExtractorStep`): its device rule, progress bar,
JSONL log and, given a ``run_dir``, its keyed run folder, so a finished training is reloaded and
an interrupted one resumes. They take either (images, labels) arrays in memory, or a map-style
dataset (an item-store loader, read item by item by the engine's DataLoader, so memory does not
grow with the dataset) seen through :class:`LabelledItems` (which item key is the image, which
the label) or :class:`ConcatLabelledItems` (several such views as one training set).

``extract_features(..., cache_dir=...)`` serves repeated extractions of the same images by the
same network from the feature cache (:mod:`medgan.metrics.cache`); see :func:`feature_cache_key`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.models import inception_v3
from tqdm.auto import tqdm

from medgan.atomic import torch_load, torch_save
from medgan.metrics.cache import cached_features
from medgan.train.classifier import ImageLabelDataset
from medgan.train.engine import TrainResult, train
from medgan.train.fingerprint import dataset_identity, network_identity, tensor_digest
from medgan.train.step import StepContext, TrainingStep

__all__ = ["get_extractor", "extract_features", "register_extractor", "available_extractors",
           "InceptionV3Extractor", "DomainCNN", "train_domain_cnn", "finetune_inception_v3", "ExtractorStep",
           "LabelledItems", "ConcatLabelledItems",
           "feature_cache_key", "WeightsNotFoundError", "INCEPTION_ENV"]

INCEPTION_ENV = "MEDGAN_INCEPTION_WEIGHTS"
FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
IMAGENET_WEIGHTS_FILE = "inception_v3_google-0cc3c7bd.pth"


class WeightsNotFoundError(FileNotFoundError):
    """A feature extractor's weights file is not on this machine (nothing is ever downloaded)."""


# ---------------------------------------------------------------------------------------------
# Inception V3
# ---------------------------------------------------------------------------------------------

def _inception_weights_path(weights_path: str | os.PathLike | None) -> Path:
    given = weights_path if weights_path is not None else os.environ.get(INCEPTION_ENV)
    if given is None or not Path(given).is_file():
        where = f"'{given}' does not exist" if given is not None else f"no weights_path given and ${INCEPTION_ENV} is not set"
        raise WeightsNotFoundError(
            f"inception_v3 needs a local weights file and nothing is downloaded at run time: {where}. Provide "
            f"pytorch-fid's FID weights '{FID_WEIGHTS_FILE}' (github.com/mseitzer/pytorch-fid releases; the "
            f"standard for FID/KID) or torchvision's ImageNet '{IMAGENET_WEIGHTS_FILE}', put it on this machine "
            f"(e.g. <repo>/data/weights/) and pass weights_path= or set {INCEPTION_ENV}=/path/to/file. "
            f"Without it the notebooks fall back to the in-domain 'domain_cnn' extractor, and every metric is "
            f"labelled with that extractor's name.")
    return Path(given)


def _build_inception(variant: str, num_classes: int) -> nn.Module:
    """Inception V3 module without weights or downloads; ``variant`` 'fid' patches pytorch-fid's blocks."""
    # init_weights=False: the weights are overwritten anyway, and the truncated-normal init is slow.
    net = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=num_classes,
                       transform_input=False)
    if variant == "fid":
        # pytorch-fid's TF-port blocks (different pooling than torchvision); building them
        # directly, not through pytorch_fid.inception.fid_inception_v3, avoids its download.
        # pytorch-fid is optional (a test extra): only the FID weights file needs it.
        from pytorch_fid import inception as fid

        net.Mixed_5b = fid.FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = fid.FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = fid.FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = fid.FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = fid.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = fid.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = fid.FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = fid.FIDInceptionE_1(1280)
        net.Mixed_7c = fid.FIDInceptionE_2(2048)
    return net


def _detect_inception_variant(state: dict, path: Path) -> tuple[str, int, str]:
    """(variant, num_classes, description) from the state dict's keys and the fc shape."""
    if "fc.weight" not in state or "Conv2d_1a_3x3.conv.weight" not in state:
        raise ValueError(f"{path}: not an Inception V3 state dict (no 'fc.weight' / 'Conv2d_1a_3x3.conv.weight')")
    num_classes = int(state["fc.weight"].shape[0])
    if num_classes == 1008:
        return "fid", 1008, "pytorch-fid TF-2015-12-05"
    if num_classes == 1000:
        return "torchvision", 1000, "torchvision-imagenet"
    raise ValueError(f"{path}: 'fc.weight' has {num_classes} classes; expected 1008 (pytorch-fid FID weights) or "
                     f"1000 (torchvision ImageNet). Fine-tuned networks load through 'finetuned_inception_v3'.")


def _load_inception_state(net: nn.Module, state: dict, path: Path) -> None:
    state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}  # torchvision's aux head
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{path}: does not fit the Inception V3 architecture — missing keys {missing[:5]}, "
                         f"unexpected keys {unexpected[:5]}")


class InceptionV3Extractor(nn.Module):
    """Inception V3 pool features (2048-d) and logits.

    Args:
        net: the Inception module (weights loaded).
        name: identifies the weights; carried with every number.
        channel_mode: 'mean' or 'concat' for inputs that are neither 1 nor 3 channels.
        resize_to: input side after bilinear resizing (299 is the standard; smaller only for tests).
    """

    def __init__(self, net: nn.Module, *, name: str, channel_mode: str = "mean", resize_to: int = 299):
        super().__init__()
        if channel_mode not in ("mean", "concat"):
            raise ValueError(f"channel_mode must be 'mean' or 'concat', got {channel_mode!r}")
        self.net = net.eval()
        self.channel_mode = channel_mode
        self.resize_to = resize_to
        self.name = name
        self.feature_dim = 2048
        self.num_classes = int(net.fc.out_features)

    def extra_repr(self) -> str:
        # In the printed architecture, hence in the training fingerprint and the feature-cache key.
        return f"channel_mode={self.channel_mode!r}, resize_to={self.resize_to}"

    def _pool_and_logits(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.net
        x = F.interpolate(rgb, size=(self.resize_to, self.resize_to), mode="bilinear", align_corners=False)
        x = n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x)))
        x = n.maxpool1(x)
        x = n.maxpool2(n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(x)))
        for block in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                      "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(n, block)(x)
        pool = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return pool, n.fc(pool)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (N, C, H, W) in [-1, 1] -> (features (N, 2048 or 2048·C), logits (N, classes))."""
        if images.ndim != 4:
            raise ValueError(f"images: expected (N, C, H, W), got {tuple(images.shape)}")
        c = images.shape[1]
        if c == 3:
            return self._pool_and_logits(images)
        if c == 1:
            return self._pool_and_logits(images.expand(-1, 3, -1, -1))
        per_channel = [self._pool_and_logits(images[:, i:i + 1].expand(-1, 3, -1, -1)) for i in range(c)]
        feats = [p for p, _ in per_channel]
        logits = torch.stack([l for _, l in per_channel]).mean(dim=0)
        if self.channel_mode == "mean":
            return torch.stack(feats).mean(dim=0), logits
        return torch.cat(feats, dim=1), logits


def load_inception_v3(weights_path: str | os.PathLike | None = None, *, channel_mode: str = "mean",
                      resize_to: int = 299) -> InceptionV3Extractor:
    """The standard FID Inception from a local file; raises ``WeightsNotFoundError`` if absent."""
    path = _inception_weights_path(weights_path)
    state = torch_load(path)
    variant, num_classes, description = _detect_inception_variant(state, path)
    net = _build_inception(variant, num_classes)
    _load_inception_state(net, state, path)
    suffix = "" if channel_mode == "mean" else f",channels={channel_mode}"
    return InceptionV3Extractor(net, name=f"inception_v3[{description}{suffix}]", channel_mode=channel_mode,
                                resize_to=resize_to)


def finetune_inception_v3(images: Any, labels: Any = None, *, weights_path: str | os.PathLike | None = None,
                          epochs: int = 10, batch_size: int = 32, lr: float = 1e-4,
                          device: str | torch.device | None = None, seed: int = 0,
                          num_classes: int = 2, save_path: str | os.PathLike | None = None,
                          resize_to: int = 299, run_dir: str | os.PathLike | None = None,
                          progress: bool = True, image_key: str = "image", label_key: str = "label",
                          num_workers: int = 0) -> InceptionV3Extractor:
    """The CT study's extractor: ImageNet Inception V3 fine-tuned on the study's training images.

    Args:
        images: (N, C, H, W) training images in [-1, 1] (C = 1 repeated to RGB), in memory; or a
            map-style dataset of such (C, H, W) items, read per batch (see :class:`LabelledItems`).
            Resizing to ``resize_to`` and the channel repeat happen per batch in the network's forward.
        labels: (N,) integer class labels in [0, num_classes); with a dataset, ``None`` (the
            labels are its items' ``label_key``, from ``dataset.rows`` when it has them) or an
            (N,) array.
        image_key, label_key: the item keys of the image and the label (a dataset only).
        num_workers: DataLoader worker processes reading the items (a dataset only; not in the key).
        weights_path: local torchvision ImageNet (or pytorch-fid) Inception weights; else
            ``$MEDGAN_INCEPTION_WEIGHTS``.
        epochs, batch_size, lr, seed: Adam fine-tuning of all layers with a new ``num_classes`` head,
            through the engine (an epoch = N // batch_size full batches, reshuffled each epoch).
        device: ``None`` or ``"auto"``: the engine's rule (this rank's CUDA device, else MPS, else CPU).
        save_path: if given, the fine-tuned network is also saved there (atomically) for
            ``get_extractor('finetuned_inception_v3', weights_path=save_path)``.
        resize_to: input side after bilinear resizing (299 is the standard).
        run_dir: the engine's job folder; the run lands in ``run_dir/<key>`` (keyed by the
            initial weights, settings, seed and images), and a finished run there is reloaded
            instead of retrained. ``None``: a temporary folder, nothing kept.
        progress: show the engine's progress bar.

    Returns:
        An extractor (eval mode) giving the fine-tuned 2048-d pool features and the new head's
        logits; ``.name`` ends in ``#<digest of the trained weights>``, ``.history`` is the
        engine's log (step, epoch, loss, accuracy), ``.run_dir`` the run folder (or None).
    """
    base = load_inception_v3(weights_path, resize_to=resize_to)
    dataset = _training_set(images, labels, image_key=image_key, label_key=label_key)
    _first_image_shape(dataset)
    _check_labels(dataset.labels, num_classes)
    torch.manual_seed(seed)  # the new head's initial weights are part of the run's fingerprint
    net = base.net
    net.fc = nn.Linear(2048, num_classes)
    extractor = InceptionV3Extractor(net, name="finetuned_inception_v3[training]", resize_to=resize_to)
    _train_extractor(extractor, dataset, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                     device=device, run_dir=run_dir, progress=progress, desc="fine-tune inception_v3",
                     num_workers=num_workers)
    base_description = base.name[len("inception_v3["):-1]
    extractor.name = (f"finetuned_inception_v3[{base_description},{num_classes}cls,{epochs}ep,seed{seed}]"
                      f"#{_weights_digest(extractor.net)}")
    if save_path is not None:
        torch_save({"state_dict": extractor.net.state_dict(), "name": extractor.name,
                    "variant": "fid" if "pytorch-fid" in base.name else "torchvision",
                    "num_classes": num_classes}, save_path)
    return extractor


def load_finetuned_inception_v3(weights_path: str | os.PathLike, *, channel_mode: str = "mean",
                                resize_to: int = 299) -> InceptionV3Extractor:
    """A network saved by ``finetune_inception_v3(save_path=...)``."""
    path = Path(weights_path)
    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: no fine-tuned Inception here; run finetune_inception_v3(..., "
                                   f"save_path='{path}') first (needs the ImageNet Inception weights)")
    saved = torch_load(path)
    for key in ("state_dict", "name", "variant", "num_classes"):
        if key not in saved:
            raise ValueError(f"{path}: missing field '{key}' — not saved by finetune_inception_v3")
    net = _build_inception(saved["variant"], int(saved["num_classes"]))
    _load_inception_state(net, saved["state_dict"], path)
    return InceptionV3Extractor(net, name=saved["name"], channel_mode=channel_mode, resize_to=resize_to)


# ---------------------------------------------------------------------------------------------
# Domain CNN
# ---------------------------------------------------------------------------------------------

class DomainCNN(nn.Module):
    """Small in-domain CNN: ``num_blocks`` × (conv3×3-BN-LeakyReLU, conv3×3 stride 2-BN-LeakyReLU),
    global average pool, a linear layer to ``feature_dim`` features, and a class head.

    Any number of input channels (1 for CT/PET slices, 5 for cell-painting stains) and any
    image size ≥ 2^num_blocks. ``forward`` -> (features (N, feature_dim), logits (N, num_classes)).
    """

    def __init__(self, *, in_channels: int, num_classes: int, feature_dim: int = 128, width: int = 32,
                 num_blocks: int = 4):
        super().__init__()
        self.config = dict(in_channels=in_channels, num_classes=num_classes, feature_dim=feature_dim,
                           width=width, num_blocks=num_blocks)
        blocks, channels = [], in_channels
        for i in range(num_blocks):
            out = width * 2 ** min(i, 3)
            blocks.append(nn.Sequential(
                nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2),
                nn.Conv2d(out, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2)))
            channels = out
        self.blocks = nn.ModuleList(blocks)
        self.embed = nn.Linear(channels, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.name = "domain_cnn[untrained]"

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Output of every block, (N, C_l, H/2^l, W/2^l) — used by the LPIPS-style fallback."""
        maps, x = [], images
        for block in self.blocks:
            x = block(x)
            maps.append(x)
        return maps

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != self.config["in_channels"]:
            raise ValueError(f"{self.name}: expected (N, {self.config['in_channels']}, H, W) images, "
                             f"got {tuple(images.shape)}")
        x = self.feature_maps(images)[-1]
        feats = self.embed(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        return feats, self.head(F.leaky_relu(feats, 0.2))

    def save(self, path: str | os.PathLike) -> Path:
        """Write weights, config and name atomically (load with ``get_extractor('domain_cnn', weights_path=...)``)."""
        return torch_save({"state_dict": self.state_dict(), "config": dict(self.config), "name": self.name}, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DomainCNN":
        path = Path(path)
        if not path.is_file():
            raise WeightsNotFoundError(f"{path}: no trained domain_cnn here; train one with train_domain_cnn(...) "
                                       f"and save it with .save('{path}')")
        saved = torch_load(path)
        for key in ("state_dict", "config", "name"):
            if key not in saved:
                raise ValueError(f"{path}: missing field '{key}' — not written by DomainCNN.save")
        model = cls(**saved["config"])
        model.load_state_dict(saved["state_dict"])
        model.name = saved["name"]
        return model.eval()


class ExtractorStep(TrainingStep):
    """The engine step of both extractor trainings: cross-entropy on the class head, Adam.

    Args:
        net: a module whose ``forward(images) -> (features, logits)`` (``DomainCNN``,
            ``InceptionV3Extractor``); batches are items of the data contract (``image``, ``label``).
        lr: Adam learning rate (constant, so a longer run continues a shorter one).
    """

    def __init__(self, net: nn.Module, *, lr: float):
        super().__init__(nets={"extractor": net}, optimizers={"extractor": torch.optim.Adam(net.parameters(), lr=lr)})

    def train_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        net, opt = self.nets["extractor"], self.optimizers["extractor"]
        images, labels = batch["image"], batch["label"].long()
        opt.zero_grad(set_to_none=True)
        with ctx.autocast():
            _, logits = net(images)
        loss = F.cross_entropy(logits.float(), labels)
        ctx.backward(loss)
        ctx.optimizer_step(opt)
        return {"loss": loss.item(), "accuracy": (logits.argmax(1) == labels).float().mean().item()}


class _LabelledImages(ImageLabelDataset):
    """Training images and labels with a cheap content fingerprint (two array hashes, not one per item)."""

    def fingerprint(self) -> dict[str, str]:
        return {"images": tensor_digest(self.images), "labels": tensor_digest(self.labels)}


class LabelledItems(Dataset):
    """A map-style dataset seen as the extractor trainings' items ``{"image", "label"}``, read by index.

    Only the labels are held in memory ((N,) int64, for the class count and range check); each
    image is read from ``dataset`` when the engine's DataLoader asks for its index, so an
    item-store loader trains with memory that does not depend on the number of images.

    Args:
        dataset: a map-style dataset whose items are dicts (e.g. an :class:`medgan.data.base.ItemListDataset`).
        image_key: the item key of the (C, H, W) float image in [-1, 1].
        label_key: the key of the integer label, read from ``dataset.rows`` when the dataset has them
            (no pixels read), else from each item once, here.
        labels: instead of ``label_key``: (N,) integer labels, or one integer for every item (e.g.
            0 = early, 1 = delayed, with two views of one dataset in a :class:`ConcatLabelledItems`).

    ``fingerprint()`` (the engine's dataset identity) forwards the dataset's own cheap identity
    (``fingerprint()`` when it has one) with the key mapping and a hash of the labels.
    """

    def __init__(self, dataset: Dataset, *, image_key: str = "image", label_key: str | None = "label",
                 labels: Any = None):
        self.dataset = dataset
        self.image_key = image_key
        n = len(dataset)
        if labels is None:
            if label_key is None:
                raise ValueError("LabelledItems: give label_key or labels")
            rows = getattr(dataset, "rows", None)
            if rows is not None and len(rows) == n and all(label_key in row for row in rows):
                values = [row[label_key] for row in rows]
            else:  # one item at a time: the labels stay, the pixels go
                values = [dataset[i][label_key] for i in tqdm(range(n), desc="labels", unit="item", leave=False)]
            self.label_key = label_key
        else:
            values = np.full(n, int(labels)) if np.ndim(labels) == 0 else labels
            self.label_key = None
        y = torch.as_tensor(np.asarray([int(v) for v in values] if isinstance(values, list) else values))
        if y.ndim != 1 or len(y) != n:
            raise ValueError(f"labels: expected ({n},) integer labels, got shape {tuple(y.shape)}")
        self.labels = y.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = self.dataset[index][self.image_key]
        image = torch.as_tensor(image if torch.is_tensor(image) else np.asarray(image), dtype=torch.float32)
        return {"image": image, "label": int(self.labels[index])}

    def fingerprint(self) -> dict[str, Any]:
        return {"items": dataset_identity(self.dataset), "image_key": self.image_key, "label_key": self.label_key,
                "labels": tensor_digest(self.labels)}


class ConcatLabelledItems(Dataset):
    """Several :class:`LabelledItems` as one training set, in order (e.g. both domains' training images)."""

    def __init__(self, parts: Sequence[LabelledItems]):
        self.parts = list(parts)
        if not self.parts:
            raise ValueError("ConcatLabelledItems: no parts given")
        self.labels = torch.cat([part.labels for part in self.parts])
        self._starts = np.cumsum([0] + [len(part) for part in self.parts])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        part = int(np.searchsorted(self._starts, index, side="right")) - 1
        return self.parts[part][index - int(self._starts[part])]

    def fingerprint(self) -> list[dict[str, Any]]:
        return [dataset_identity(part) for part in self.parts]


def _training_set(images: Any, labels: Any, *, image_key: str, label_key: str) -> Dataset:
    """The engine's training set: arrays in memory as before (same run keys), or a dataset read per item.

    Either way it has ``.labels`` ((N,) int64 tensor) and items ``{"image": (C, H, W) float32, "label": int}``.
    """
    if isinstance(images, (LabelledItems, ConcatLabelledItems)):
        if labels is not None:
            raise ValueError("labels: already given by the LabelledItems; pass labels=None")
        return images
    if isinstance(images, Dataset):
        return LabelledItems(images, image_key=image_key, label_key=label_key, labels=labels)
    if labels is None:
        raise ValueError("labels: required with images given as an array")
    return _LabelledImages(*_training_tensors(images, labels))


def _first_image_shape(dataset: Dataset) -> tuple[int, ...]:
    """(C, H, W) of the first training image (the shape check reads one item, not the set)."""
    if len(dataset) == 0:
        raise ValueError("no training images given")
    shape = tuple(dataset[0]["image"].shape)
    if len(shape) != 3:
        raise ValueError(f"images: expected (C, H, W) items / (N, C, H, W) arrays, got items of shape {shape}")
    return shape


def _training_tensors(images: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H, W) float32 and (N,) int64 CPU tensors from arrays or tensors, shapes checked."""
    x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images).float().cpu()
    y = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels).long().cpu()
    if x.ndim != 4:
        raise ValueError(f"images: expected (N, C, H, W), got {tuple(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels: expected ({x.shape[0]},) integer labels, got shape {tuple(y.shape)}")
    return x, y


def _check_labels(y: torch.Tensor, num_classes: int) -> None:
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{int(y.min())}, {int(y.max())}]")


def _weights_digest(net: nn.Module) -> str:
    """8 hex digits naming a network's weights and buffers (the ``#...`` of an extractor's name)."""
    return network_identity(net)["weights"][:8]


def _train_extractor(net: nn.Module, dataset: Dataset, *, epochs: int, batch_size: int,
                     lr: float, seed: int, device: str | torch.device | None, run_dir: str | os.PathLike | None,
                     progress: bool, desc: str, num_workers: int = 0) -> TrainResult:
    """``epochs`` epochs of :class:`ExtractorStep` on ``dataset`` (:func:`_training_set`) through the engine,
    which reads it batch by batch; ``net`` ends trained, in eval mode.

    Sets ``net.history`` (the engine's log with an ``epoch`` column) and ``net.run_dir``.
    """
    batch = min(batch_size, len(dataset))
    if batch < 2:  # BatchNorm needs > 1 sample per batch in training mode
        raise ValueError(f"{desc}: need at least 2 training images and batch_size >= 2, got {len(dataset)} "
                         f"images and batch_size={batch_size}")
    steps_per_epoch = len(dataset) // batch  # the engine drops the last partial batch
    options = dict(total_steps=epochs * steps_per_epoch, batch_size=batch, seed=seed,
                   device="auto" if device is None else str(device), log_every=steps_per_epoch,
                   progress=progress, desc=desc, num_workers=num_workers)
    step = ExtractorStep(net, lr=lr)
    if run_dir is None:
        with tempfile.TemporaryDirectory(prefix="medgan-extractor-") as tmp:
            result = train(step, dataset, run_dir=tmp, **options)
        net.run_dir = None
    else:
        result = train(step, dataset, run_dir=run_dir, **options)
        net.run_dir = result.run_dir
    history = result.history.copy()
    if len(history):
        history.insert(1, "epoch", history["step"] / steps_per_epoch)
    net.history = history
    net.eval()
    return result


def train_domain_cnn(images: Any, labels: Any = None, *, channels: int | None = None, epochs: int = 10,
                     batch_size: int = 64, lr: float = 1e-3, seed: int = 0, device: str | torch.device | None = None,
                     num_classes: int | None = None, feature_dim: int = 128, width: int = 32,
                     num_blocks: int = 4, run_dir: str | os.PathLike | None = None,
                     progress: bool = True, image_key: str = "image", label_key: str = "label",
                     num_workers: int = 0) -> DomainCNN:
    """Train a ``DomainCNN`` on the study's own labels (domains, survival class, findings).

    Args:
        images: (N, channels, H, W) float images in [-1, 1] (numpy or torch), in memory; or a
            map-style dataset of such (channels, H, W) items (an item-store loader, a
            :class:`LabelledItems`), read per batch so memory does not grow with N.
        labels: (N,) integer labels; num_classes defaults to max(label) + 1. With a dataset,
            ``None`` (its items' ``label_key``, from ``dataset.rows`` when it has them) or an (N,) array.
        channels: the images' channels; ``None``: those of the first image.
        image_key, label_key: the item keys of the image and the label (a dataset only).
        num_workers: DataLoader worker processes reading the items (a dataset only; not in the key).
        epochs, batch_size, lr, seed: Adam, cross-entropy, through the engine (an epoch =
            N // batch_size full batches, reshuffled each epoch).
        device: ``None`` or ``"auto"``: the engine's rule (this rank's CUDA device, else MPS, else CPU).
        feature_dim, width, num_blocks: the network (see :class:`DomainCNN`).
        run_dir: the engine's job folder; the run lands in ``run_dir/<key>`` (keyed by the network,
            its initial weights, the settings, the seed and the images), and a finished run there is
            reloaded instead of retrained. ``None``: a temporary folder, nothing kept.
        progress: show the engine's progress bar.

    Returns:
        The trained network in eval mode; ``.name`` = domain_cnn[...]#<digest of the trained
        weights>, ``.history`` = the engine's log (step, epoch, loss, accuracy: means over each
        epoch's training batches), ``.run_dir`` the run folder (or None).
    """
    dataset = _training_set(images, labels, image_key=image_key, label_key=label_key)
    shape = _first_image_shape(dataset)
    channels = shape[0] if channels is None else channels
    if shape[0] != channels:
        raise ValueError(f"images: expected (N, {channels}, H, W), got (N, {', '.join(map(str, shape))})")
    num_classes = int(dataset.labels.max()) + 1 if num_classes is None else num_classes
    _check_labels(dataset.labels, num_classes)
    torch.manual_seed(seed)  # the initial weights are part of the run's fingerprint
    model = DomainCNN(in_channels=channels, num_classes=num_classes, feature_dim=feature_dim, width=width,
                      num_blocks=num_blocks)
    _train_extractor(model, dataset, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device,
                     run_dir=run_dir, progress=progress, desc="train domain_cnn", num_workers=num_workers)
    model.name = (f"domain_cnn[{channels}ch,{num_classes}cls,d{feature_dim},{epochs}ep,seed{seed}]"
                  f"#{_weights_digest(model)}")
    return model


# ---------------------------------------------------------------------------------------------
# Registry and extraction
# ---------------------------------------------------------------------------------------------

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_extractor(name: str, factory: Callable[..., nn.Module]) -> None:
    """Add an extractor factory under ``name`` (fails if the name is taken)."""
    if name in _REGISTRY:
        raise ValueError(f"feature extractor '{name}' is already registered")
    _REGISTRY[name] = factory


def available_extractors() -> list[str]:
    return sorted(_REGISTRY)


def get_extractor(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered extractor: 'inception_v3' (weights_path=, channel_mode=),
    'finetuned_inception_v3' (weights_path= of a saved fine-tune), 'domain_cnn' (weights_path=
    of a saved DomainCNN). Unknown names raise ``ValueError`` listing the known ones."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown feature extractor '{name}'; known: {', '.join(available_extractors())}")
    return _REGISTRY[name](**kwargs)


def _load_domain_cnn(weights_path: str | os.PathLike) -> DomainCNN:
    return DomainCNN.load(weights_path)


register_extractor("inception_v3", load_inception_v3)
register_extractor("finetuned_inception_v3", load_finetuned_inception_v3)
register_extractor("domain_cnn", _load_domain_cnn)


def _batches(images_or_loader: Any, batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(images_or_loader, (np.ndarray, torch.Tensor)):
        data = images_or_loader
        for s in range(0, len(data), batch_size):
            yield torch.as_tensor(np.asarray(data[s:s + batch_size]) if isinstance(data, np.ndarray)
                                  else data[s:s + batch_size])
        return
    for batch in images_or_loader:  # a DataLoader / iterable of tensors or (images, labels, ...) tuples
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        elif isinstance(batch, dict):
            if "image" not in batch:
                raise ValueError(f"extract_features: a dict batch needs an 'image' key, got keys {sorted(batch)}")
            batch = batch["image"]
        yield torch.as_tensor(batch)


def feature_cache_key(extractor: nn.Module, images: np.ndarray | torch.Tensor) -> dict[str, Any]:
    """The feature-cache key of ``extract_features(extractor, images)``: everything that changes the features.

    - the images: a SHA-256 of their dtype, shape and bytes (``dataset``), and their shape (``split``);
    - the extractor: its ``.name``, plus its class, a hash of its printed architecture (which holds
      its settings, e.g. Inception's ``channel_mode`` and ``resize_to``) and a hash of its current
      weights and buffers (``network``), so a retrained or fine-tuned network never reads the
      features of another;
    - the preprocessing ``extract_features`` applies: a float32 cast and the extractor's own
      channel handling and resizing.
    """
    return {"dataset": tensor_digest(images), "split": list(images.shape),
            "extractor": getattr(extractor, "name", type(extractor).__name__),
            "network": network_identity(extractor),
            "preprocessing": {"dtype": "float32", "channel_mode": getattr(extractor, "channel_mode", None),
                              "resize_to": getattr(extractor, "resize_to", None)}}


def stream_cache_key(extractor: nn.Module, identity: str, n_images: int) -> dict[str, Any]:
    """The feature-cache key of a stream of images whose content ``identity`` is known up front
    (a dataset's ``fingerprint()``, or a generator's weights digest with its seed and count):
    the same extractor fields as :func:`feature_cache_key`, with ``identity`` for the bytes."""
    return {"dataset": f"stream:{identity}", "split": [int(n_images)],
            "extractor": getattr(extractor, "name", type(extractor).__name__),
            "network": network_identity(extractor),
            "preprocessing": {"dtype": "float32", "channel_mode": getattr(extractor, "channel_mode", None),
                              "resize_to": getattr(extractor, "resize_to", None)}}


def extract_features(extractor: nn.Module, images_or_loader: Any, *, batch_size: int = 64,
                     device: str | torch.device | None = None,
                     cache_dir: str | os.PathLike | None = None,
                     stream_identity: tuple[str, int] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Run an extractor over images in eval mode without gradients.

    Args:
        extractor: from ``get_extractor`` / ``train_domain_cnn`` / ``finetune_inception_v3``.
        images_or_loader: (N, C, H, W) array/tensor in [-1, 1], or an iterable of such batches
            (tuples/lists: first element; dicts: the 'image' key).
        batch_size: used for arrays only; device: default the extractor's device.
        cache_dir: with an array or tensor, the features are looked up in (and added to) the
            feature cache there (:mod:`medgan.metrics.cache`), keyed by :func:`feature_cache_key`
            (the images' bytes, the extractor's name, architecture and weights); a hit runs no
            forward pass. An iterable is cached only with ``stream_identity``.
        stream_identity: ``(identity, n_images)`` of an iterable whose content is known up front
            (:func:`stream_cache_key`): a cache hit then reads no image at all.

    Returns:
        (features (N, D) float32, softmax probabilities (N, classes) float64 or None).
    """
    if cache_dir is not None and isinstance(images_or_loader, (np.ndarray, torch.Tensor)):
        return cached_features(feature_cache_key(extractor, images_or_loader),
                               lambda: extract_features(extractor, images_or_loader, batch_size=batch_size,
                                                        device=device), cache_dir=cache_dir)
    if cache_dir is not None and stream_identity is not None:
        return cached_features(stream_cache_key(extractor, *stream_identity),
                               lambda: extract_features(extractor, images_or_loader, batch_size=batch_size,
                                                        device=device), cache_dir=cache_dir)
    device = torch.device(device) if device is not None else next(extractor.parameters()).device
    extractor = extractor.to(device).eval()
    feats, probs = [], []
    total = len(images_or_loader) if hasattr(images_or_loader, "__len__") else None
    if isinstance(images_or_loader, (np.ndarray, torch.Tensor)):
        total = -(-len(images_or_loader) // batch_size)
    with torch.no_grad():
        for batch in tqdm(_batches(images_or_loader, batch_size), total=total,
                          desc=f"features {getattr(extractor, 'name', '')}", unit="batch", leave=False):
            f, logits = extractor(batch.to(device=device, dtype=torch.float32))
            feats.append(f.float().cpu())
            if logits is not None:
                probs.append(torch.softmax(logits.double(), dim=1).cpu())
    if not feats:
        raise ValueError("extract_features: no images were given")
    return torch.cat(feats).numpy(), (torch.cat(probs).numpy() if probs else None)
