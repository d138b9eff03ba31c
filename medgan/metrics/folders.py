"""Score two image sets on disk: a real folder against a synthetic one (``medgan score``).

The folders are read in batches (PNG, DICOM or NIfTI; see :mod:`medgan.data.image_files`),
reduced at once to features by one extractor, and scored with the same functions the studies
use. The real set's features are cached under the work directory, keyed by its files (path,
size, modification time) and the extractor's weights, so scoring several synthetic sets against
one real set extracts the real features once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgan.config import work_dir
from medgan.data.base import DataError
from medgan.data.image_files import Intensity, list_image_files, read_image_file
from medgan.data.item_store import file_identity
from medgan.metrics.features import WeightsNotFoundError, extract_features, get_extractor
from medgan.metrics.frechet import frechet_distance
from medgan.metrics.inception_score import inception_score
from medgan.metrics.kid import kernel_inception_distance
from medgan.metrics.manifold import density_coverage, improved_precision_recall
from medgan.metrics.prd import prd

METRICS = ("fid", "kid", "is", "prd", "pr", "dc")
EXTRACTORS = ("inception_v3", "domain_cnn")
WEIGHTS_HELP = {
    "inception_v3": "a local copy of torchvision's Inception-v3 ImageNet weights (inception_v3_google-0cc3c7bd.pth) "
                    "or pytorch-fid's pt_inception-2015-12-05-6726825d.pth",
    "domain_cnn": "a DomainCNN saved by medgan (a study's run folder holds one: domain_cnn/<key>/model.pt)",
}


@dataclass
class ImageFolder:
    """A folder of images, read as model values in [-1, 1], one size and channel count for all."""

    root: Path
    fmt: str
    files: list[Path]

    @classmethod
    def open(cls, root: str | os.PathLike, fmt: str | None = None) -> "ImageFolder":
        fmt, files = list_image_files(root, fmt)
        return cls(Path(root), fmt, files)

    def identity(self) -> str:
        return file_identity(self.root, self.files)

    def batches(self, batch_size: int, intensity: Intensity) -> Iterator[torch.Tensor]:
        shape, batch = None, []
        for path in self.files:
            try:
                images = read_image_file(path, self.fmt, intensity)
            except DataError:
                raise
            except Exception as exc:  # an undecodable file: name it, relative to the folder
                raise DataError(f"{path.relative_to(self.root)}: unreadable as {self.fmt} "
                                f"({type(exc).__name__}: {exc})") from exc
            for image in (images if self.fmt == "nifti" else images[None]):
                if shape is None:
                    shape = image.shape
                elif image.shape != shape:
                    raise DataError(f"{path.relative_to(self.root)}: image is {list(image.shape)} (channels, H, W), "
                                    f"the first image of {self.root.name} is {list(shape)}; every image must match")
                batch.append(torch.from_numpy(np.ascontiguousarray(image)))
                if len(batch) == batch_size:
                    yield torch.stack(batch)
                    batch = []
        if batch:
            yield torch.stack(batch)


def load_extractor(name: str, weights: str | os.PathLike | None) -> torch.nn.Module:
    if name not in EXTRACTORS:
        raise ValueError(f"--extractor must be one of {EXTRACTORS}, not {name!r}")
    if weights is None or not Path(weights).is_file():
        raise WeightsNotFoundError(f"{name} needs --weights PATH: {WEIGHTS_HELP[name]}"
                                   + (f" ({weights} not found)" if weights else ""))
    return get_extractor(name, weights_path=weights)


def score_folders(real: str | os.PathLike, fake: str | os.PathLike, *, metrics: Sequence[str] = ("fid",),
                  extractor: str = "inception_v3", weights: str | os.PathLike | None = None, n_boot: int = 0,
                  batch_size: int = 64, fmt: str | None = None, seed: int = 0,
                  cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Every requested metric of ``fake`` against ``real``, with bootstrap 95 % CIs when ``n_boot``.

    Returns ``{"metrics": {name: {"value", "ci_low", "ci_high"}}, "n_real", "n_fake", "extractor"}``.
    """
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(METRICS)}")
    net = load_extractor(extractor, weights)
    real_set, fake_set = ImageFolder.open(real, fmt), ImageFolder.open(fake, fmt)
    intensity = Intensity()
    cache_dir = Path(cache_dir) if cache_dir is not None else work_dir() / "feature-cache"
    real_f, real_p = extract_features(net, real_set.batches(batch_size, intensity), cache_dir=cache_dir,
                                      stream_identity=(f"folder:{real_set.identity()}", len(real_set.files)))
    fake_f, fake_p = extract_features(net, fake_set.batches(batch_size, intensity))
    if real_f.shape[1:] != fake_f.shape[1:]:
        raise DataError("the two folders give features of different sizes")
    scores = {name: _score(name, real_f, fake_f, fake_p, n_boot=n_boot, seed=seed) for name in metrics}
    return {"metrics": scores, "n_real": len(real_f), "n_fake": len(fake_f),
            "extractor": getattr(net, "name", extractor)}


def _score(name: str, real: np.ndarray, fake: np.ndarray, fake_probs: np.ndarray | None, *, n_boot: int,
           seed: int) -> dict[str, Any]:
    if name == "is":
        if fake_probs is None:
            raise ValueError("IS needs class probabilities: use --extractor inception_v3")
        value, sd = inception_score(fake_probs)
        return {"value": float(value), "sd": float(sd)}
    functions = {
        "fid": lambda r, f: frechet_distance(r, f),
        "kid": lambda r, f: kernel_inception_distance(r, f, subset_size=min(1000, len(r), len(f)))[0],
        "prd": lambda r, f: _prd_f8(r, f, seed),
        "pr": lambda r, f: improved_precision_recall(r, f),
        "dc": lambda r, f: density_coverage(r, f),
    }
    value = functions[name](real, fake)
    result: dict[str, Any] = ({"value": float(value)} if np.isscalar(value) else
                              dict(zip(("precision", "recall") if name == "pr" else
                                       ("density", "coverage") if name == "dc" else ("F8", "F1/8"),
                                       map(float, value))))
    if n_boot and np.isscalar(value):
        low, high = two_sample_bootstrap(functions[name], real, fake, n_boot=n_boot, seed=seed)
        result.update(ci_low=low, ci_high=high)
    return result


def two_sample_bootstrap(metric, real: np.ndarray, fake: np.ndarray, *, n_boot: int, seed: int = 0,
                         alpha: float = 0.05) -> tuple[float, float]:
    """Percentile CI of ``metric(real, fake)``, resampling each set on its own (they are independent
    samples of two distributions, of different sizes)."""
    rng = np.random.default_rng(seed)
    values = [float(metric(real[rng.integers(0, len(real), len(real))], fake[rng.integers(0, len(fake), len(fake))]))
              for _ in range(n_boot)]
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _prd_f8(real: np.ndarray, fake: np.ndarray, seed: int) -> tuple[float, float]:
    return prd(real, fake, seed=seed).max_f_beta(8)
