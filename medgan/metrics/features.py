"""Feature extractors every distribution metric of a study shares, by name.

Registry (``get_extractor(name, **kwargs)``):
  ``inception_v3``            the standard FID network, from a LOCAL weights file (argument or
                              ``$MEDGAN_INCEPTION_WEIGHTS``): pytorch-fid's port of the TF
                              2015-12-05 graph (``pt_inception-2015-12-05-6726825d.pth``) or
                              torchvision's ImageNet ``inception_v3_google-0cc3c7bd.pth``; which one
                              is detected from the state dict and written into ``.name``.
  ``finetuned_inception_v3``  an Inception fine-tuned by ``finetune_inception_v3`` (CT study recipe),
                              loaded from the file that function saved.
  ``domain_cnn``              a small CNN trained on the study's own labels (``train_domain_cnn``),
                              loaded from its saved file; the default when ImageNet weights are absent.

Every extractor is a ``torch.nn.Module`` whose ``forward(images) -> (features (N, D), logits (N, C)
or None)`` and whose ``.name`` identifies the exact network; put the name beside every number.
Images are (N, C, H, W) float in [-1, 1].

Inception channel handling: C = 3 as is; C = 1 repeated to RGB; any other C (5-stain cells) —
each channel is fed as a grey image and the per-channel features are averaged
(``channel_mode="mean"``, D = 2048) or concatenated (``channel_mode="concat"``, D = 2048·C).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from medgan.atomic import torch_load, torch_save

__all__ = ["get_extractor", "extract_features", "register_extractor", "available_extractors",
           "InceptionV3Extractor", "DomainCNN", "train_domain_cnn", "finetune_inception_v3",
           "WeightsNotFoundError", "INCEPTION_ENV"]

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
    from torchvision.models import inception_v3

    # init_weights=False: the weights are overwritten anyway, and the truncated-normal init is slow.
    net = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=num_classes,
                       transform_input=False)
    if variant == "fid":
        # pytorch-fid's TF-port blocks (different pooling than torchvision); building them
        # directly, not through pytorch_fid.inception.fid_inception_v3, avoids its download.
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


def finetune_inception_v3(images: Any, labels: Any, *, weights_path: str | os.PathLike | None = None,
                          epochs: int = 10, batch_size: int = 32, lr: float = 1e-4,
                          device: str | torch.device | None = None, seed: int = 0,
                          num_classes: int = 2, save_path: str | os.PathLike | None = None,
                          resize_to: int = 299) -> InceptionV3Extractor:
    """The CT study's extractor: ImageNet Inception V3 fine-tuned on the study's training images.

    Args:
        images: (N, C, H, W) training images in [-1, 1] (C = 1 repeated to RGB).
        labels: (N,) integer class labels in [0, num_classes).
        weights_path: local torchvision ImageNet (or pytorch-fid) Inception weights; else
            ``$MEDGAN_INCEPTION_WEIGHTS``.
        epochs, batch_size, lr, seed: Adam fine-tuning of all layers with a new ``num_classes`` head.
        save_path: if given, the fine-tuned network is saved there (atomically) for
            ``get_extractor('finetuned_inception_v3', weights_path=save_path)``.

    Returns:
        An extractor giving the fine-tuned 2048-d pool features and the new head's logits.
    """
    base = load_inception_v3(weights_path, resize_to=resize_to)
    torch.manual_seed(seed)
    net = base.net
    net.fc = nn.Linear(2048, num_classes)
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x_all = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    _check_training_data(x_all, y_all, num_classes)
    extractor = InceptionV3Extractor(net, name="", resize_to=resize_to).to(device)
    optimiser = torch.optim.Adam(extractor.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    extractor.train()
    for _ in tqdm(range(epochs), desc="fine-tune inception_v3", unit="epoch"):
        for idx in torch.randperm(len(x_all), generator=generator).split(batch_size):
            if len(idx) < 2:  # BatchNorm needs > 1 sample per batch in training mode
                continue
            _, logits = extractor(x_all[idx].to(device))
            loss = F.cross_entropy(logits, y_all[idx].to(device))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    extractor.eval()
    fingerprint = _state_fingerprint(extractor.net.state_dict())
    base_description = base.name[len("inception_v3["):-1]
    extractor.name = f"finetuned_inception_v3[{base_description},{num_classes}cls,{epochs}ep,seed{seed}]#{fingerprint}"
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


def _check_training_data(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> None:
    if x.ndim != 4:
        raise ValueError(f"images: expected (N, C, H, W), got {tuple(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels: expected ({x.shape[0]},) integer labels, got shape {tuple(y.shape)}")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{int(y.min())}, {int(y.max())}]")


def _state_fingerprint(state: dict) -> str:
    digest = hashlib.md5()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:8]


def train_domain_cnn(images: Any, labels: Any, *, channels: int, epochs: int = 10, batch_size: int = 64,
                     lr: float = 1e-3, seed: int = 0, device: str | torch.device | None = None,
                     num_classes: int | None = None, feature_dim: int = 128, width: int = 32,
                     num_blocks: int = 4) -> DomainCNN:
    """Train a ``DomainCNN`` on the study's own labels (domains, survival class, findings).

    Args:
        images: (N, channels, H, W) float images in [-1, 1] (numpy or torch, on CPU).
        labels: (N,) integer labels; num_classes defaults to max(label) + 1.
        epochs, batch_size, lr, seed: Adam, cross-entropy, reshuffled each epoch.

    Returns:
        The trained network in eval mode; ``.name`` = domain_cnn[...]#<weights md5>, and
        ``.history`` = list of (epoch, mean training loss, training accuracy).
    """
    x_all = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if x_all.ndim != 4 or x_all.shape[1] != channels:
        raise ValueError(f"images: expected (N, {channels}, H, W), got {tuple(x_all.shape)}")
    num_classes = int(y_all.max()) + 1 if num_classes is None else num_classes
    _check_training_data(x_all, y_all, num_classes)
    torch.manual_seed(seed)
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = DomainCNN(in_channels=channels, num_classes=num_classes, feature_dim=feature_dim, width=width,
                      num_blocks=num_blocks).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    history = []
    for epoch in tqdm(range(epochs), desc="train domain_cnn", unit="epoch"):
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        for idx in torch.randperm(len(x_all), generator=generator).split(batch_size):
            if len(idx) < 2:  # BatchNorm needs > 1 sample per batch in training mode
                continue
            xb, yb = x_all[idx].to(device), y_all[idx].to(device)
            _, logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(dim=1) == yb).sum())
            seen += len(idx)
        history.append((epoch, total_loss / max(seen, 1), correct / max(seen, 1)))
    model.eval()
    model.history = history
    model.name = (f"domain_cnn[{channels}ch,{num_classes}cls,d{feature_dim},{epochs}ep,seed{seed}]"
                  f"#{_state_fingerprint(model.state_dict())}")
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


def extract_features(extractor: nn.Module, images_or_loader: Any, *, batch_size: int = 64,
                     device: str | torch.device | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Run an extractor over images in eval mode without gradients.

    Args:
        extractor: from ``get_extractor`` / ``train_domain_cnn`` / ``finetune_inception_v3``.
        images_or_loader: (N, C, H, W) array/tensor in [-1, 1], or an iterable of such batches
            (tuples/lists: first element; dicts: the 'image' key).
        batch_size: used for arrays only; device: default the extractor's device.

    Returns:
        (features (N, D) float32, softmax probabilities (N, classes) float64 or None).
    """
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
