"""The CT study's evaluation: its feature extractor, the generators it scores, and the scoring runs.

The scoring itself is generic (:mod:`medgan.analysis.generative_scores`); this module decides
which extractor, which generators and which parameters (``eval.*``) the study uses. Every feature
extraction goes through the feature cache (``cache_dir``), so the reference and real features are
computed once across generation seeds and re-runs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from medgan.analysis import generative_scores as scores
from medgan.config import Params
from medgan.metrics import MemorizationResult, memorization
from medgan.metrics import features as F
from medgan.studies.ct_fidelity_diversity.data import NOTEBOOK, SPLIT_MODES, CTData, load_data
from medgan.studies.ct_fidelity_diversity.jobs import dcgan_config, pggan_config
from medgan.studies.registry import build_job
from medgan.train import dcgan as dcgan_training
from medgan.train import pggan as pggan_training
from medgan.train.dcgan import INFERENCE_MODES, DCGANStep
from medgan.train.job import run_job
from medgan.train.pggan import PGGANStep

logger = logging.getLogger(__name__)

TRAINED = ("DCGAN", "PGGAN")
SHOWN_IMAGES = 16  # images kept per row for the grids; every other image is remade or read on demand
UNTRAINED = {"DCGAN": "DCGAN (untrained)", "PGGAN": "PGGAN (untrained)"}  # trained row -> its floor baseline


# --- feature extractor --------------------------------------------------------------------------
def feature_extractor(P: Params, data: CTData, *, save_dir: str | os.PathLike, name: str | None = None,
                      device: str | None = None) -> torch.nn.Module:
    """The study's feature extractor, trained on the training slices' survival label (2 classes).

    ``features.extractor``: ``domain_cnn`` (default; trained here, no downloads) or
    ``finetuned_inception_v3`` (ImageNet Inception from ``$MEDGAN_INCEPTION_WEIGHTS``, fine-tuned
    ``features.epochs`` epochs, as the study). ``inception_v3`` gives the plain ImageNet network.
    Without the ImageNet weights, ``features.fallback_extractor`` is trained instead (its name is
    the extractor's name shown beside every number); null stops with the weights error.
    The training runs through the engine in ``save_dir/<name>/<key>`` and is reloaded on re-runs.
    This is the study's only call into extractor training.
    """
    f = P.features
    name = name or f.extractor
    if name == "finetuned_inception_v3" and f.fallback_extractor and not imagenet_inception_available():
        logger.warning("ImageNet Inception weights not found ($%s): training %s instead of %s",
                       F.INCEPTION_ENV, f.fallback_extractor, name)
        name = f.fallback_extractor
    if name == "inception_v3":
        return F.get_extractor("inception_v3")
    # The training split as the loader serves it: slices read per batch, survival labels from its rows.
    settings = dict(epochs=f.epochs, batch_size=f.batch_size, lr=f.lr, seed=P.seed)
    # Trained through the engine: a finished run under the same images and settings is reloaded.
    run_dir = Path(save_dir) / name
    if name == "domain_cnn":
        return F.train_domain_cnn(data.train, num_classes=2, device=device, feature_dim=f.feature_dim,
                                  width=f.width, run_dir=run_dir, **settings)
    if name == "finetuned_inception_v3":
        return F.finetune_inception_v3(data.train, device=device, num_classes=2, run_dir=run_dir, **settings)
    raise ValueError(f"params/{NOTEBOOK}: features.extractor = {name!r}; use domain_cnn, "
                     f"finetuned_inception_v3 or inception_v3")


def imagenet_inception_available() -> bool:
    """True when the standard ImageNet Inception weights are on this machine ($MEDGAN_INCEPTION_WEIGHTS)."""
    path = os.environ.get(F.INCEPTION_ENV)
    return bool(path) and Path(path).is_file()


# --- what is scored -------------------------------------------------------------------------------
def inference_mode(P: Params) -> str:
    """``inference_mode``, checked: how the DCGAN samples for scoring (PGGAN has no batch norm)."""
    mode = str(P.inference_mode)
    if mode not in INFERENCE_MODES:
        raise ValueError(f"params/{NOTEBOOK}: inference_mode = {mode!r}; use one of {list(INFERENCE_MODES)}")
    return mode


def other_mode_row(P: Params) -> str | None:
    """The row name of the DCGAN sampled in the other inference mode, when ``eval.also_other_inference_mode``."""
    if not P.eval.also_other_inference_mode:
        return None
    return f"DCGAN ({next(m for m in INFERENCE_MODES if m != inference_mode(P))} mode)"


def generators(dcgan_step: DCGANStep, pggan_step: PGGANStep, P: Params) -> dict[str, dict]:
    """Name -> {"fn": z -> images in [-1, 1], "z_dim"} for the trained models and their untrained baselines.

    The DCGANs sample in ``inference_mode`` (train: batch statistics over ``inference_batch_size``
    latents); with ``eval.also_other_inference_mode`` the trained DCGAN is also scored in the other mode.
    """
    mode, stats = inference_mode(P), int(P.inference_batch_size)
    gens = {
        "DCGAN": {"fn": dcgan_step.generator(mode=mode, statistics_batch_size=stats), "z_dim": dcgan_step.z_dim},
        "PGGAN": {"fn": pggan_step.generator(ema=True), "z_dim": pggan_step.z_dim},
        UNTRAINED["DCGAN"]: {"fn": dcgan_training.untrained_generator(dcgan_config(P), seed=P.seed + 7, mode=mode,
                                                                      statistics_batch_size=stats),
                             "z_dim": dcgan_step.z_dim},
        UNTRAINED["PGGAN"]: {"fn": pggan_training.untrained_generator(pggan_config(P), seed=P.seed + 7),
                             "z_dim": pggan_step.z_dim},
    }
    other = other_mode_row(P)
    if other:
        other_mode = next(m for m in INFERENCE_MODES if m != mode)
        gens[other] = {"fn": dcgan_step.generator(mode=other_mode, statistics_batch_size=stats),
                       "z_dim": dcgan_step.z_dim}
    return gens


def score_options(P: Params) -> dict[str, Any]:
    """The ``eval`` settings :func:`~medgan.analysis.generative_scores.score_features` takes."""
    E = P.eval
    return dict(k=E.k, k_density_coverage=E.k_density_coverage, prd_clusters=E.prd_clusters, prd_runs=E.prd_runs,
                prd_beta=E.prd_beta, kid_subset_size=E.kid_subset_size, kid_subsets=E.kid_subsets,
                is_splits=E.is_splits)


def score(P: Params, data: CTData, gens: dict[str, dict], extractor: torch.nn.Module, *,
          cache_dir: str | os.PathLike | None) -> scores.ProtocolResult:
    """Table 1: every generator, ``eval.seeds`` generation seeds, scored against the reference set
    (held-out patients' slices, or in slice mode a random half of all slices); the Real row is
    ``data.real`` (training patients' slices, or the other half).

    Everything streams: the slices are read and the images generated batch by batch (``eval.batch_size``)
    and reduced to features at once.
    """
    E = P.eval
    return scores.run_protocol(gens, extractor, reference_images=data.test, real_images=data.real,
                               seeds=list(E.seeds), n=E.n_generated, batch_size=E.batch_size, sample_seed=P.seed,
                               cache_dir=cache_dir, keep_images=SHOWN_IMAGES, **score_options(P))


def first_seed(result: scores.ProtocolResult, models=TRAINED) -> dict[str, np.ndarray]:
    """Features of the first generation seed of each of ``models``."""
    features = result.first_seed_features()
    return {m: features[m] for m in models}


def k_sweep(P: Params, result: scores.ProtocolResult) -> pd.DataFrame:
    """Improved precision/recall of both trained models at every ``eval.k_sweep`` k, per seed (paper Fig. 5)."""
    fakes = {m: [f for f, _ in result.rows[m]] for m in TRAINED}
    return scores.k_sweep(result.reference[0], fakes, list(P.eval.k_sweep))


def prd_curves(P: Params, result: scores.ProtocolResult) -> dict:
    """PRD curves of both trained models and the Real row (first seed)."""
    E = P.eval
    sets = first_seed(result) | {"Real": result.rows["Real"][0][0]}
    return scores.prd_curves(result.reference[0], sets, clusters=E.prd_clusters, runs=E.prd_runs, seed=P.seed)


def prd_spread(P: Params, result: scores.ProtocolResult) -> pd.DataFrame:
    """``eval.spread_runs`` runs of k-means PRD and improved P&R on the same (first-seed) features."""
    E = P.eval
    return scores.prd_spread(result.reference[0], first_seed(result), runs=E.spread_runs, clusters=E.prd_clusters,
                             beta=E.prd_beta, k=E.k, seed=P.seed)


def spread_table(spread: pd.DataFrame) -> pd.DataFrame:
    """Per model and metric: mean, sd, min, max over the runs of :func:`prd_spread`."""
    metrics = [c for c in spread.columns if c not in ("model", "run")]
    long = spread.melt(id_vars=["model", "run"], value_vars=metrics, var_name="metric")
    out = long.groupby(["model", "metric"], sort=False)["value"].agg(["mean", "std", "min", "max"])
    return out.rename(columns={"std": "sd"})


# --- embeddings and memorisation ---------------------------------------------------------------
def embedding_sets(P: Params, data: CTData, gens: dict[str, dict], result: scores.ProtocolResult,
                   model: str) -> tuple[dict[str, np.ndarray], dict[str, torch.Tensor]]:
    """(features, images) of the first ``eval.embedding_points`` reference slices and first-seed images of
    ``model``, for the t-SNE / UMAP figures. The images are read and remade for the figure only."""
    n_pts = min(P.eval.embedding_points, result.n, len(result.reference_index))
    features = {"Real": result.reference[0][:n_pts], model: result.rows[model][0][0][:n_pts]}
    g = gens[model]
    images = {"Real": data.images("test", result.reference_index[:n_pts]),
              model: scores.generate_at(g["fn"], range(n_pts), n=result.n, z_dim=int(g["z_dim"]),
                                        seed=result.seeds[0], batch_size=P.eval.batch_size)}
    return features, images


def memorisation_audit(P: Params, data: CTData, result: scores.ProtocolResult, extractor: torch.nn.Module, *,
                       cache_dir: str | os.PathLike | None) -> dict[str, MemorizationResult]:
    """Nearest training slice of each generated image (first seed) against the held-out slices' distances.

    Empty in slice mode: every slice is a training slice, so none is held out to calibrate against."""
    if data.held_out is None:
        return {}
    train_feats, _ = scores.embed(extractor, data.train, batch_size=P.eval.batch_size, cache_dir=cache_dir)
    return {m: memorization(train_feats, feats, result.reference[0], quantile=P.eval.memorization_quantile)
            for m, feats in first_seed(result).items()}


def memorisation_examples(P: Params, data: CTData, gens: dict[str, dict], result: scores.ProtocolResult,
                          audit: MemorizationResult, model: str) -> dict[str, Any]:
    """The ``eval.nn_grid`` generated images of ``model`` closest to a training slice, remade, with those
    slices: {"generated", "nearest_training" (n, 1, S, S), "distances" (n,)}, closest first."""
    order = np.argsort(audit.nearest_train_distance)[:P.eval.nn_grid]
    g = gens[model]
    generated = scores.generate_at(g["fn"], order, n=result.n, z_dim=int(g["z_dim"]), seed=result.seeds[0],
                                   batch_size=P.eval.batch_size)
    return {"generated": generated, "nearest_training": data.images("train", audit.nearest_train_index[order]),
            "distances": audit.nearest_train_distance[order]}


def memorisation_table(audit: dict[str, MemorizationResult]) -> pd.DataFrame:
    """One row per model: median distance ratio, fraction flagged as copies, excess copy rate."""
    return pd.DataFrame({m: {"median nearest-train / nearest-held-out distance": a.median_ratio,
                             "fraction flagged": a.fraction_copied, "excess copy rate": a.excess_copy_rate}
                         for m, a in audit.items()}).T


def extractor_comparison(P: Params, data: CTData, gens: dict[str, dict], result: scores.ProtocolResult, *,
                         save_dir: str | os.PathLike, cache_dir: str | os.PathLike | None) -> pd.DataFrame:
    """Table 1 of the trained models in the study's features and in plain ImageNet Inception features."""
    inception = feature_extractor(P, data, save_dir=save_dir, name="inception_v3")
    other = score(P, data, {m: gens[m] for m in TRAINED}, inception, cache_dir=cache_dir)
    return pd.concat({result.extractor: result.text.loc[["Real", *TRAINED]], other.extractor: other.text}, axis=1).T


# --- the other split mode ---------------------------------------------------------------------------
@dataclass
class SplitRun:
    """One split mode's models, extractor and Table 1 (see :func:`run_split`)."""

    split: str
    params: Params
    data: CTData
    generators: dict[str, dict]
    extractor: torch.nn.Module
    result: scores.ProtocolResult
    steps: dict[str, int]  # job -> iterations trained


def with_split(P: Params, split: str) -> Params:
    """``P`` with ``data.split = split`` (everything else as it is)."""
    if split not in SPLIT_MODES:
        raise ValueError(f"split must be one of {list(SPLIT_MODES)}, not {split!r}")
    d = P.to_dict()
    d["data"] = {**d["data"], "split": split}
    return Params(d, f"params/{NOTEBOOK} with data.split = {split}")


def other_split(P: Params) -> str:
    """The split mode that is not ``data.split``."""
    return next(s for s in SPLIT_MODES if s != P.data.split)


def run_split(P: Params, split: str, *, run_dir: str | os.PathLike, cache_dir: str | os.PathLike | None,
              device: str | None = None) -> SplitRun:
    """Both GANs and the extractor trained (or reloaded) under ``split``, and Table 1 of the trained models.

    The jobs land in ``run_dir/<job>/<key>`` beside this split's other runs (the key differs with the
    training slices), the extractor in ``run_dir/features``.
    """
    Q = with_split(P, split)
    data = load_data(Q)
    job_dc, job_pg = build_job(NOTEBOOK, "dcgan", Q), build_job(NOTEBOOK, "pggan", Q)
    steps = {name: run_job(job, Path(run_dir) / name, progress=False).step
             for name, job in (("dcgan", job_dc), ("pggan", job_pg))}
    gens = generators(job_dc.step, job_pg.step, Q)
    extractor = feature_extractor(Q, data, save_dir=Path(run_dir) / "features", device=device)
    trained = {m: gens[m] for m in TRAINED}
    return SplitRun(split=split, params=Q, data=data, generators=gens, extractor=extractor,
                    result=score(Q, data, trained, extractor, cache_dir=cache_dir), steps=steps)


def real_row(P: Params, split: str, *, run_dir: str | os.PathLike, cache_dir: str | os.PathLike | None,
             device: str | None = None) -> scores.ProtocolResult:
    """The Real row alone under ``split`` (no GAN is trained): its extractor (trained, or reloaded, on that
    split's training slices, in ``run_dir/features``) scores that split's Real set against its reference set.

    The cheap half of the split comparison: what the patient leakage of the slice split does to the ceiling.
    """
    Q = with_split(P, split)
    data = load_data(Q)
    extractor = feature_extractor(Q, data, save_dir=Path(run_dir) / "features", device=device)
    return score(Q, data, {}, extractor, cache_dir=cache_dir)


def held_out_run(*runs: SplitRun | None) -> SplitRun | None:
    """The first of ``runs`` whose data hold patients no model trained on (the patient split), or None."""
    return next((r for r in runs if r is not None and r.data.held_out is not None), None)


def split_table(results: dict[str, scores.ProtocolResult], rows=("Real", *TRAINED)) -> pd.DataFrame:
    """Metric x (row, split mode): Table 1 of each split mode, side by side (each in its own extractor's features)."""
    blocks = {(r, f"{split} split ({res.extractor})"): res.text.loc[r] for r in rows for split, res in results.items()}
    table = pd.DataFrame(blocks)
    table.index.name = "metric"
    return table.fillna("—")
