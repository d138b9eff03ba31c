"""PNG images in folders (8- or 16-bit), read with Pillow."""

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


def read_png(path: str | os.PathLike, *, grayscale: bool = True) -> np.ndarray:
    """Read an image as uint8/uint16 (H, W) (``grayscale``; RGB/RGBA converted with luminance)
    or as stored (H, W[, C]). Unreadable or truncated files raise :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with Image.open(path) as image:
            image.load()
            if grayscale and image.mode not in ("L", "I;16", "I", "I;16B"):
                image = image.convert("L")
            array = np.array(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: unreadable or truncated image ({type(exc).__name__}: {exc})") from exc
    if array.dtype == np.int32:  # Pillow's "I" mode for 16-bit PNGs
        array = array.astype(np.uint16)
    return array


def write_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a uint8 (8-bit) or uint16 (16-bit) grayscale (H, W) or RGB (H, W, 3) PNG atomically."""
    array = np.asarray(array)
    if array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_png needs uint8 or uint16, got {array.dtype}")
    image = Image.fromarray(array)
    with atomic.atomic_path(path) as tmp:
        image.save(tmp, format="PNG", compress_level=1)
    return Path(path)
