import pytest
import torch

from medgan.models.image_to_image import (PatchDiscriminator, UNetGenerator, count_parameters, define_discriminator,
                                          define_generator)

# Exact counts of junyanz/pytorch-CycleGAN-and-pix2pix at its defaults (ngf = ndf = 64, 3 -> 3 channels):
# instance norm without affine + conv biases (CycleGAN), batch norm affine without conv biases (Pix2pix).
STANDARD_COUNTS = {
    ("resnet_9blocks", "instance"): 11_378_179,   # "11.378 M", the paper's 11.4 M
    ("resnet_6blocks", "instance"): 7_837_699,
    ("unet_256", "instance"): 54_409_603,         # the paper's 54.4 M
    ("unet_256", "batch"): 54_413_955,            # "54.414 M" printed by the reference's Pix2pix
    ("unet_128", "batch"): 41_828_995,
}


@pytest.mark.parametrize("name,norm", sorted(STANDARD_COUNTS))
def test_generator_parameter_counts_match_reference(name, norm):
    with torch.device("meta"):  # counts only; no memory, no init cost
        net = define_generator(name, 3, 3, norm=norm, init_gain=None)
    assert count_parameters(net) == STANDARD_COUNTS[(name, norm)]


def test_patchgan_parameter_counts_match_reference():
    with torch.device("meta"):
        assert count_parameters(PatchDiscriminator(3, norm="instance")) == 2_764_737  # CycleGAN D, "2.765 M"
        assert count_parameters(PatchDiscriminator(6, norm="batch")) == 2_768_705     # Pix2pix D on (input, output)


@pytest.mark.parametrize("name,size", [("resnet_9blocks", 32), ("resnet_6blocks", 16), ("unet_256", 256),
                                       ("unet_128", 128), ("unet_32", 32)])
@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_generator_shapes_range_and_channels(name, size, norm):
    torch.manual_seed(0)
    net = define_generator(name, 1, 2, width=4, norm=norm)
    out = net(torch.randn(2, 1, size, size))
    assert out.shape == (2, 2, size, size)
    assert out.abs().max() <= 1.0


def test_patchgan_70px_output_grid_and_receptive_field():
    D = define_discriminator(2, width=4)
    assert D(torch.zeros(1, 2, 256, 256)).shape == (1, 1, 30, 30)
    # receptive field of one output patch is 70x70: perturbing a pixel outside it changes nothing
    # (batch norm in eval mode is local; instance norm would spread every gradient over the image)
    D = define_discriminator(2, width=4, norm="batch").eval()
    x = torch.randn(1, 2, 128, 128, requires_grad=True)
    D(x)[0, 0, 5, 5].backward()
    rows, cols = torch.nonzero(x.grad.abs().sum((0, 1)), as_tuple=True)
    assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70


def test_unet_skips_depth_and_dropout_placement():
    net = UNetGenerator(1, 1, num_downs=8, width=2, dropout=True)
    drops = [m for m in net.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(drops) == 3  # the reference: num_downs - 5 middle levels with 8*width channels
    with pytest.raises(ValueError, match="divisible by 256"):
        net(torch.zeros(1, 1, 128, 128))


def test_unknown_names_fail_loudly():
    for bad in ("resnet_9", "unet_100", "unet_2", "vit", "resnet_blocks"):
        with pytest.raises(ValueError, match="unknown generator"):
            define_generator(bad, 1, 1)
    with pytest.raises(ValueError, match="norm"):
        define_generator("unet_128", 1, 1, norm="layer")
    with pytest.raises(ValueError, match="in_channels"):
        define_generator("resnet_9blocks", 0, 1)


def test_gradients_are_finite():
    torch.manual_seed(0)
    G = define_generator("resnet_6blocks", 1, 1, width=4)
    D = define_discriminator(1, width=4)
    loss = D(G(torch.randn(2, 1, 32, 32))).square().mean()
    loss.backward()
    for net in (G, D):
        grads = [p.grad for p in net.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)


def test_init_is_reference_normal():
    torch.manual_seed(0)
    G = define_generator("resnet_9blocks", 3, 3, width=16)
    w = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(w.std().item() - 0.02) < 0.001
