"""A toy image set for the quickstart: bright discs and squares on a dark background.

Made in memory from a seed (no files): the smallest thing a GAN can visibly learn in a minute
on a CPU, so the quickstart can show the engine rather than a dataset.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class ToyShapes(Dataset):
    """``n`` single-channel images (1, size, size) in [-1, 1]; label 0 = disc, 1 = square.

    Args:
        n: number of images.
        size: side in pixels.
        seed: makes the set reproducible.
    """

    def __init__(self, n: int = 512, *, size: int = 32, seed: int = 0):
        self._fingerprint = f"toy_shapes(n={n}, size={size}, seed={seed})"
        g = torch.Generator().manual_seed(seed)
        yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                                indexing="ij")
        centre = torch.rand(n, 2, generator=g) * size * 0.5 + size * 0.25
        radius = torch.rand(n, generator=g) * size * 0.15 + size * 0.12
        self.labels = (torch.rand(n, generator=g) < 0.5).long()
        dy = (yy - centre[:, 0, None, None]).abs()
        dx = (xx - centre[:, 1, None, None]).abs()
        r = radius[:, None, None]
        disc = (dy**2 + dx**2 <= r**2).float()
        square = ((dy <= r * 0.85) & (dx <= r * 0.85)).float()
        shapes = torch.where(self.labels[:, None, None].bool(), square, disc)
        brightness = torch.rand(n, 1, 1, generator=g) * 0.4 + 0.6
        self.images = (shapes * brightness * 2 - 1).unsqueeze(1)

    def __len__(self) -> int:
        return len(self.images)

    def fingerprint(self) -> str:
        """The set is a function of its arguments (the engine's dataset identity)."""
        return self._fingerprint

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": int(self.labels[i]), "subject": f"toy{i:05d}",
                "meta": {"shape": "square" if self.labels[i] else "disc"}}
