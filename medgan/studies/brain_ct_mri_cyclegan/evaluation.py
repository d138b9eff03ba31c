"""Study 3's evaluation: translate the test folders with each CycleGAN and score the translations.

The scoring itself is generic (:mod:`medgan.analysis.translation_scores`): PSNR/SSIM/MAE against the
truth where the phantom has it, FID against the real test images of the target modality, bootstrap
CIs over test subjects, an identity baseline. This module wires the study's models, data and
parameters into it, and names the methods ("ResNet-9 (resnet_9blocks, w16)").
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd
import torch

from medgan.analysis import translation_scores
from medgan.config import Params
from medgan.models.image_to_image import count_parameters, define_generator
from medgan.data.base import stack_items, subjects_of
from medgan.studies.brain_ct_mri_cyclegan.data import BrainData
from medgan.studies.brain_ct_mri_cyclegan.jobs import build_networks
from medgan.train.cyclegan import CycleGANStep, translate
from medgan.train.engine import seed_everything

MODEL_LABELS = {"resnet": "ResNet-9", "unet": "U-Net"}
UNTRAINED = "untrained " + MODEL_LABELS["resnet"]  # method label of the untrained-generator baseline
REAL_TRAIN = "real train images"  # FID-only row: real train images of the target modality vs its test images
SCORES = ("fid", "ssim", "psnr_db", "mae")


def model_label(params: Params, model: str) -> str:
    """'ResNet-9 (resnet_9blocks, w16)'-style label of a trained model."""
    g = params.models[model]
    return f"{MODEL_LABELS.get(model, model)} ({g.generator}, w{g.width})"


def short_label(label: str) -> str:
    """'ResNet-9' from 'ResNet-9 (resnet_9blocks, w16)'."""
    return label.split(" (")[0]


def trained_labels(params: Params) -> list[str]:
    """Method labels of the trained models, in ``params.models`` order."""
    return [model_label(params, model) for model in params.models]


@dataclass
class TestTranslations:
    """Every test image translated by every model, keyed by method label and direction ("CT→MRI")."""

    sources: dict[str, torch.Tensor]                      # direction -> source images (N, C, H, W)
    subjects: dict[str, list[str]]                        # direction -> subject keys of the sources
    truths: dict[str, torch.Tensor | None]                # direction -> true target images (phantom) or None
    real_targets: dict[str, tuple[torch.Tensor, list[str]]]  # direction -> real test images of the target domain
    real_train_targets: dict[str, tuple[torch.Tensor, list[str]]]  # direction -> real train images of the target domain
    predictions: dict[str, dict[str, torch.Tensor]]       # method -> direction -> translations
    reconstructions: dict[str, dict[str, torch.Tensor]]   # method -> direction -> cycle reconstructions


def translate_test_sets(steps: dict[str, CycleGANStep], data: BrainData, params: Params, *,
                        include_untrained: bool = True) -> TestTranslations:
    """Translate both test folders with each trained step (``{model key: step}``) and, as a baseline,
    with freshly initialised (untrained) ResNet generators of the same configuration."""
    ab, ba = data.direction_ab, data.direction_ba
    a, b = stack_items(data.test_a), stack_items(data.test_b)
    bs = int(params.eval.batch_size)
    generators = {model_label(params, m): (s.nets["G_AB"], s.nets["G_BA"]) for m, s in steps.items()}
    if include_untrained and "resnet" in params.models:
        seed_everything(int(params.seed) + 1)  # other weights than the trained model started from
        nets = build_networks(params, "resnet")
        generators[UNTRAINED] = (nets["G_AB"], nets["G_BA"])
    predictions, reconstructions = {}, {}
    for label, (g_ab, g_ba) in generators.items():
        fake_b, fake_a = translate(g_ab, a, batch_size=bs), translate(g_ba, b, batch_size=bs)
        predictions[label] = {ab: fake_b, ba: fake_a}
        reconstructions[label] = {ab: translate(g_ba, fake_b, batch_size=bs), ba: translate(g_ab, fake_a, batch_size=bs)}
    truths = {ab: stack_items(data.test_a, "target") if data.has_truth else None,
              ba: stack_items(data.test_b, "target") if data.has_truth else None}
    return TestTranslations(
        sources={ab: a, ba: b}, subjects={ab: subjects_of(data.test_a), ba: subjects_of(data.test_b)}, truths=truths,
        real_targets={ab: (b, subjects_of(data.test_b)), ba: (a, subjects_of(data.test_a))},
        real_train_targets={ab: (stack_items(data.train_b), subjects_of(data.train_b)),
                            ba: (stack_items(data.train_a), subjects_of(data.train_a))},
        predictions=predictions, reconstructions=reconstructions)


def feature_extractor(data: BrainData, params: Params, *, run_dir: str | os.PathLike | None = None) -> torch.nn.Module:
    """The FID feature network of ``eval.extractor`` (Inception when its weights exist, else a CT-vs-MRI CNN
    trained through the engine in ``run_dir``, reloaded when finished)."""
    train_images, train_labels = data.train_images_and_labels()
    return translation_scores.choose_extractor(
        train_images=train_images, train_labels=train_labels, channels=int(params.data.channels),
        domain_cnn=params.eval.domain_cnn.to_dict(), prefer=params.eval.extractor, run_dir=run_dir)


def score_translations(out: TestTranslations, extractor: torch.nn.Module, params: Params, *,
                       cache_dir: str | os.PathLike | None = None) -> translation_scores.TranslationEvaluation:
    """Every method's translations scored against the truth (phantom) and by FID in ``extractor``'s features,
    with the real train images of the target modality as an FID reference row (``REAL_TRAIN``).
    ``cache_dir``: the feature cache (real-set features are computed once per extractor)."""
    e = params.eval
    return translation_scores.evaluate_translations(
        out.predictions, sources=out.sources, subjects=out.subjects, truths=out.truths, real_targets=out.real_targets,
        fid_references={REAL_TRAIN: out.real_train_targets}, features=extractor, data_range=e.data_range,
        ssim_win_size=e.ssim_win_size, n_boot=e.n_boot, fid_n_boot=e.fid_n_boot, alpha=e.alpha, seed=params.seed,
        feature_batch_size=e.batch_size, cache_dir=cache_dir)


def score_tables(ev: translation_scores.TranslationEvaluation, params: Params) -> dict[str, pd.DataFrame]:
    """Caption -> method x direction table ("estimate [low, high]") for each score this run has."""
    coverage = f"{1 - params.eval.alpha:.0%}"
    tables = {}
    for metric in SCORES:
        if (ev.summary["metric"] == metric).any():
            detail = f"features: {ev.extractor}" if metric == "fid" else f"data range {params.eval.data_range}"
            tables[f"{metric}: estimate [{coverage} CI over subjects]; {detail}"] = ev.table(metric)
    return tables


def generator_comparisons(ev: translation_scores.TranslationEvaluation, params: Params,
                          directions: list[str]) -> dict[str, pd.DataFrame]:
    """Caption -> table: the ranking of the trained generators by FID, SSIM and PSNR, and paired differences
    (same test images, subject bootstrap) between them and against the identity baseline. Empty without truth."""
    if ev.per_image.empty:
        return {}
    trained = trained_labels(params)
    coverage = f"{1 - params.eval.alpha:.0%}"
    ranking = translation_scores.rankings_agree(
        ev.summary[ev.summary["method"].isin(trained)], metrics_=["fid", "ssim", "psnr_db"], directions=directions,
        exclude=[])
    pairs = [(trained[i], trained[j]) for i in range(len(trained)) for j in range(i + 1, len(trained))]
    pairs += [(label, "identity") for label in trained]
    differences = translation_scores.paired_differences(
        ev.per_image, pairs=pairs, metrics_=["ssim", "psnr_db"], directions=directions, n_boot=params.eval.n_boot,
        alpha=params.eval.alpha, seed=params.seed)
    return {"Ranking of the trained generators by each score": ranking,
            f"Paired differences on the same test images (mean over subjects, {coverage} bootstrap CI)": differences}


def ours_fid_table(summary: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Our FID per direction (estimate and CI) and generator parameters, rows like ``paper.fid_table()``."""
    rows = {}
    for model in params.models:
        label = model_label(params, model)
        fid = summary[(summary["metric"] == "fid") & (summary["method"] == label)]
        row = {r.direction: f"{r.estimate:.3g} [{r.low:.3g}, {r.high:.3g}]" for r in fid.itertuples()}
        g = params.models[model]
        with torch.device("meta"):  # counting only
            net = define_generator(g.generator, params.data.channels, params.data.channels, width=g.width,
                                   norm=g.norm, init_gain=None)
        row["params (M)"] = round(count_parameters(net) / 1e6, 3)
        rows[MODEL_LABELS.get(model, model)] = row
    return pd.DataFrame(rows).T
