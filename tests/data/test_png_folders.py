"""read_png: every PNG mode decoded to intensities (palette through its palette, never indices),
or refused naming the file and the mode."""

import numpy as np
import pytest
from PIL import Image

from medgan.data.base import DataError
from medgan.data.png_folders import UnsupportedImageError, read_png, write_png

RNG = np.random.default_rng(0)
LEVELS = RNG.integers(0, 256, (12, 10)).astype(np.uint8)


def _palette_image(levels, palette_rgb):
    """A P-mode image whose *decoded* colours are palette_rgb[indices]; indices != levels."""
    indices = (255 - levels).astype(np.uint8)  # index i shows palette entry i
    image = Image.fromarray(indices).convert("P")  # L -> P keeps the values as indices
    image.putpalette(np.asarray(palette_rgb, np.uint8).reshape(-1).tolist())
    return image, indices


def test_gray_palette_is_decoded_through_the_palette(tmp_path):
    gray = np.arange(256)[::-1]  # entry i = 255 - i, so decoded = levels, indices = 255 - levels
    image, indices = _palette_image(LEVELS, np.stack([gray] * 3, 1))
    path = tmp_path / "p.png"
    image.save(path)
    assert Image.open(path).mode == "P"
    for grayscale in (True, False):
        out = read_png(path, grayscale=grayscale)
        assert out.dtype == np.uint8 and out.shape == LEVELS.shape
        np.testing.assert_array_equal(out, LEVELS)
        assert not np.array_equal(out, indices)


def test_colour_palette_gives_luminance_or_rgb(tmp_path):
    palette = RNG.integers(0, 256, (256, 3))
    image, indices = _palette_image(LEVELS, palette)
    path = tmp_path / "c.png"
    image.save(path)
    rgb = palette[indices].astype(np.uint8)
    np.testing.assert_array_equal(read_png(path, grayscale=False), rgb)
    np.testing.assert_array_equal(read_png(path), np.array(Image.fromarray(rgb).convert("L")))


def test_palette_with_transparent_pixels_is_refused(tmp_path):
    gray = np.arange(256)[::-1]
    image, indices = _palette_image(LEVELS, np.stack([gray] * 3, 1))
    path = tmp_path / "t.png"
    image.save(path, transparency=int(indices[0, 0]))  # one palette entry is see-through
    with pytest.raises(UnsupportedImageError, match=r"t.png: image mode 'P' has \d+ transparent pixel"):
        read_png(path)


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_alpha_dropped_only_when_opaque(tmp_path, mode):
    channels = [LEVELS] * (1 if mode == "LA" else 3)
    alpha = np.full(LEVELS.shape, 255, np.uint8)
    path = tmp_path / f"{mode}.png"
    Image.fromarray(np.stack([*channels, alpha], -1), mode).save(path)
    assert Image.open(path).mode == mode
    np.testing.assert_array_equal(read_png(path), LEVELS)
    alpha[3, 4] = 0
    Image.fromarray(np.stack([*channels, alpha], -1), mode).save(path)
    with pytest.raises(UnsupportedImageError, match=rf"{mode}.png: image mode '{mode}' has 1 transparent pixel"):
        read_png(path)


def test_16_bit_and_bilevel(tmp_path):
    values = RNG.integers(0, 65536, (9, 7)).astype(np.uint16)
    path = write_png(tmp_path / "16.png", values)
    assert Image.open(path).mode.startswith("I")
    out = read_png(path)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, values)
    bits = LEVELS > 127
    Image.fromarray(bits).save(tmp_path / "1.png")
    assert Image.open(tmp_path / "1.png").mode == "1"
    np.testing.assert_array_equal(read_png(tmp_path / "1.png"), bits.astype(np.uint8) * 255)


def test_unsupported_mode_names_file_and_mode(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8), (0, 10, 20, 30)).save(path)
    with pytest.raises(UnsupportedImageError, match=r"cmyk.jpg: image mode 'CMYK' not supported"):
        read_png(path)
    assert issubclass(UnsupportedImageError, DataError)
