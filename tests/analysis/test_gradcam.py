"""Grad-CAM on toy networks whose evidence location is known, and against CAM (Zhou et al. 2016)."""

import pytest
import torch
from torch import nn

from medgan.analysis.gradcam import grad_cam, resolve_layer
from medgan.models.classifiers import build_classifier


class GapNet(nn.Module):
    """conv (identity per channel) -> ReLU -> global average pool -> linear: class k reads channel k."""

    def __init__(self, channels: int = 2):
        super().__init__()
        self.features = nn.Conv2d(channels, channels, 1, bias=False)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(channels)[:, :, None, None])
        self.fc = nn.Linear(channels, channels, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(channels) * 2 - 0.5)

    def forward(self, x):
        return self.fc(torch.relu(self.features(x)).mean((2, 3)))


def _two_blobs(n=3, size=16):
    x = torch.zeros(n, 2, size, size)
    x[:, 0, 2:6, 2:6] = 1.0  # class-0 evidence top-left
    x[:, 1, 10:14, 10:14] = 1.0  # class-1 evidence bottom-right
    return x


def test_heat_map_finds_each_class_evidence():
    net, x = GapNet(), _two_blobs()
    cam0 = grad_cam(net, x, target_layer=net.features, classes=0)
    cam1 = grad_cam(net, x, target_layer="features", classes=[1, 1, 1])
    assert cam0.shape == (3, 16, 16) and cam0.dtype == torch.float32
    assert 0.0 <= cam0.min() and cam0.max() <= 1.0
    assert cam0[:, 2:6, 2:6].mean() > 0.9 and cam0[:, 10:14, 10:14].mean() < 0.1
    assert cam1[:, 10:14, 10:14].mean() > 0.9 and cam1[:, 2:6, 2:6].mean() < 0.1


def test_equals_cam_for_gap_linear_networks():
    # For GAP + linear heads Grad-CAM reduces to CAM: ReLU(sum_k w_ck A_k), up to a positive scale.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 4))
    x = torch.randn(5, 3, 12, 12)
    cam = grad_cam(net, x, target_layer=net[1], classes=2, normalize=False)
    acts = torch.relu(net[0](x)).detach()
    ref = torch.relu((net[4].weight[2][None, :, None, None] * acts).sum(1)) / (12 * 12)
    torch.testing.assert_close(cam, ref, rtol=1e-4, atol=1e-6)


def test_default_class_and_layer_on_resnet_classifier():
    torch.manual_seed(0)
    clf = build_classifier("small_resnet", in_channels=5, num_outputs=4, head="softmax", width=4)
    assert resolve_layer(clf, None) is clf.target_layer
    clf.train()
    cam = grad_cam(clf, torch.randn(3, 5, 32, 32), batch_size=2)
    assert cam.shape == (3, 32, 32) and torch.isfinite(cam).all()
    assert clf.training  # mode restored


def test_bad_inputs_are_named():
    net = GapNet()
    with pytest.raises(ValueError, match="images must be"):
        grad_cam(net, torch.zeros(2, 16, 16))
    with pytest.raises(ValueError, match="no submodule"):
        grad_cam(net, _two_blobs(), target_layer="nope")
    with pytest.raises(ValueError, match="out of range"):
        grad_cam(net, _two_blobs(), classes=7)


def test_a_stream_of_batches_gives_the_maps_of_the_whole_tensor():
    """Batches from an iterator (a dataset read batch by batch) are explained one at a time, as if whole."""
    net, x = GapNet(), torch.cat([_two_blobs(3), _two_blobs(4).flip(-1)])
    classes = torch.tensor([0, 1, 0, 1, 0, 1, 1])
    whole = grad_cam(net, x, classes=classes, batch_size=64)
    seen = []

    def stream():
        for batch in torch.split(x, 2):
            seen.append(len(batch))
            yield {"image": batch} if len(seen) % 2 else batch  # item batches and plain tensors alike
    torch.testing.assert_close(grad_cam(net, stream(), classes=classes), whole)
    assert seen == [2, 2, 2, 1]
    with pytest.raises(ValueError, match="classes for 7 images"):
        grad_cam(net, iter(torch.split(x, 2)), classes=classes[:6].tolist() + [0, 1])
