"""Scores of a multi-domain image-to-image translator (StarGAN v2 and the like).

For every target domain k, every source image of another domain is translated ``n_styles``
times, latent-guided (styles from the mapping network, one z per output) or reference-guided
(styles from ``n_styles`` held-out reference images of k), following the StarGAN v2 evaluation
protocol. Per (mode, target):

- ``fid``: Fréchet distance between the features of all translations into k and the features
  of the real training images of k (the extractor's name is returned beside it);
- ``lpips``: mean pairwise distance between the ``n_styles`` outputs of one source (diversity),
  averaged over sources; ``lpips_<stain>`` the same restricted to one stain;
- ``accuracy``: fraction of translations a domain classifier trained on real images assigns to k;
- ``truth_l1`` / ``identity_l1`` (phantom only): mean absolute difference (in [-1, 1] units)
  between the translation and the same field rendered under condition k, and between the
  untranslated source and that render (the identity baseline).

Everything streams: the images are datasets read per chunk of sources (translations) or per
batch (real sets), and each chunk is reduced at once to features, distances and predictions, so
memory holds features and scores, never a set of images (nothing of size sources x domains x
styles, nor the training set). Everything here is pure: networks and datasets come in, tables
come out. With a ``cache_dir``, the features of the real sets are looked up in the feature cache
(:mod:`medgan.metrics.cache`), keyed by the dataset's fingerprint, so they are computed once per
extractor however many checkpoints and modes are scored.
"""

from __future__ import annotations

import copy
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from medgan.data.base import iter_batches
from medgan.metrics import frechet_distance, lpips_distance
from medgan.metrics.features import extract_features
from medgan.metrics.lpips_distance import LPIPS_BACKBONE_ENV, domain_feature_distance
from medgan.train.checkpoint import CheckpointIO
from medgan.train.fingerprint import digest, tensor_digest

__all__ = ["DistanceSpec", "EvalSet", "TensorImages", "checkpoint_steps", "evaluate_over_training",
           "load_checkpoint_nets", "make_distance", "make_eval_set", "read_items", "real_baselines",
           "score_translations", "snapshot_nets", "stream_features", "translate_examples"]

Distance = Callable[[torch.Tensor, torch.Tensor], np.ndarray]


class TensorImages(Dataset):
    """Images in memory (N, C, S, S), and optionally their truth renders (N, K, C, S, S), as a dataset
    of ``{"image", "truth"}`` items: small or synthetic sets in the form the scores stream from."""

    def __init__(self, images: torch.Tensor, truth: torch.Tensor | None = None):
        self.images, self.truth = torch.as_tensor(images), None if truth is None else torch.as_tensor(truth)
        if self.truth is not None and len(self.truth) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.truth)} truth renders")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], **({} if self.truth is None else {"truth": self.truth[i]})}

    def fingerprint(self) -> str:
        """Digest of the images and truth (the feature cache's identity of this set)."""
        if getattr(self, "_fingerprint", None) is None:  # the tensors never change: hash them once
            self._fingerprint = digest([tensor_digest(self.images),
                                        None if self.truth is None else tensor_digest(self.truth)])[:16]
        return self._fingerprint


def read_items(dataset: Dataset, indices: Sequence[int] | torch.Tensor, key: str = "image") -> torch.Tensor:
    """``key`` of the items at ``indices``, stacked: for the few images one chunk of work needs."""
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError("read_items: no indices")
    return next(iter_batches(dataset, key, batch_size=len(indices), indices=indices))


