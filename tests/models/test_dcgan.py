"""DCGAN networks: shapes, the PyTorch example's parameter counts, the study's extra 128 px block."""

import pytest
import torch

from medgan.models.dcgan import DCGANConfig, DCGANDiscriminator, DCGANGenerator, build_dcgan, count_parameters


def test_parameter_counts_match_pytorch_example():
    # The PyTorch DCGAN example (64 px, RGB, nz=100, ngf=ndf=64) prints 3,576,704 and 2,765,568.
    nets = build_dcgan(DCGANConfig(image_size=64, channels=3, z_dim=100, g_width=64, d_width=64))
    assert count_parameters(nets["G"]) == 3_576_704
    assert count_parameters(nets["D"]) == 2_765_568


def test_128px_adds_one_block():
    g64 = DCGANGenerator(image_size=64, channels=1)
    g128 = DCGANGenerator(image_size=128, channels=1)
    n_convt = lambda g: sum(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules())  # noqa: E731
    assert n_convt(g128) == n_convt(g64) + 1
    d128 = DCGANDiscriminator(image_size=128)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in d128.modules()) == 6


@pytest.mark.parametrize("size,channels", [(16, 1), (32, 3), (128, 1)])
def test_shapes_and_range(size, channels):
    nets = build_dcgan(DCGANConfig(image_size=size, channels=channels, z_dim=10, g_width=4, d_width=4))
    x = nets["G"](torch.randn(3, 10) * 5)
    assert x.shape == (3, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1
    assert nets["D"](x).shape == (3,)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="power of two"):
        DCGANGenerator(image_size=96)
    d = DCGANDiscriminator(image_size=16, width=4)
    with pytest.raises(ValueError, match="16px"):
        d(torch.randn(2, 1, 32, 32))


def test_gradients_finite():
    nets = build_dcgan(DCGANConfig(image_size=16, z_dim=8, g_width=4, d_width=4))
    nets["D"](nets["G"](torch.randn(4, 8))).mean().backward()
    assert all(torch.isfinite(p.grad).all() for n in nets.values() for p in n.parameters())
