import pytest
import torch

from medgan import atomic
from medgan.models.classifiers import build_classifier, count_parameters


@pytest.mark.parametrize("arch, published", [("resnet18", 11_689_512), ("resnet34", 21_797_672),
                                             ("resnet50", 25_557_032)])
def test_parameter_count_matches_torchvision_imagenet_configuration(arch, published):
    # torchvision's published counts are for 3 channels and 1000 classes.
    net = build_classifier(arch, in_channels=3, num_outputs=1000, head="softmax")
    assert count_parameters(net) == published


def test_resnet50_one_channel_sigmoid_paper_configuration():
    net = build_classifier("resnet50", in_channels=1, num_outputs=1, head="sigmoid")
    # conv1 loses 2 of 3 input planes (2*64*7*7), fc keeps 2048 weights + 1 bias of 1000.
    assert count_parameters(net) == 25_557_032 - 2 * 64 * 49 - 999 * 2049
    probs = net.eval().predict_proba(torch.randn(2, 1, 64, 64))
    assert probs.shape == (2, 1) and ((probs >= 0) & (probs <= 1)).all()


@pytest.mark.parametrize("channels, outputs, head", [(1, 1, "sigmoid"), (5, 4, "softmax"), (1, 6, "sigmoid")])
def test_small_resnet_shapes_heads_and_finite_gradients(channels, outputs, head):
    torch.manual_seed(0)
    net = build_classifier("small_resnet", in_channels=channels, num_outputs=outputs, head=head, width=8)
    x = torch.randn(3, channels, 32, 32)
    logits = net(x)
    assert logits.shape == (3, outputs)
    probs = net.probabilities(logits)
    if head == "softmax":
        torch.testing.assert_close(probs.sum(1), torch.ones(3))
    logits.sum().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert net.target_layer is net.backbone.layer4


def test_small_resnet_width_scales_parameters():
    n8 = count_parameters(build_classifier("small_resnet", width=8))
    n16 = count_parameters(build_classifier("small_resnet", width=16))
    assert 3.5 < n16 / n8 < 4.1  # conv weights grow with width squared


def test_bad_arguments_fail_loudly(tmp_path):
    with pytest.raises(ValueError, match="unknown classifier architecture"):
        build_classifier("vgg16")
    with pytest.raises(ValueError, match="softmax head needs"):
        build_classifier("small_resnet", num_outputs=1, head="softmax")
    with pytest.raises(ValueError, match="expected images"):
        build_classifier("small_resnet", in_channels=1)(torch.zeros(1, 3, 32, 32))
    wrong = tmp_path / "wrong.pt"
    atomic.torch_save(build_classifier("small_resnet", num_outputs=2).state_dict(), wrong)
    with pytest.raises(ValueError, match="wrong.pt"):
        build_classifier("small_resnet", num_outputs=3, weights_path=wrong)


def test_local_weights_round_trip(tmp_path):
    net = build_classifier("small_resnet", width=8, num_outputs=2)
    path = tmp_path / "w.pt"
    atomic.torch_save(net.state_dict(), path)
    again = build_classifier("small_resnet", width=8, num_outputs=2, weights_path=path)
    x = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(net.eval()(x), again.eval()(x))
