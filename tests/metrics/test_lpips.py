import functools
from pathlib import Path

import lpips
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from medgan.atomic import torch_save
from medgan.metrics import LPIPSWeightsNotFoundError, domain_feature_distance, lpips_distance, lpips_diversity
from medgan.metrics.features import DomainCNN
from medgan.metrics.lpips_distance import LPIPS_BACKBONE_ENV


@pytest.fixture(scope="module")
def alexnet():
    """Random weights with the keys/shapes of torchvision's alexnet-owt-7be5be79.pth (none downloaded)."""
    torch.manual_seed(0)
    return torchvision.models.alexnet(weights=None).eval()


@pytest.fixture(scope="module")
def alexnet_path(alexnet, tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "alexnet-owt-7be5be79.pth"
    torch_save(alexnet.state_dict(), path)
    return path


def _reference_lpips(alexnet, x, y):
    """LPIPS v0.1 written out from the paper: scale, AlexNet ReLU1-5, unit-normalise channels,
    squared difference, the wheel's calibrated 1×1 weights, spatial mean, sum over layers."""
    lin = torch.load(Path(lpips.__file__).parent / "weights/v0.1/alex.pth", map_location="cpu", weights_only=True)
    shift = torch.tensor([-.030, -.088, -.188])[None, :, None, None]
    scale = torch.tensor([.458, .448, .450])[None, :, None, None]
    xs, ys = (x - shift) / scale, (y - shift) / scale
    total = torch.zeros(x.shape[0])
    layer = 0
    for index, module in enumerate(alexnet.features):
        xs, ys = module(xs), module(ys)
        if index in (1, 4, 7, 9, 11):  # ReLU outputs
            nx = xs / (xs.square().sum(1, keepdim=True).sqrt() + 1e-10)
            ny = ys / (ys.square().sum(1, keepdim=True).sqrt() + 1e-10)
            weighted = F.conv2d((nx - ny).square(), lin[f"lin{layer}.model.1.weight"])
            total += weighted.mean(dim=(1, 2, 3))
            layer += 1
    return total.numpy()


def test_lpips_matches_definition_with_local_backbone(alexnet, alexnet_path):
    torch.manual_seed(1)
    x, y = torch.rand(3, 3, 64, 64) * 2 - 1, torch.rand(3, 3, 64, 64) * 2 - 1
    got = lpips_distance(x, y, backbone_weights=alexnet_path, device="cpu")
    with torch.no_grad():
        expected = _reference_lpips(alexnet, x, y)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
    assert np.all(lpips_distance(x, x, backbone_weights=alexnet_path, device="cpu") < 1e-6)


def test_grey_images_repeated_and_env_var(alexnet_path, monkeypatch):
    monkeypatch.setenv(LPIPS_BACKBONE_ENV, str(alexnet_path))
    x, y = torch.rand(2, 1, 64, 64) * 2 - 1, torch.rand(2, 1, 64, 64) * 2 - 1
    np.testing.assert_allclose(lpips_distance(x, y, device="cpu"),
                               lpips_distance(x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1), device="cpu"))


def test_missing_backbone_message(monkeypatch, tmp_path):
    monkeypatch.delenv(LPIPS_BACKBONE_ENV, raising=False)
    with pytest.raises(LPIPSWeightsNotFoundError) as info:
        lpips_distance(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64))
    for needle in ("alexnet-owt-7be5be79.pth", LPIPS_BACKBONE_ENV, "domain_feature_distance"):
        assert needle in str(info.value)


def test_diversity_is_mean_over_all_pairs(alexnet_path):
    torch.manual_seed(2)
    outputs = torch.rand(4, 3, 64, 64) * 2 - 1
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    expected = np.mean([lpips_distance(outputs[i:i + 1], outputs[j:j + 1], backbone_weights=alexnet_path,
                                       device="cpu")[0] for i, j in pairs])
    got = lpips_diversity(outputs, backbone_weights=alexnet_path, device="cpu")
    assert got == pytest.approx(expected, rel=1e-5)
    assert lpips_diversity(outputs[None].expand(2, -1, -1, -1, -1), backbone_weights=alexnet_path,
                           device="cpu") == pytest.approx(got, rel=1e-6)
    assert lpips_diversity(outputs[:1].expand(3, -1, -1, -1), backbone_weights=alexnet_path,
                           device="cpu") == pytest.approx(0.0, abs=1e-6)  # identical outputs: no diversity


def test_domain_fallback_distance():
    torch.manual_seed(3)
    model = DomainCNN(in_channels=5, num_classes=3, feature_dim=16, width=8, num_blocks=3).eval()
    x, y = torch.rand(4, 5, 32, 32) * 2 - 1, torch.rand(4, 5, 32, 32) * 2 - 1
    d = domain_feature_distance(x, y, extractor=model)
    assert d.shape == (4,) and np.all(d > 0)
    np.testing.assert_allclose(d, domain_feature_distance(y, x, extractor=model), rtol=1e-6)
    assert np.all(domain_feature_distance(x, x, extractor=model) == 0)
    fn = functools.partial(domain_feature_distance, extractor=model)
    assert lpips_diversity(x, distance_fn=fn) > 0
