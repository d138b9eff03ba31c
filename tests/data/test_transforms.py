import numpy as np
import pytest

from medgan.data.transforms import center_crop, center_crop_or_pad, nearest_resize, resize, window, window_hu


def test_window_hu_maps_the_window_to_minus_one_one():
    hu = np.array([-2000, -1350, -600, 150, 3000], np.float32)
    out = window_hu(hu, center_hu=-600, width_hu=1500)
    np.testing.assert_allclose(out, [-1, -1, 0, 1, 1], atol=1e-6)
    with pytest.raises(ValueError):
        window(hu, low=1, high=1)


def test_crop_pad_and_resize():
    image = np.arange(36, dtype=np.float32).reshape(6, 6)
    np.testing.assert_array_equal(center_crop(image, 2), [[14, 15], [20, 21]])
    padded = center_crop_or_pad(image[:4], 6, fill=-1)
    assert padded.shape == (6, 6) and padded[0, 0] == -1 and padded[1, 0] == 0
    assert center_crop_or_pad(np.zeros((10, 4)), 6).shape == (6, 6)
    # area resize of a 2x2-block image halves exactly
    block = np.kron(np.array([[1, 2], [3, 4]], np.float32), np.ones((2, 2), np.float32))
    np.testing.assert_allclose(resize(block, 2), [[1, 2], [3, 4]])
    mask = np.zeros((8, 8), np.float32)
    mask[2:6, 2:6] = 1
    assert set(np.unique(nearest_resize(mask, 4))) <= {0.0, 1.0}
