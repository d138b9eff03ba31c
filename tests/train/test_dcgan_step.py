"""DCGAN sampling: the inference-mode switch (``eval`` = running statistics; ``train`` = each batch's own
statistics, as pytorch/examples dcgan/main.py samples), deterministic in train mode however the scoring batches."""

import copy

import pytest
import torch

from medgan.analysis import generative_scores as gs
from medgan.models.dcgan import DCGANConfig
from medgan.train import dcgan as dcgan_training


def _generator(seed=0):
    config = DCGANConfig(image_size=16, channels=1, z_dim=8, g_width=8, d_width=8)
    return dcgan_training.untrained_generator(config, seed=seed)


def test_train_mode_samples_with_batch_statistics_and_leaves_the_model_unchanged():
    G = _generator()
    with torch.no_grad():  # give the running statistics values that differ from any batch's
        for m in G.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.fill_(0.3)
                m.running_var.fill_(2.0)
    before = copy.deepcopy(G.state_dict())
    z = torch.randn(6, 8, generator=torch.Generator().manual_seed(1))
    sampler = dcgan_training.sampling_generator(G, mode="train", statistics_batch_size=3)
    with torch.no_grad():
        out = sampler(z)
        reference = copy.deepcopy(G).train()(z)  # plain train mode: batch statistics
        eval_out = dcgan_training.sampling_generator(copy.deepcopy(G), mode="eval")(z)
    torch.testing.assert_close(out, reference)
    assert (out - eval_out).abs().max() > 1e-3  # the two modes differ
    for k, v in G.state_dict().items():  # running statistics and counters untouched
        torch.testing.assert_close(v, before[k])
    assert not G.training
    with pytest.raises(ValueError, match="inference_mode"):
        dcgan_training.sampling_generator(G, mode="test")


def test_train_mode_images_are_fixed_whatever_the_evaluation_batch():
    sampler = dcgan_training.sampling_generator(_generator(), mode="train", statistics_batch_size=4)
    a = gs.generate(sampler, n=10, z_dim=8, seed=5, batch_size=3)
    b = gs.generate(sampler, n=10, z_dim=8, seed=5, batch_size=7)
    torch.testing.assert_close(a, b)  # always batches of 4 (the last of 2)
    torch.testing.assert_close(gs.generate_at(sampler, [9, 1, 6], n=10, z_dim=8, seed=5, batch_size=2), a[[9, 1, 6]])
    # image 1 shares its statistics with images 0-3: another batching would change it
    z = gs._latents(10, 8, 5)
    with torch.no_grad():
        alone = sampler(z[1:3])
    assert (alone[0] - a[1]).abs().max() > 1e-4
    # and a trained-mode generator never shares feature-cache entries with its eval-mode self
    ev = dcgan_training.sampling_generator(_generator(), mode="eval")
    ident = lambda g: gs._generator_identity(g, z_dim=8, device=torch.device("cpu"))  # noqa: E731
    assert ident(sampler) != ident(ev)
    assert ident(sampler) != ident(dcgan_training.sampling_generator(_generator(), mode="train",
                                                                      statistics_batch_size=5))