@dataclass
class EvalSet:
    """What an evaluation reads, as indices into two datasets of items with ``image`` (C, S, S) in
    [-1, 1]: the real training images and the held-out ones (other wells, subjects ...), whose
    items also hold ``truth`` (K, C, S, S), the same field rendered in every domain, when ``has_truth``.
    Images are read per chunk of work, so memory does not grow with either set.

    train_labels / heldout_labels: (N_train,) / (N_heldout,) domain of each item.
    source_index: held-out images to translate. real_index[k]: the training images of domain k
    (its FID reference set). reference_index[k]: held-out images of k whose styles the
    reference-guided mode borrows. heldout_index[k]: every held-out image of k (the real-vs-real row).
    """

    train: Dataset
    heldout: Dataset
    train_labels: torch.Tensor
    heldout_labels: torch.Tensor
    source_index: torch.Tensor
    real_index: list[torch.Tensor]
    reference_index: list[torch.Tensor]
    heldout_index: list[torch.Tensor]
    domain_names: list[str]
    stain_names: list[str] = field(default_factory=list)
    has_truth: bool = False

    @property
    def num_domains(self) -> int:
        return len(self.domain_names)

    @property
    def source_labels(self) -> torch.Tensor:
        """(n,) the domain of each source."""
        return self.heldout_labels[self.source_index]

    def read_sources(self, positions: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Source images (n, C, S, S) at ``positions`` of :attr:`source_index` (default: all)."""
        index = self.source_index if positions is None else self.source_index[torch.as_tensor(positions).long()]
        return read_items(self.heldout, index)

    def read_truth(self, positions: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Truth renders (n, K, C, S, S) of the sources at ``positions``."""
        if not self.has_truth:
            raise ValueError("read_truth: this evaluation set has no truth renders")
        return read_items(self.heldout, self.source_index[torch.as_tensor(positions).long()], "truth")


def make_eval_set(train: Dataset | torch.Tensor, train_labels, heldout: Dataset | torch.Tensor, heldout_labels, *,
                  domain_names: Sequence[str], stain_names: Sequence[str] = (),
                  heldout_truth: torch.Tensor | None = None, has_truth: bool | None = None,
                  max_sources_per_domain: int | None = None, seed: int = 0) -> EvalSet:
    """Split held-out images (other wells than training) into sources and references.

    ``train`` / ``heldout``: datasets of items (``image``; ``truth`` on the held-out side when
    rendered), or image tensors (N, C, S, S) held in memory (``heldout_truth`` (N, K, C, S, S)
    beside them). Labels: (N,) domain per item (from the datasets' metadata, never their pixels).
    ``has_truth``: whether held-out items carry ``truth`` (default: look at the first).
    Of each domain's held-out images, a seeded random half (at most ``max_sources_per_domain``)
    become sources and the rest references (at least one each; a domain with a single held-out
    image uses it for both).
    """
    if torch.is_tensor(train):
        train = TensorImages(train)
    if torch.is_tensor(heldout):
        heldout = TensorImages(heldout, heldout_truth)
    train_labels = torch.as_tensor(np.asarray(train_labels)).long().view(-1)
    heldout_labels = torch.as_tensor(np.asarray(heldout_labels)).long().view(-1)
    if len(train_labels) != len(train) or len(heldout_labels) != len(heldout):
        raise ValueError(f"make_eval_set: {len(train)} / {len(heldout)} images but {len(train_labels)} / "
                         f"{len(heldout_labels)} labels")
    if has_truth is None:
        has_truth = len(heldout) > 0 and "truth" in heldout[0]
    g = torch.Generator().manual_seed(seed)
    src_idx, refs, held = [], [], []
    for k in range(len(domain_names)):
        idx = torch.nonzero(heldout_labels == k).view(-1)
        if len(idx) == 0:
            raise ValueError(f"make_eval_set: no held-out image of domain {domain_names[k]!r}")
        idx = idx[torch.randperm(len(idx), generator=g)]
        half = max(1, len(idx) // 2)
        src_idx.append(idx[:half][:max_sources_per_domain] if max_sources_per_domain else idx[:half])
        refs.append(idx[half:] if len(idx) > 1 else idx)
        held.append(idx)
    real = []
    for k in range(len(domain_names)):
        idx = torch.nonzero(train_labels == k).view(-1)
        if len(idx) == 0:
            raise ValueError(f"make_eval_set: no training image of domain {domain_names[k]!r}")
        real.append(idx)
    return EvalSet(train=train, heldout=heldout, train_labels=train_labels, heldout_labels=heldout_labels,
                   source_index=torch.cat(src_idx), real_index=real, reference_index=refs, heldout_index=held,
                   domain_names=list(domain_names), stain_names=list(stain_names), has_truth=bool(has_truth))


# --------------------------------------------------------------------------- distances
@dataclass
class DistanceSpec:
    """A perceptual distance: ``fn(x, y) -> (N,)`` on (N, C, S, S) pairs, and its per-stain form."""

    name: str
    fn: Distance
    stain_fn: Callable[[torch.Tensor, torch.Tensor, int], np.ndarray]


def make_distance(*, extractor: Any = None, lpips_net: str = "alex") -> DistanceSpec:
    """LPIPS when local ImageNet trunk weights exist (``$MEDGAN_LPIPS_BACKBONE_WEIGHTS``), else the
    LPIPS-style distance on ``extractor`` (a ``DomainCNN``) — named accordingly.

    Per stain: LPIPS of that stain alone (grey); for the in-domain fallback, whose network needs
    all stains, the distance between x and x with stain c taken from y (only stain c differs).
    """
    weights = os.environ.get(LPIPS_BACKBONE_ENV)
    if weights and Path(weights).is_file():
        fn = functools.partial(lpips_distance, net=lpips_net)
        return DistanceSpec(name=f"LPIPS ({lpips_net}, per-stain grey average)", fn=fn,
                            stain_fn=lambda x, y, c: fn(x[:, c:c + 1], y[:, c:c + 1]))
    if extractor is None:
        raise ValueError("make_distance: no LPIPS weights on this machine and no in-domain extractor given")
    fn = functools.partial(domain_feature_distance, extractor=extractor)

    def stain_fn(x, y, c):
        swapped = x.clone()
        swapped[:, c] = y[:, c]
        return fn(x, swapped)

    return DistanceSpec(name=f"LPIPS-style distance on {getattr(extractor, 'name', 'extractor')}", fn=fn,
                        stain_fn=stain_fn)


def _pairwise_mean(outputs: torch.Tensor, fn) -> np.ndarray:
    """outputs (B, n, C, S, S) -> (B,) mean of fn over the n(n-1)/2 pairs of each row."""
    b, n = outputs.shape[:2]
    first, second = np.triu_indices(n, k=1)
    x = outputs[:, first].reshape(-1, *outputs.shape[2:])
    y = outputs[:, second].reshape(-1, *outputs.shape[2:])
    return np.asarray(fn(x, y), dtype=np.float64).reshape(b, len(first)).mean(1)


# --------------------------------------------------------------------------- translation
def _styles_for(step, mode: str, targets: torch.Tensor, n_styles: int, eval_set: EvalSet,
                generator: torch.Generator) -> list[dict[str, torch.Tensor]]:
    """For each of n_styles: dict(z=...) or dict(ref=...) for every row of ``targets``."""
    out = []
    for _ in range(n_styles):
        if mode == "latent":
            out.append({"z": torch.randn(len(targets), step.config.latent_dim, generator=generator)})
        else:
            picks = []
            for k in targets.tolist():
                pool = eval_set.reference_index[k]
                picks.append(int(pool[int(torch.randint(len(pool), (1,), generator=generator))]))
            out.append({"ref": read_items(eval_set.heldout, picks)})
    return out


@torch.no_grad()
def translate_examples(step, sources: torch.Tensor, *, mode: str, n_styles: int, eval_set: EvalSet,
                       seed: int = 0) -> torch.Tensor:
    """Every source into every domain: (N, K, n_styles, C, S, S) in [-1, 1] (for figures; small N)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for k in range(eval_set.num_domains):
        targets = torch.full((len(sources),), k, dtype=torch.long)
        outs = [step.translate(sources, targets, **style).cpu()
                for style in _styles_for(step, mode, targets, n_styles, eval_set, g)]
        rows.append(torch.stack(outs, 1))
    return torch.stack(rows, 1)


def _features(extractor, images: torch.Tensor, batch_size: int) -> np.ndarray:
    return extract_features(extractor, images, batch_size=batch_size)[0]


def stream_features(extractor, dataset: Dataset, indices: torch.Tensor, *, batch_size: int = 64,
                    cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """Features (n, D) of the dataset's images at ``indices``, read ``batch_size`` at a time.

    With ``cache_dir`` and a dataset that has a ``fingerprint()``, they come from the feature
    cache (keyed by that fingerprint and the indices), so a second call reads no image.
    """
    batches = iter_batches(dataset, "image", batch_size=batch_size, indices=[int(i) for i in indices])
    identity = getattr(dataset, "fingerprint", None)
    if cache_dir is None or identity is None:
        return extract_features(extractor, batches, batch_size=batch_size)[0]
    stream = (f"{identity()}[{digest([int(i) for i in indices])[:16]}]", len(indices))
    return extract_features(extractor, batches, batch_size=batch_size, cache_dir=cache_dir, stream_identity=stream)[0]


@torch.no_grad()
def _predict(classifier, images: torch.Tensor | Iterable[torch.Tensor], batch_size: int) -> np.ndarray:
    """Predicted class per image, from a tensor or an iterable of batches."""
    device = next(classifier.parameters()).device
    classifier.eval()
    batches = torch.split(images, batch_size) if torch.is_tensor(images) else images
    return torch.cat([classifier(x.to(device)).argmax(1).cpu() for x in batches]).numpy()


@torch.no_grad()
def score_translations(step, eval_set: EvalSet, *, mode: str, n_styles: int, extractor: Any,
                       distance: DistanceSpec, classifier: torch.nn.Module | None = None, seed: int = 0,
                       chunk: int = 32, batch_size: int = 64, per_stain: bool = True,
                       cache_dir: str | os.PathLike | None = None, progress: bool = False) -> pd.DataFrame:
    """One row per target domain: fid, lpips, lpips_<stain>..., accuracy, truth_l1, identity_l1, n.

    Args:
        step: a StarGANv2Step (its EMA networks translate) — anything with ``translate`` and ``config``.
        mode: ``"latent"`` or ``"reference"``; ``"identity"`` scores the untranslated sources
            (the no-op baseline: same columns, lpips 0).
        n_styles: outputs per source (>= 2 for the diversity score).
        extractor: feature extractor for FID (``forward -> (features, logits)``).
        distance: from :func:`make_distance`.
        classifier: domain classifier on real images (logits (N, K)); None skips accuracy.
        seed: seeds the latents and the choice of references (same seed, same styles per checkpoint).
        cache_dir: feature cache for the real reference sets (translations are always computed).

    Streams: sources, references and truth are read ``chunk`` sources at a time, each chunk's
    translations are reduced to features, distances and predictions at once, and the real sets
    are read ``batch_size`` images at a time; only features and per-image scores stay in memory.
    """
    if mode not in ("latent", "reference", "identity"):
        raise ValueError(f"mode must be 'latent', 'reference' or 'identity', not {mode!r}")
    if mode != "identity" and n_styles < 2:
        raise ValueError("n_styles must be >= 2 to measure diversity")
    g = torch.Generator().manual_seed(seed)
    real_feats = [stream_features(extractor, eval_set.train, idx, batch_size=batch_size, cache_dir=cache_dir)
                  for idx in eval_set.real_index]
    stains = eval_set.stain_names
    rows = []
    for k in tqdm(range(eval_set.num_domains), desc=f"score {mode}", disable=not progress, leave=False):
        idx = torch.nonzero(eval_set.source_labels != k).view(-1)
        feats, lpips_vals, stain_vals, correct, truth_l1, ident_l1 = [], [], [], [], [], []
        for start in range(0, len(idx), chunk):
            part = idx[start:start + chunk]
            src = eval_set.read_sources(part)
            targets = torch.full((len(part),), k, dtype=torch.long)
            if mode == "identity":
                outs = src[:, None]
            else:
                outs = torch.stack([step.translate(src, targets, **style).cpu()
                                    for style in _styles_for(step, mode, targets, n_styles, eval_set, g)], 1)
            flat = outs.reshape(-1, *outs.shape[2:])
            feats.append(_features(extractor, flat, batch_size))
            if outs.shape[1] >= 2:
                lpips_vals.append(_pairwise_mean(outs, distance.fn))
                if per_stain:
                    stain_vals.append(np.stack([_pairwise_mean(outs, functools.partial(distance.stain_fn, c=c))
                                                for c in range(outs.shape[2])], 1))
            if classifier is not None:
                correct.append(_predict(classifier, flat, batch_size) == k)
            if eval_set.has_truth:
                truth = eval_set.read_truth(part)[:, k]
                truth_l1.append((outs - truth[:, None]).abs().mean(dim=(2, 3, 4)).mean(1).numpy())
                ident_l1.append((src - truth).abs().mean(dim=(1, 2, 3)).numpy())
        row = {"mode": mode, "target": eval_set.domain_names[k], "n_sources": len(idx),
               "n_outputs": int(sum(len(f) for f in feats)),
               "fid": frechet_distance(np.concatenate(feats), real_feats[k]),
               "lpips": float(np.mean(np.concatenate(lpips_vals))) if lpips_vals else 0.0}
        if per_stain:
            stains = stains or [f"ch{c}" for c in range(src.shape[1])]
            per = np.concatenate(stain_vals).mean(0) if stain_vals else np.zeros(len(stains))
            row.update({f"lpips_{name}": float(v) for name, v in zip(stains, per)})
        if classifier is not None:
            row["accuracy"] = float(np.mean(np.concatenate(correct)))
        if eval_set.has_truth:
            row["truth_l1"] = float(np.mean(np.concatenate(truth_l1)))
            row["identity_l1"] = float(np.mean(np.concatenate(ident_l1)))
        rows.append(row)
    return pd.DataFrame(rows)


@torch.no_grad()
def real_baselines(eval_set: EvalSet, *, extractor: Any, classifier: torch.nn.Module | None = None,
                   batch_size: int = 64, cache_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Held-out real images of each domain against the training images of that domain: the FID a
    perfect translator could reach at these sample sizes, and the classifier's accuracy on real images.
    ``cache_dir``: feature cache for both real sets. Both are read ``batch_size`` images at a time."""
    rows = []
    for k, name in enumerate(eval_set.domain_names):
        held = eval_set.heldout_index[k]
        feats = dict(batch_size=batch_size, cache_dir=cache_dir)
        row = {"mode": "real (held-out)", "target": name, "n_sources": len(held), "n_outputs": len(held),
               "fid": frechet_distance(stream_features(extractor, eval_set.heldout, held, **feats),
                                       stream_features(extractor, eval_set.train, eval_set.real_index[k], **feats))}
        if classifier is not None:
            batches = iter_batches(eval_set.heldout, "image", batch_size=batch_size, indices=held.tolist())
            row["accuracy"] = float(np.mean(_predict(classifier, batches, batch_size) == k))
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- over training
def snapshot_nets(step) -> dict[str, dict[str, torch.Tensor]]:
    """A copy of every network's weights (take it before training: the 'step 0' row of the curves)."""
    return {name: copy.deepcopy(net.state_dict()) for name, net in step.nets.items()}


def checkpoint_steps(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint kept in ``run_dir`` (the keyed run folder,
    ``TrainResult.run_dir``), oldest first."""
    files = CheckpointIO(run_dir).list()
    return sorted(((int(p.stem.split("_")[1]), p) for p in files), key=lambda t: t[0])


def load_checkpoint_nets(step, path: str | os.PathLike) -> int:
    """Load the networks (only) of one checkpoint file into ``step``; returns its iteration."""
    state = CheckpointIO.load(path)
    for name, net in step.nets.items():
        if name not in state["nets"]:
            raise ValueError(f"{path}: field 'nets' has no network {name!r}")
        net.load_state_dict(state["nets"][name])
    return int(state["step"])


def evaluate_over_training(step, run_dir: str | os.PathLike, eval_set: EvalSet, *, modes: Sequence[str] = ("latent", "reference"),
                           initial: dict | None = None, progress: bool = True, **score_kwargs: Any) -> pd.DataFrame:
    """:func:`score_translations` for the initial weights (``initial`` from :func:`snapshot_nets`,
    step 0) and every checkpoint of ``run_dir`` (the keyed run folder, ``TrainResult.run_dir``);
    rows gain a ``step`` column. The newest checkpoint is left loaded in ``step`` afterwards."""
    points: list[tuple[int, Any]] = ([(0, initial)] if initial is not None else []) + checkpoint_steps(run_dir)
    if not points:
        raise FileNotFoundError(f"{run_dir}: no checkpoints to evaluate")
    frames = []
    for it, source in tqdm(points, desc="checkpoints", disable=not progress):
        if isinstance(source, dict):
            for name, net in step.nets.items():
                net.load_state_dict(source[name])
        else:
            load_checkpoint_nets(step, source)
        step.train(False)
        for mode in modes:
            frame = score_translations(step, eval_set, mode=mode, **score_kwargs)
            frame.insert(0, "step", it)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)
