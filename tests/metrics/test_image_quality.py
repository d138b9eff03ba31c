import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torchmetrics.functional.image import peak_signal_noise_ratio as tm_psnr
from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

from medgan.metrics import psnr, ssim


def _pair(shape, seed=0, hu=False):
    rng = np.random.default_rng(seed)
    target = rng.random(shape)
    pred = np.clip(target + rng.normal(0, 0.1, shape), 0, 1)
    if hu:  # a CT window [-1000, 400] HU
        return pred * 1400 - 1000, target * 1400 - 1000
    return pred, target


WANG = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


@pytest.mark.parametrize("shape", [(40, 52), (18, 22, 26)])
def test_ssim_matches_skimage_2d_and_3d(shape):
    pred, target = _pair(shape, hu=True)
    assert ssim(pred, target, data_range=1400) == pytest.approx(
        structural_similarity(pred, target, data_range=1400, **WANG), rel=1e-10)


def test_ssim_matches_torchmetrics_on_the_same_valid_region():
    # torchmetrics reflect-pads and averages the full map; crop its map to where the 11-tap
    # window fits (what scikit-image and we average) to compare like with like.
    pred, target = _pair((2, 1, 40, 44), seed=1)
    _, full_map = tm_ssim(torch.tensor(pred), torch.tensor(target), data_range=1.0, return_full_image=True)
    expected = full_map[..., 5:-5, 5:-5].reshape(2, -1).mean(1).numpy()
    np.testing.assert_allclose(ssim(pred, target, data_range=1.0, reduction="none"), expected, rtol=1e-9)


def test_psnr_matches_references_and_batches():
    pred, target = _pair((3, 1, 20, 20), seed=2, hu=True)
    per_image = psnr(pred, target, data_range=1400, reduction="none")
    for i in range(3):
        assert per_image[i] == pytest.approx(peak_signal_noise_ratio(target[i, 0], pred[i, 0], data_range=1400))
    assert psnr(pred, target, data_range=1400) == pytest.approx(per_image.mean())
    ref = tm_psnr(torch.tensor(pred), torch.tensor(target), data_range=1400.0, reduction="none", dim=(1, 2, 3))
    np.testing.assert_allclose(per_image, ref.numpy(), rtol=1e-6)  # torchmetrics keeps data_range in float32
    vol_pred, vol_target = _pair((12, 14, 16), seed=3)
    assert psnr(vol_pred, vol_target, data_range=1.0) == pytest.approx(
        peak_signal_noise_ratio(vol_target, vol_pred, data_range=1.0))


def test_identical_and_range_required():
    x = _pair((16, 16))[0]
    assert ssim(x, x, data_range=1.0) == pytest.approx(1.0)
    assert psnr(x, x, data_range=1.0) == float("inf")
    with pytest.raises(ValueError, match="data_range"):
        psnr(x, x, data_range=0)
    with pytest.raises(ValueError, match="shape"):
        ssim(x, x[:8], data_range=1.0)
