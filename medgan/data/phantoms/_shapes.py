"""Small procedural-shape helpers shared by the phantom generators (numpy only)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def grid2d(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) coordinate grids in [-1, 1] for a size x size image."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    return np.meshgrid(coords, coords, indexing="ij")


def ellipse(y, x, cy, cx, ry, rx, angle=0.0) -> np.ndarray:
    """Boolean mask of an ellipse (centre, radii, rotation in radians) on grids y, x."""
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = y - cy, x - cx
    u, v = dx * c + dy * s, -dx * s + dy * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def ellipse_level(y, x, cy, cx, ry, rx, angle=0.0) -> np.ndarray:
    """Normalised radius (<=1 inside) of an ellipse, for soft edges and shells."""
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = y - cy, x - cx
    u, v = dx * c + dy * s, -dx * s + dy * c
    return np.sqrt((u / rx) ** 2 + (v / ry) ** 2)


def smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return field / (field.std() + 1e-8)


def lobulated_blob(grids, centre, radius, rng: np.random.Generator, *, lobulation=0.25, n_lobes=5,
                   spiculation=0.0) -> np.ndarray:
    """Boolean mask of a lobulated (optionally spiculated) blob in 2D or 3D.

    ``grids`` are coordinate arrays in physical units; ``radius`` in the same units. The radius
    is modulated by random harmonics of the direction (lobulation) and thin high-frequency
    spikes (spiculation), so shape varies per draw.
    """
    deltas = [g - c for g, c in zip(grids, centre)]
    distance = np.sqrt(sum(d ** 2 for d in deltas)) + 1e-6
    directions = [d / distance for d in deltas]
    modulation = np.ones_like(distance)
    for _ in range(n_lobes):
        w = rng.standard_normal(len(grids))
        w /= np.linalg.norm(w)
        phase = rng.uniform(0, 2 * np.pi)
        freq = rng.integers(1, 4)
        modulation += lobulation / n_lobes * 2 * np.cos(freq * np.pi * sum(wi * di for wi, di in zip(w, directions)) + phase)
    if spiculation > 0:
        for _ in range(12):
            w = rng.standard_normal(len(grids))
            w /= np.linalg.norm(w)
            alignment = sum(wi * di for wi, di in zip(w, directions))
            modulation += spiculation * np.clip(alignment, 0, 1) ** 40 * 1.5
    return distance <= radius * modulation


def segment_distance(points, a, b) -> np.ndarray:
    """Distance from points (tuple of coordinate arrays) to the segment a-b."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    ab = b - a
    denom = float(np.dot(ab, ab)) + 1e-9
    t = sum((p - ai) * abi for p, ai, abi in zip(points, a, ab)) / denom
    t = np.clip(t, 0, 1)
    return np.sqrt(sum((p - (ai + t * abi)) ** 2 for p, ai, abi in zip(points, a, ab)))
