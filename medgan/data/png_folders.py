"""PNG images in folders (8- or 16-bit), read with Pillow; palette and alpha images decoded
explicitly (never palette indices as intensities)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from medgan import atomic
from medgan.data.base import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def list_images(folder: str | os.PathLike, *, suffixes=IMAGE_SUFFIXES) -> list[Path]:
    """Sorted image files directly in ``folder``; a missing or empty folder is a DataError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes and not p.name.startswith("."))
    if not files:
        raise DataError(f"{folder}: empty folder (no {'/'.join(suffixes)} images)")
    return files


# Modes decoded to intensities as stored; palette / alpha / colour modes are decoded below.
_GRAY_MODES = ("L", "I;16", "I;16B", "I;16L", "I;16N")
_COLOUR_MODES = ("P", "PA", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX", "1")


class UnsupportedImageError(DataError):
    """An image whose mode has no defined grayscale intensity (e.g. CMYK, float, transparent pixels)."""


def read_png(path: str | os.PathLike, *, grayscale: bool = True) -> np.ndarray:
    """Read an image as uint8/uint16 intensities.

    ``grayscale=True``: (H, W). ``grayscale=False``: as stored, (H, W) for one channel or
    (H, W, 3) for colour. Palette images (``P``) are decoded through their palette (never the
    indices); a gray palette, and ``LA``, give (H, W) levels; colour is converted with ITU-R 601
    luminance when ``grayscale``. An alpha channel is dropped only when every pixel is opaque;
    transparent pixels have no intensity and raise :class:`UnsupportedImageError`, as do modes
    other than L, I;16, I, 1, P, PA, LA, RGB, RGBA (naming the file and the mode). Unreadable or
    truncated files raise :class:`DataError`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with Image.open(path) as image:
            image.load()
            return _decode(image, path, grayscale=grayscale)
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: unreadable or truncated image ({type(exc).__name__}: {exc})") from exc


def _decode(image: Image.Image, path: Path, *, grayscale: bool) -> np.ndarray:
    mode = image.mode
    if mode in _GRAY_MODES:
        return np.array(image).astype(np.uint8 if mode == "L" else np.uint16, copy=False)
    if mode == "I":  # 32-bit integer: accept only what fits 16 bits (older Pillow's 16-bit PNGs)
        array = np.array(image)
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise UnsupportedImageError(f"{path}: image mode 'I' has values {array.min()}..{array.max()} "
                                        f"outside 0..65535 (16-bit)")
        return array.astype(np.uint16)
    if mode not in _COLOUR_MODES:
        raise UnsupportedImageError(f"{path}: image mode {mode!r} not supported "
                                    f"(expected L, I;16, I, 1, P, PA, LA, RGB or RGBA)")
    has_alpha = mode in ("PA", "LA", "La", "RGBA", "RGBa") or "transparency" in image.info
    rgba = np.array(image.convert("RGBA"))  # through the palette for P/PA; 1 -> 0/255
    if has_alpha:
        transparent = int(np.count_nonzero(rgba[..., 3] != 255))
        if transparent:
            raise UnsupportedImageError(f"{path}: image mode {mode!r} has {transparent} transparent pixel(s): "
                                        f"their intensity is undefined (export without alpha)")
    rgb = rgba[..., :3]
    # gray palettes, LA and 1 carry one channel; RGB stays colour unless grayscale is asked for
    one_channel = mode in ("LA", "La", "1") or (mode in ("P", "PA") and bool(
        np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2])))
    if one_channel:
        return np.ascontiguousarray(rgb[..., 0])
    if grayscale:
        return np.array(Image.fromarray(rgb, "RGB").convert("L"))
    return np.ascontiguousarray(rgb)


def write_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a uint8 (8-bit) or uint16 (16-bit) grayscale (H, W) or RGB (H, W, 3) PNG atomically."""
    array = np.asarray(array)
    if array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_png needs uint8 or uint16, got {array.dtype}")
    image = Image.fromarray(array)
    with atomic.atomic_path(path) as tmp:
        image.save(tmp, format="PNG", compress_level=1)
    return Path(path)
