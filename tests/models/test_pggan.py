"""PGGAN networks: shapes at every growth state, fade-in identities, paper sizes, the PGGAN-specific layers."""

import math

import pytest
import torch
import torch.nn.functional as F

from medgan.models.pggan import (Discriminator, EqualizedConv2d, EqualizedLinear, Generator, MinibatchStdDev,
                                 PGGANConfig, PixelNorm, build_pggan, count_parameters, full_resolution,
                                 pggan_channels)


def small(resolution=16, channels=1, z_dim=8):
    return build_pggan(PGGANConfig(resolution=resolution, channels=channels, z_dim=z_dim, width=1 / 64))


def test_channel_schedule_matches_paper():
    # Karras et al. Table 2: 512 maps up to 32 px, then 256, 128, 64, 32, 16 at 1024.
    assert [pggan_channels(4 * 2 ** d) for d in range(9)] == [512, 512, 512, 512, 256, 128, 64, 32, 16]
    assert pggan_channels(64, width=0.25) == 64


def test_parameter_counts_at_1024_match_paper():
    # Karras et al. (2018), Table 2: 23.1M parameters in the generator and in the discriminator.
    nets = build_pggan(PGGANConfig(resolution=1024, channels=3))
    assert round(count_parameters(nets["G"]) / 1e6, 1) == 23.1
    assert round(count_parameters(nets["D"]) / 1e6, 1) == 23.1


@pytest.mark.parametrize("channels", [1, 3, 5])
def test_shapes_at_every_depth_and_alpha(channels):
    nets = small(resolution=16, channels=channels)
    G, D = nets["G"], nets["D"]
    z = torch.randn(4, 8)
    for depth in range(3):
        for alpha in (0.0, 0.5, 1.0):
            G.set_growth(depth, alpha)
            D.set_growth(depth, alpha)
            x = G(z)
            assert x.shape == (4, channels, 4 * 2 ** depth, 4 * 2 ** depth)
            assert D(x).shape == (4,)


def test_bad_sizes_and_growth_are_rejected():
    with pytest.raises(ValueError, match="power of two"):
        Generator(resolution=48)
    G = small()["G"]
    with pytest.raises(ValueError, match="depth"):
        G.set_growth(5)
    with pytest.raises(ValueError, match=r"z must be"):
        G(torch.randn(2, 3))


def test_fade_in_at_alpha_zero_is_the_previous_resolution():
    torch.manual_seed(0)
    nets = small(resolution=16)
    G, D = nets["G"], nets["D"]
    z = torch.randn(4, 8)
    G.set_growth(1, 1.0)
    previous = G(z)
    G.set_growth(2, 0.0)
    torch.testing.assert_close(G(z), F.interpolate(previous, scale_factor=2, mode="nearest"))
    x = torch.randn(4, 1, 16, 16)
    D.set_growth(1, 1.0)
    low = D(F.avg_pool2d(x, 2))
    D.set_growth(2, 0.0)
    torch.testing.assert_close(D(x), low)


def test_equalized_layers_scale_at_runtime():
    layer = EqualizedConv2d(16, 8, 3)
    assert abs(layer.weight.std().item() - 1.0) < 0.1  # stored weights N(0, 1)
    assert layer.scale == pytest.approx(math.sqrt(2) / math.sqrt(16 * 9))
    x = torch.randn(64, 16, 8, 8)
    # He scaling keeps the second moment of the pre-activation near gain^2 * E[x^2] = 2.
    assert 1.5 < layer(x).pow(2).mean().item() < 2.6
    lin = EqualizedLinear(32, 4, gain=1.0)
    torch.testing.assert_close(lin(torch.eye(32))[:, 0], lin.weight[0] / math.sqrt(32) + lin.bias[0])


def test_pixel_norm_gives_unit_mean_square():
    y = PixelNorm()(torch.randn(3, 7, 5, 5) * 4)
    torch.testing.assert_close(y.pow(2).mean(1), torch.ones(3, 5, 5), atol=1e-5, rtol=0)


def test_minibatch_stddev_matches_definition():
    torch.manual_seed(1)
    x = torch.randn(8, 3, 4, 4)
    y = MinibatchStdDev(group_size=4)(x)
    assert y.shape == (8, 4, 4, 4)
    # groups are samples {m, m+2, m+4, m+6} (official code's reshape [G, M, ...])
    for m in range(2):
        group = x[m::2]
        expected = (group.var(0, unbiased=False) + 1e-8).sqrt().mean()
        for i in range(m, 8, 2):
            torch.testing.assert_close(y[i, 3], torch.full((4, 4), expected.item()))
    same = MinibatchStdDev()(torch.ones(4, 2, 4, 4))
    assert same[:, 2].abs().max() < 1e-3  # identical samples: zero spread
    assert MinibatchStdDev(group_size=4)(torch.randn(6, 2, 4, 4)).shape == (6, 3, 4, 4)  # 6 % 4 != 0 -> groups of 3


def test_gradients_are_finite():
    nets = small(resolution=8)
    G, D = nets["G"], nets["D"]
    G.set_growth(1, 0.5)
    D.set_growth(1, 0.5)
    D(G(torch.randn(4, 8))).mean().backward()
    grads = [p.grad for p in list(G.parameters()) + list(D.parameters()) if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_full_resolution_generator_clamps_and_restores_state():
    G = small(resolution=16)["G"]
    G.set_growth(1, 0.3)
    full = full_resolution(G)
    x = full(torch.randn(5, 8) * 10)
    assert x.shape == (5, 1, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert int(G.depth) == 1 and float(G.alpha) == pytest.approx(0.3)


def test_growth_state_is_saved_with_the_weights():
    G = small()["G"]
    G.set_growth(1, 0.25)
    other = small()["G"]
    other.load_state_dict(G.state_dict())
    assert other.current_resolution == 8 and float(other.alpha) == pytest.approx(0.25)


def test_critic_hidden_features_see_each_image_alone():
    from medgan.models.pggan import CriticFeatures

    D = small(resolution=16)["D"]
    D.set_growth(0, 1.0)  # CriticFeatures must grow it to full resolution itself
    features = CriticFeatures(D)
    x = torch.randn(4, 1, 16, 16)
    out = features(x)
    assert out.shape == (4, D.features[0] * 16) and D.current_resolution == 16
    # Unlike D(x) (minibatch stddev mixes the batch), an image's features do not depend on its companions.
    torch.testing.assert_close(features(x[:1]), out[:1])
    assert not torch.allclose(D(x)[:1], D(torch.cat([x[:1], 3 * x[1:]]))[:1])
