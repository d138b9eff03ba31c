"""Image classifiers: torchvision ResNet-18/34/50 and a small CPU-friendly ResNet.

Built without pretrained weights (nothing is downloaded); a local state-dict file may be
loaded with ``weights_path``. ``conv1`` is replaced so any number of input channels works
(1 for X-ray/CT, 5 for cell painting), and the final ``fc`` gives ``num_outputs`` logits.

The network returns **logits**; the head says how to turn them into probabilities:
``"sigmoid"`` (binary or multi-label, one independent probability per output) or
``"softmax"`` (one class out of ``num_outputs``). Train with
:func:`medgan.train.classifier.classification_loss`, which matches the head.

>>> net = build_classifier("resnet50", in_channels=1, num_outputs=1, head="sigmoid")
>>> net.predict_proba(torch.zeros(2, 1, 64, 64)).shape
torch.Size([2, 1])
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet

from medgan import atomic
from medgan.models.blocks import count_parameters  # noqa: F401  (re-exported)

__all__ = ["ARCHITECTURES", "HEADS", "Classifier", "build_classifier", "count_parameters", "small_resnet"]

ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "small_resnet")
HEADS = ("sigmoid", "softmax")


class Classifier(nn.Module):
    """A ResNet backbone with a ``num_outputs`` linear layer; ``forward`` returns logits (N, num_outputs).

    Attributes:
        backbone: the torchvision-style ResNet (``conv1``, ``bn1``, ``layer1..4``, ``fc``).
        head: ``"sigmoid"`` or ``"softmax"``.
        arch: the architecture name.
    """

    def __init__(self, backbone: nn.Module, *, head: str, arch: str, in_channels: int, num_outputs: int):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, not {head!r}")
        self.backbone = backbone
        self.head = head
        self.arch = arch
        self.in_channels = in_channels
        self.num_outputs = num_outputs

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, in_channels, H, W), any H, W >= 32, values in [-1, 1] -> logits (N, num_outputs)."""
        if images.ndim != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"{self.arch}: expected images (N, {self.in_channels}, H, W), got {tuple(images.shape)}")
        return self.backbone(images)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits -> probabilities in [0, 1] according to the head."""
        return torch.sigmoid(logits) if self.head == "sigmoid" else torch.softmax(logits, dim=1)

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """Probabilities (N, num_outputs) in [0, 1]; sigmoid outputs are independent, softmax sum to 1."""
        return self.probabilities(self(images))

    @property
    def target_layer(self) -> nn.Module:
        """The last convolutional stage (``layer4``): where Grad-CAM / class activation maps look."""
        return self.backbone.layer4


class _SmallResNet(tv_resnet.ResNet):
    """torchvision's ResNet with BasicBlocks, a base width and a stem without max-pool for small images.

    Widths per stage are (w, 2w, 4w, 8w); with ``width=64, blocks=(2, 2, 2, 2)`` and
    ``stem_stride=2, stem_pool=True`` it is exactly ResNet-18.
    """

    def __init__(self, *, width: int, blocks: Sequence[int], num_outputs: int, stem_stride: int, stem_pool: bool):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.conv1 = nn.Conv2d(3, width, kernel_size=7 if stem_stride == 2 else 3, stride=stem_stride,
                               padding=3 if stem_stride == 2 else 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem_pool else nn.Identity()
        self.layer1 = self._make_layer(tv_resnet.BasicBlock, width, blocks[0])
        self.layer2 = self._make_layer(tv_resnet.BasicBlock, width * 2, blocks[1], stride=2)
        self.layer3 = self._make_layer(tv_resnet.BasicBlock, width * 4, blocks[2], stride=2)
        self.layer4 = self._make_layer(tv_resnet.BasicBlock, width * 8, blocks[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8, num_outputs)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def small_resnet(*, width: int = 16, blocks: Sequence[int] = (1, 1, 1, 1), num_outputs: int = 1,
                 stem_stride: int = 1, stem_pool: bool = False) -> nn.Module:
    """A narrow ResNet for CPU runs on 32-128 px images (width 16, one block per stage: 0.31 M parameters)."""
    if stem_stride not in (1, 2):
        raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")
    if len(blocks) != 4:
        raise ValueError(f"blocks must list 4 stage depths, got {list(blocks)}")
    return _SmallResNet(width=width, blocks=blocks, num_outputs=num_outputs, stem_stride=stem_stride,
                        stem_pool=stem_pool)


def _replace_conv1(backbone: nn.Module, in_channels: int) -> None:
    old = backbone.conv1
    if in_channels == old.in_channels:
        return
    new = nn.Conv2d(in_channels, old.out_channels, kernel_size=old.kernel_size, stride=old.stride,
                    padding=old.padding, bias=old.bias is not None)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    backbone.conv1 = new


def build_classifier(arch: str = "resnet50", *, in_channels: int = 1, num_outputs: int = 1, head: str = "sigmoid",
                     width: int = 16, blocks: Sequence[int] = (1, 1, 1, 1), stem_stride: int = 2,
                     stem_pool: bool = False, weights_path: str | os.PathLike | None = None) -> Classifier:
    """Build a classifier with random weights (or weights from a local file).

    Args:
        arch: ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` (torchvision definitions) or
            ``"small_resnet"`` (BasicBlocks with stage widths ``width * (1, 2, 4, 8)``).
        in_channels: image channels; ``conv1`` is rebuilt when it differs from 3.
        num_outputs: logits per image (1 for normal/abnormal; K for K findings or K domains).
        head: ``"sigmoid"`` (binary / multi-label) or ``"softmax"`` (single label of K).
        width, blocks, stem_stride, stem_pool: ``small_resnet`` only — base width, blocks per stage,
            the stem (stride 1: a 3x3 conv; stride 2: ResNet's 7x7 conv) and whether the stem max-pools.
            Stride 2 without pool keeps a 2x2 (32 px) or 4x4 (64 px) map in ``layer4`` for Grad-CAM.
        weights_path: optional local ``state_dict`` of the whole :class:`Classifier` (e.g. saved from
            an earlier run), loaded with ``weights_only=True``. Nothing is ever downloaded.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown classifier architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")
    if in_channels < 1 or num_outputs < 1:
        raise ValueError(f"in_channels and num_outputs must be >= 1, got {in_channels} and {num_outputs}")
    if head == "softmax" and num_outputs < 2:
        raise ValueError("a softmax head needs num_outputs >= 2 (use head='sigmoid' for one output)")
    if arch == "small_resnet":
        backbone = small_resnet(width=width, blocks=blocks, num_outputs=num_outputs, stem_stride=stem_stride,
                                stem_pool=stem_pool)
    else:
        backbone = getattr(tv_resnet, arch)(weights=None, num_classes=num_outputs)
    _replace_conv1(backbone, in_channels)
    model = Classifier(backbone, head=head, arch=arch, in_channels=in_channels, num_outputs=num_outputs)
    if weights_path is not None:
        state = atomic.torch_load(weights_path)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"{weights_path}: weights do not fit {arch} with {in_channels} channels and "
                             f"{num_outputs} outputs ({exc})") from exc
    return model
