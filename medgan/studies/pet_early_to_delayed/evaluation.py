"""Study 4's evaluation: translate the test patients, add the identity baselines, score PSNR, SSIM,
MAE and FID with CIs over patients, and read tumour uptake on the phantom.

The scoring itself is generic (:mod:`medgan.analysis.translation_scores`,
:mod:`medgan.analysis.pet_uptake`); this module says which images go where.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from medgan.analysis import pet_uptake, translation_scores
from medgan.analysis.translation_scores import TranslationEvaluation
from medgan.config import Params
from medgan.data.base import stack_items, subjects_of
from medgan.studies.pet_early_to_delayed.data import PETData, extractor_training_set
from medgan.studies.pet_early_to_delayed.jobs import MODEL_LABELS
from medgan.train.cyclegan import translate
from medgan.train.job import TrainingJob

DIRECTION = "early→delayed"
# The network that maps early to delayed in each trained step.
GENERATOR_OF = {"pix2pix": "G", "cyclegan": "G_AB"}


@dataclass
class TestTranslations:
    """The test slices (N, 1, H, W) in [-1, 1]: early input, true delayed frame, and each model's prediction."""

    sources: torch.Tensor
    truth: torch.Tensor
    subjects: list[str]
    masks: torch.Tensor | None  # tumour masks {0, 1}; known on the phantom only
    predictions: dict[str, torch.Tensor]  # method label -> predicted delayed slices


def translate_test(jobs: dict[str, TrainingJob], data: PETData, params: Params) -> TestTranslations:
    """Predict the delayed test slices with each trained model (CycleGAN: its early->delayed generator)."""
    early = stack_items(data.test)
    predictions = {MODEL_LABELS[model]: translate(job.step.nets[GENERATOR_OF[model]], early,
                                                  batch_size=int(params.eval.batch_size))
                   for model, job in jobs.items()}
    masks = stack_items(data.test, "mask") if data.is_phantom else None
    return TestTranslations(sources=early, truth=stack_items(data.test, "target"), subjects=subjects_of(data.test),
                            masks=masks, predictions=predictions)


@dataclass
class Scores:
    """Everything scored: the predictions with the scaled-identity baseline, the ratio, the evaluation."""

    predictions: dict[str, torch.Tensor]  # the models' and "identity × ratio" (plain identity is added by the scorer)
    uptake_ratio: float  # training set's global delayed/early SUV ratio
    evaluation: TranslationEvaluation

    @property
    def methods(self) -> list[str]:
        return list(self.predictions) + ["identity"]


def with_scaled_identity(out: TestTranslations, data: PETData, params: Params) -> tuple[dict[str, torch.Tensor], float]:
    """The models' predictions plus the early image times the training set's delayed/early uptake ratio."""
    suv_max = float(params.data.suv_max)
    ratio = pet_uptake.uptake_ratio(stack_items(data.train), stack_items(data.train, "target"), suv_max=suv_max)
    scaled = pet_uptake.scaled_identity(out.sources, ratio=ratio, suv_max=suv_max)
    return {**out.predictions, f"identity × {ratio:.2f}": scaled}, ratio


def feature_network(data: PETData, params: Params, *, run_dir: str | Path | None = None) -> torch.nn.Module:
    """The FID feature network: Inception with local weights, else a CNN trained early vs delayed on train slices
    (through the engine in ``run_dir``, reloaded when finished)."""
    images, labels = extractor_training_set(data)
    return translation_scores.choose_extractor(train_images=images, train_labels=labels, channels=1,
                                               domain_cnn=params.eval.domain_cnn.to_dict(),
                                               prefer=params.eval.extractor, run_dir=run_dir)


def evaluate(out: TestTranslations, data: PETData, params: Params, *, cache_dir: str | Path | None = None) -> Scores:
    """Score every method against the true delayed test slices (PSNR, SSIM, MAE per patient) and against
    the real delayed distribution (FID), with bootstrap CIs over test patients.

    ``cache_dir``: the feature cache (``run.dir / "feature-cache"``), so a second run recomputes no features;
    the feature network trains beside it (``<cache_dir>/../feature-network``).
    """
    e = params.eval
    predictions, ratio = with_scaled_identity(out, data, params)
    ev = translation_scores.evaluate_translations(
        {method: {DIRECTION: pred} for method, pred in predictions.items()}, sources={DIRECTION: out.sources},
        subjects={DIRECTION: out.subjects}, truths={DIRECTION: out.truth},
        real_targets={DIRECTION: (out.truth, out.subjects)}, features=feature_network(
            data, params, run_dir=None if cache_dir is None else Path(cache_dir).parent / "feature-network"),
        feature_batch_size=int(e.batch_size), cache_dir=cache_dir, data_range=float(e.data_range),
        ssim_win_size=int(e.ssim_win_size), n_boot=int(e.n_boot), fid_n_boot=int(e.fid_n_boot), alpha=float(e.alpha),
        seed=int(params.seed))
    return Scores(predictions=predictions, uptake_ratio=ratio, evaluation=ev)


def slice_level(scores: Scores, params: Params) -> pd.DataFrame:
    """The image scores averaged over slices (every slice weighs the same), bootstrap CIs over slices."""
    return translation_scores.summarize(scores.evaluation.per_image, level="slice", n_boot=int(params.eval.n_boot),
                                        seed=int(params.seed))


def psnr_by_declared_range(scores: Scores, out: TestTranslations, params: Params) -> pd.DataFrame:
    """Mean PSNR (dB) of every method for each range in ``eval.psnr_ranges_suv`` (SUV)."""
    return pet_uptake.psnr_range_sweep(scores.predictions, out.truth, suv_max=float(params.data.suv_max),
                                       ranges_suv=list(params.eval.psnr_ranges_suv))


def tumour_uptake(scores: Scores, out: TestTranslations, params: Params) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(summary per method, rows per patient) of SUVmax/SUVmean errors in the tumour masks; None without masks."""
    if out.masks is None:
        return None
    per_patient = pet_uptake.lesion_uptake(scores.predictions, out.truth, out.masks, out.subjects,
                                           suv_max=float(params.data.suv_max))
    return pet_uptake.lesion_summary(per_patient), per_patient
