"""Study 4's evaluation: translate the test patients, add the identity baselines, score PSNR, SSIM,
MAE and FID with CIs over patients, and read tumour uptake on the phantom.

The scoring itself is generic (:mod:`medgan.analysis.translation_scores`,
:mod:`medgan.analysis.pet_uptake`); this module says which images go where. Test slices are
translated and scored batch by batch (and the uptake ratio summed over the train slices batch by
batch), so memory holds scores, features and a few slices for the figures, not the test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader

from medgan.analysis import pet_uptake, translation_scores
from medgan.analysis.translation_scores import TranslationEvaluation
from medgan.config import Params
from medgan.data.base import subjects_of
from medgan.models.image_to_image import INFERENCE_MODES
from medgan.studies.pet_early_to_delayed.data import PETData, extractor_training_set
from medgan.studies.pet_early_to_delayed.jobs import MODEL_LABELS
from medgan.train.cyclegan import translate
from medgan.train.job import TrainingJob

DIRECTION = "early→delayed"
# The network that maps early to delayed in each trained step.
GENERATOR_OF = {"pix2pix": "G", "cyclegan": "G_AB"}


@dataclass
class TestTranslations:
    """Test slices (N, 1, H, W) in [-1, 1]: early input, true delayed frame, and each model's prediction.

    :func:`evaluate` keeps ``eval.grid_n`` of them, spread evenly through the test set (the grid).
    """

    sources: torch.Tensor
    truth: torch.Tensor
    subjects: list[str]
    masks: torch.Tensor | None  # tumour masks {0, 1}; known on the phantom only
    predictions: dict[str, torch.Tensor]  # method label -> predicted delayed slices


@dataclass
class Scores:
    """Everything scored on the test set, and the slices the figures show."""

    methods: list[str]  # the models, "identity × ratio" and "identity", in table order
    uptake_ratio: float  # training set's global delayed/early SUV ratio
    evaluation: TranslationEvaluation  # per-slice scores, summaries with CIs, FID, the worst slices
    psnr_by_range: pd.DataFrame  # mean PSNR (dB) per method (without plain identity) and declared range (SUV)
    tumours: tuple[pd.DataFrame, pd.DataFrame] | None  # (summary per method, rows per patient); None without masks
    samples: TestTranslations  # the grid's slices
    inference_mode: str  # the mode of ``evaluation`` (``params.inference_mode``): every table but the modes table
    by_inference_mode: dict[str, TranslationEvaluation]  # mode -> the models' scores in it ("eval" and "train")


def batches(dataset, params: Params) -> DataLoader:
    """A split's slices in order, ``eval.batch_size`` at a time (``data.num_workers`` loader processes)."""
    return DataLoader(dataset, batch_size=int(params.eval.batch_size), shuffle=False,
                      num_workers=int(params.data.num_workers))


def train_uptake_ratio(data: PETData, params: Params) -> float:
    """The training set's global delayed/early SUV ratio, summed batch by batch."""
    return pet_uptake.uptake_ratio_of_batches(((b["image"], b["target"]) for b in batches(data.train, params)),
                                              suv_max=float(params.data.suv_max))


def scaled_identity_label(ratio: float) -> str:
    return f"identity × {ratio:.2f}"


def feature_network(data: PETData, params: Params, *, run_dir: str | Path | None = None) -> torch.nn.Module:
    """The FID feature network: Inception with local weights, else a CNN trained early vs delayed on train slices
    (through the engine in ``run_dir``, reloaded when finished)."""
    pretrained = translation_scores.uses_inception(params.eval.extractor)  # then no training slice is read
    return translation_scores.choose_extractor(train_images=None if pretrained else extractor_training_set(data),
                                               train_labels=None, channels=1,
                                               domain_cnn=params.eval.domain_cnn.to_dict(),
                                               prefer=params.eval.extractor, run_dir=run_dir)


def inference_modes(params: Params) -> list[str]:
    """The profile's ``inference_mode`` first, then the other one (both are scored, side by side)."""
    main = str(params.inference_mode)
    if main not in INFERENCE_MODES:
        raise ValueError(f"inference_mode must be one of {INFERENCE_MODES}, not {main!r}")
    return [main, *(m for m in INFERENCE_MODES if m != main)]


def predict(generator: torch.nn.Module, early: torch.Tensor, params: Params, *, mode: str, start: int) -> torch.Tensor:
    """Delayed slices predicted from ``early`` (the test slices ``start ..``) in inference ``mode``: eval in
    batches of ``eval.batch_size``; train in batches of ``inference_batch_size`` with their own batch-norm
    statistics and dropout seeded by ``seed`` and the slice index (``medgan.train.cyclegan.translate``)."""
    batch_size = int(params.eval.batch_size) if mode == "eval" else int(params.inference_batch_size)
    return translate(generator, early, batch_size=batch_size, mode=mode, seed=int(params.seed), start=start)


def grid_indices(n_slices: int, n: int) -> list[int]:
    """``n`` test slices picked evenly through the test set, so the grid spans the body."""
    return sorted(set(torch.linspace(0, n_slices - 1, n).round().long().tolist())) if n_slices else []


