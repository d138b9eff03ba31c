"""StarGAN v2 networks: shapes for 5 stains, a style code per domain, published parameter counts."""

import pytest
import torch

from medgan.models.stargan_v2 import (AdaIN, Discriminator, Generator, MappingNetwork, StarGANv2Config, StyleEncoder,
                                      build_stargan_v2, count_parameters)

SMALL = dict(image_size=16, channels=5, num_domains=4, latent_dim=16, style_dim=8, mapping_hidden=32,
             base_width=8, max_width=16, n_down=1)


def test_shapes_for_five_stains():
    torch.manual_seed(0)
    nets = build_stargan_v2(StarGANv2Config(**SMALL))
    x, y, z = torch.randn(3, 5, 16, 16), torch.tensor([0, 2, 3]), torch.randn(3, 16)
    s = nets["mapping_network"](z, y)
    assert s.shape == (3, 8)
    assert nets["style_encoder"](x, y).shape == (3, 8)
    assert nets["generator"](x, s).shape == (3, 5, 16, 16)
    assert nets["discriminator"](x, y).shape == (3,)
    assert nets["discriminator"].forward_all(x).shape == (3, 4)


def test_one_style_code_per_domain():
    torch.manual_seed(0)
    net = MappingNetwork(latent_dim=16, style_dim=8, num_domains=4, hidden=32)
    z = torch.randn(2, 16)
    every = net.forward_all(z)
    assert every.shape == (2, 4, 8)
    for k in range(4):  # the domain label picks that domain's head
        torch.testing.assert_close(net(z, torch.full((2,), k)), every[:, k])
    assert not torch.allclose(every[:, 0], every[:, 1])
    enc = StyleEncoder(image_size=16, channels=5, style_dim=8, num_domains=4, base_width=8, max_width=16)
    x = torch.randn(2, 5, 16, 16)
    torch.testing.assert_close(enc(x, torch.tensor([3, 1])), enc.forward_all(x)[[0, 1], [3, 1]])
    with pytest.raises(ValueError, match="out of range"):
        net(z, torch.tensor([0, 4]))


def test_style_changes_the_output_and_adain_is_identity_at_zero():
    torch.manual_seed(0)
    G = Generator(image_size=16, channels=5, style_dim=8, base_width=8, max_width=16, n_down=1)
    x = torch.randn(2, 5, 16, 16)
    assert not torch.allclose(G(x, torch.randn(2, 8)), G(x, torch.randn(2, 8)))
    ada = AdaIN(4, 3)
    torch.nn.init.zeros_(ada.fc.weight)
    torch.nn.init.zeros_(ada.fc.bias)
    feat = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(ada(feat, torch.randn(2, 4)), ada.norm(feat))


def test_parameter_counts_at_the_official_configuration():
    # clovaai/stargan-v2, 256 px, w_hpf = 0: generator 33,892,995 parameters (AFHQ/RGB).
    with torch.device("meta"):  # count without allocating 34 M weights
        assert count_parameters(Generator(image_size=256, channels=3, style_dim=64)) == 33_892_995
        five = count_parameters(Generator(image_size=256, channels=5))
    # mapping network: 4 shared 512-unit layers, per domain 3 x 512 + linear to 64 (by construction)
    shared = 16 * 512 + 512 + 3 * (512 * 512 + 512)
    head = 3 * (512 * 512 + 512) + 512 * 64 + 64
    for k in (2, 3, 4):
        with torch.device("meta"):
            assert count_parameters(MappingNetwork(latent_dim=16, style_dim=64, num_domains=k)) == shared + k * head
    # 5 input channels change only the first and last generator convolutions
    delta = five - 33_892_995
    assert delta == 2 * 64 * 9 + (2 * 64 + 2)


def test_bad_image_size():
    with pytest.raises(ValueError, match="power of two"):
        Generator(image_size=48)
    with pytest.raises(ValueError, match="n_down"):
        Generator(image_size=16, n_down=5)
    assert Discriminator(image_size=32, channels=5, num_domains=4, base_width=4, max_width=8)(
        torch.randn(1, 5, 32, 32), torch.tensor([1])).shape == (1,)
