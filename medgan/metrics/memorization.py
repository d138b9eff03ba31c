"""Does the generator copy its training images? A nearest-neighbour check in feature space.

Synthetic medical images are offered as privacy-preserving; that claim fails if generated
images sit on top of training images. For each generated sample we find its nearest training
sample, and compare that distance with two references from real images the generator never saw
(the held-out split):
  * ``ratio`` = d(gen, nearest train) / d(gen, nearest holdout). ≈1 or above when the generator
    is as close to unseen real data as to its training data; ≪1 for a copy. (With very different
    train and holdout sizes the expected value shifts; compare with ``holdout_ratio`` below.)
  * "looks copied": d(gen, nearest train) is below the ``quantile`` of the distances from
    real held-out images to their nearest training image — closer to a training image than all
    but that fraction of genuinely new real images get. A generator that copies nothing flags
    about ``quantile`` of its samples; ``excess_copy_rate`` = fraction_copied / quantile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medgan.metrics._arrays import as_features, same_dim
from medgan.metrics._neighbours import nearest_neighbours

__all__ = ["memorization", "MemorizationResult"]


@dataclass(frozen=True)
class MemorizationResult:
    nearest_train_index: np.ndarray       # (N_gen,) index of each generated sample's nearest training sample
    nearest_train_distance: np.ndarray    # (N_gen,) its Euclidean distance in feature space
    nearest_holdout_distance: np.ndarray  # (N_gen,) distance to the nearest held-out real sample
    ratio: np.ndarray                     # (N_gen,) nearest_train_distance / nearest_holdout_distance
    holdout_to_train_distance: np.ndarray  # (N_holdout,) each held-out image's distance to the train set
    threshold: float                      # the copy threshold (quantile of holdout_to_train_distance)
    quantile: float
    copied: np.ndarray                    # (N_gen,) bool, nearest_train_distance < threshold
    fraction_copied: float

    @property
    def median_ratio(self) -> float:
        return float(np.median(self.ratio))

    @property
    def excess_copy_rate(self) -> float:
        """fraction_copied / quantile: ≈1 for no memorisation, ≫1 when samples copy training images."""
        return self.fraction_copied / self.quantile


def memorization(train_feats: Any, gen_feats: Any, real_holdout_feats: Any, *, quantile: float = 0.01,
                 block_size: int | None = None) -> MemorizationResult:
    """Nearest-training-sample analysis of generated features.

    Args:
        train_feats: (N_train, D) features of the generator's training images.
        gen_feats: (N_gen, D) features of generated images.
        real_holdout_feats: (N_holdout, D) features of real images not used for training
            (same patients never in both — split by patient).
        quantile: fraction of held-out images allowed below the copy threshold (default 1%).
        block_size: rows per distance tile (memory bound); None chooses automatically.

    All distances are exact Euclidean distances (float64) in the extractor's feature space.
    """
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    train = as_features(train_feats, name="train_feats")
    gen = as_features(gen_feats, name="gen_feats", device=train.device)
    holdout = as_features(real_holdout_feats, name="real_holdout_feats", device=train.device)
    same_dim(train, gen, "train_feats", "gen_feats")
    same_dim(train, holdout, "train_feats", "real_holdout_feats")
    centre = train.to(torch.float64).mean(dim=0)
    train_index, train_dist = nearest_neighbours(gen, train, centre=centre, block_size=block_size)
    _, holdout_dist = nearest_neighbours(gen, holdout, centre=centre, block_size=block_size)
    _, reference = nearest_neighbours(holdout, train, centre=centre, block_size=block_size)
    train_dist_np, holdout_dist_np = train_dist.cpu().numpy(), holdout_dist.cpu().numpy()
    reference_np = reference.cpu().numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(holdout_dist_np > 0, train_dist_np / holdout_dist_np,
                         np.where(train_dist_np > 0, np.inf, 1.0))
    threshold = float(np.quantile(reference_np, quantile))
    # A zero distance is a copy whatever the threshold (which is 0 if holdout duplicates train).
    copied = (train_dist_np < threshold) | (train_dist_np == 0)
    return MemorizationResult(
        nearest_train_index=train_index.cpu().numpy(),
        nearest_train_distance=train_dist_np,
        nearest_holdout_distance=holdout_dist_np,
        ratio=ratio,
        holdout_to_train_distance=reference_np,
        threshold=threshold,
        quantile=quantile,
        copied=copied,
        fraction_copied=float(copied.mean()),
    )