def evaluate(jobs: dict[str, TrainingJob], data: PETData, params: Params, *,
             cache_dir: str | Path | None = None) -> Scores:
    """Predict the delayed test slices with each trained model (CycleGAN: its early->delayed generator) and
    score every method batch by batch: PSNR, SSIM, MAE per patient against the true delayed slices, FID
    against the real delayed distribution (bootstrap CIs over test patients), PSNR per declared range and,
    with masks, tumour uptake. Baselines: the early slice itself, and times the train set's uptake ratio.

    Everything is scored with the generators in ``params.inference_mode``; the models' PSNR, SSIM, MAE
    and FID are also scored in the other mode (``Scores.by_inference_mode``, :func:`inference_mode_table`).

    ``cache_dir``: the feature cache (``run.dir / "feature-cache"``), so the real slices' features are
    computed once; the feature network trains beside it (``<cache_dir>/../feature-network``).
    """
    e = params.eval
    suv_max, bs = float(params.data.suv_max), int(e.batch_size)
    ratio = train_uptake_ratio(data, params)
    extractor = feature_network(data, params,
                                run_dir=None if cache_dir is None else Path(cache_dir).parent / "feature-network")
    modes = inference_modes(params)
    scorers = {mode: translation_scores.TranslationScorer(
        extractor, data_range=float(e.data_range), ssim_win_size=int(e.ssim_win_size),
        keep_worst=int(e.worst_k) if mode == modes[0] else 0, worst_metric="ssim") for mode in modes}
    scorer = scorers[modes[0]]
    reference = translation_scores.dataset_features(extractor, data.test, key="target", batch_size=bs,
                                                    cache_dir=cache_dir)
    for each in scorers.values():
        each.set_reference(DIRECTION, reference, subjects_of(data.test))
    sweep = pet_uptake.PSNRRangeSweep(suv_max=suv_max, ranges_suv=list(e.psnr_ranges_suv))
    lesions = pet_uptake.LesionUptake(suv_max=suv_max) if data.is_phantom else None
    generators = {MODEL_LABELS[model]: job.step.nets[GENERATOR_OF[model]] for model, job in jobs.items()}
    wanted, seen = set(grid_indices(len(data.test), int(e.grid_n))), 0
    kept: dict[str, list[torch.Tensor]] = {}
    subjects_kept: list[str] = []
    for batch in batches(data.test, params):
        early, delayed, subjects = batch["image"], batch["target"], list(batch["subject"])
        with torch.no_grad():  # inference only: no autograd graph kept across the batch
            predictions = {label: predict(g, early, params, mode=modes[0], start=seen) for label, g in generators.items()}
            for mode in modes[1:]:
                for label, g in generators.items():
                    scorers[mode].add(label, DIRECTION, predict(g, early, params, mode=mode, start=seen),
                                      subjects=subjects, truth=delayed)
        predictions[scaled_identity_label(ratio)] = pet_uptake.scaled_identity(early, ratio=ratio, suv_max=suv_max)
        for method, pred in predictions.items():
            scorer.add(method, DIRECTION, pred, subjects=subjects, truth=delayed, source=early)
            sweep.add(method, pred, delayed)
            if lesions is not None:
                lesions.add(method, pred, delayed, batch["mask"], subjects)
        scorer.add("identity", DIRECTION, early, subjects=subjects, truth=delayed, source=early)
        rows = [i for i in range(len(early)) if seen + i in wanted]
        if rows:  # the grid's slices: copied out, so the batch itself is not kept
            shown = {"early": early, "delayed": delayed, **{f"model:{label}": predictions[label] for label in generators}}
            if data.is_phantom:
                shown["mask"] = batch["mask"]
            for name, images in shown.items():
                kept.setdefault(name, []).append(images[rows].clone())
            subjects_kept += [subjects[i] for i in rows]
        seen += len(early)
    samples = TestTranslations(sources=torch.cat(kept["early"]), truth=torch.cat(kept["delayed"]),
                               subjects=subjects_kept, masks=torch.cat(kept["mask"]) if "mask" in kept else None,
                               predictions={label: torch.cat(kept[f"model:{label}"]) for label in generators})
    by_mode = {mode: each.evaluate(n_boot=int(e.n_boot), fid_n_boot=int(e.fid_n_boot), alpha=float(e.alpha),
                                   seed=int(params.seed)) for mode, each in scorers.items()}
    ev = by_mode[modes[0]]
    tumours = None
    if lesions is not None:
        per_patient = lesions.table()
        tumours = pet_uptake.lesion_summary(per_patient), per_patient
    return Scores(methods=[*generators, scaled_identity_label(ratio), "identity"], uptake_ratio=ratio, evaluation=ev,
                  psnr_by_range=sweep.table(), tumours=tumours, samples=samples, inference_mode=modes[0],
                  by_inference_mode=by_mode)


MODE_METRICS = {"psnr_db": "PSNR (dB)", "ssim": "SSIM", "fid": "FID"}


def inference_mode_table(scores: Scores) -> pd.DataFrame:
    """PSNR, SSIM and FID of each model with its generator in each inference mode, side by side:
    rows = model, columns = (score, mode), cells "estimate [low, high]" (CIs over test patients)."""
    cells: dict[tuple[str, str], dict[str, str]] = {}
    models = [m for m in scores.methods if m in scores.samples.predictions]
    for metric, name in MODE_METRICS.items():
        for mode, ev in scores.by_inference_mode.items():
            rows = ev.summary[(ev.summary["metric"] == metric) & ev.summary["method"].isin(models)].set_index("method")
            cells[(name, mode)] = {m: f"{rows.at[m, 'estimate']:.4g} [{rows.at[m, 'low']:.4g}, {rows.at[m, 'high']:.4g}]"
                                   for m in models if m in rows.index}
    table = pd.DataFrame(cells).reindex(models)
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["score", "inference mode"])
    return table


def slice_level(scores: Scores, params: Params) -> pd.DataFrame:
    """The image scores averaged over slices (every slice weighs the same), bootstrap CIs over slices."""
    return translation_scores.summarize(scores.evaluation.per_image, level="slice", n_boot=int(params.eval.n_boot),
                                        seed=int(params.seed))
