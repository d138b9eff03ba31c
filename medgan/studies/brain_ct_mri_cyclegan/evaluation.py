"""Study 3's evaluation: translate the test folders with each CycleGAN and score the translations.

The scoring itself is generic (:mod:`medgan.analysis.translation_scores`): PSNR/SSIM/MAE against the
truth where the phantom has it, FID against the real test images of the target modality, bootstrap
CIs over test subjects, an identity baseline. This module wires the study's models, data and
parameters into it, and names the methods ("ResNet-9 (resnet_9blocks, w16)"). Test images are
translated and scored batch by batch, so memory holds scores and features, not the test set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd
import torch
from torch.utils.data import DataLoader

from medgan.analysis import translation_scores
from medgan.config import Params
from medgan.models.image_to_image import count_parameters, define_generator
from medgan.data.base import subjects_of
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
    """The first test images of each direction ("CT→MRI") with every model's translation: the grids' rows.

    Only ``eval.grid_n`` images per direction are kept; the whole test set is scored as it is
    translated (:func:`translate_and_score`) and never held in memory.
    """

    sources: dict[str, torch.Tensor]                      # direction -> source images (n, C, H, W)
    truths: dict[str, torch.Tensor | None]                # direction -> true target images (phantom) or None
    predictions: dict[str, dict[str, torch.Tensor]]       # method -> direction -> translations
    reconstructions: dict[str, dict[str, torch.Tensor]]   # method -> direction -> cycle reconstructions


def test_batches(dataset, params: Params) -> DataLoader:
    """A test folder in order, ``eval.batch_size`` items at a time (``data.num_workers`` loader processes)."""
    return DataLoader(dataset, batch_size=int(params.eval.batch_size), shuffle=False,
                      num_workers=int(params.data.num_workers))


def generators(steps: dict[str, CycleGANStep], params: Params, *,
               include_untrained: bool = True) -> dict[str, tuple[torch.nn.Module, torch.nn.Module]]:
    """Method label -> (G_AB, G_BA) of every trained step (``{model key: step}``) and, as a baseline,
    of freshly initialised (untrained) ResNet generators of the same configuration."""
    out = {model_label(params, m): (s.nets["G_AB"], s.nets["G_BA"]) for m, s in steps.items()}
    if include_untrained and "resnet" in params.models:
        seed_everything(int(params.seed) + 1)  # other weights than the trained model started from
        nets = build_networks(params, "resnet")
        out[UNTRAINED] = (nets["G_AB"], nets["G_BA"])
    return out


def translate_and_score(steps: dict[str, CycleGANStep], data: BrainData, extractor: torch.nn.Module, params: Params,
                        *, cache_dir: str | os.PathLike | None = None, include_untrained: bool = True
                        ) -> tuple[TestTranslations, translation_scores.TranslationEvaluation]:
    """Translate both test folders with each trained step (and an untrained baseline), scoring batch by batch.

    Each batch of translations is reduced at once to PSNR/SSIM/MAE against the truth (phantom) and to
    FID features in ``extractor``'s space; FID compares them with the real test images of the target
    modality, and the real train images of that modality give a reference row (``REAL_TRAIN``). Only
    the grid images (``eval.grid_n`` per direction) and the ``eval.worst_k`` worst ones stay in memory.
    ``cache_dir``: the feature cache (the real sets' features are computed once per extractor).
    """
    e = params.eval
    bs = int(e.batch_size)
    nets = generators(steps, params, include_untrained=include_untrained)
    scorer = translation_scores.TranslationScorer(extractor, data_range=e.data_range, ssim_win_size=e.ssim_win_size,
                                                  keep_worst=int(e.worst_k), worst_metric="ssim")
    ab, ba = data.direction_ab, data.direction_ba
    sides = {ab: (data.test_a, data.test_b, data.train_b), ba: (data.test_b, data.test_a, data.train_a)}
    for direction, (_, real_test, _) in sides.items():
        scorer.set_reference(direction, translation_scores.dataset_features(
            extractor, real_test, batch_size=bs, cache_dir=cache_dir), subjects_of(real_test))
    n = int(e.grid_n)
    grid = TestTranslations(sources={}, truths={}, predictions={label: {} for label in nets if label != UNTRAINED},
                            reconstructions={label: {} for label in nets if label != UNTRAINED})
    for direction, (source_set, _, _) in sides.items():
        kept: dict[str, list[torch.Tensor]] = {}
        seen = 0  # test images of this direction translated so far (the dropout seeds follow the image index)
        for batch in test_batches(source_set, params):
            source, subjects = batch["image"], list(batch["subject"])
            truth = batch.get("target") if data.has_truth else None
            room = max(0, n - sum(len(t) for t in kept.get("source", [])))
            for label, (g_ab, g_ba) in nets.items():
                forward, backward = (g_ab, g_ba) if direction == ab else (g_ba, g_ab)
                fake = _translate(forward, source, params, start=seen)
                scorer.add(label, direction, fake, subjects=subjects, truth=truth, source=source)
                if room and label != UNTRAINED:  # the grid's images, copied out of the batch
                    kept.setdefault(label, []).append(fake[:room].clone())
                    kept.setdefault(f"{label}\0cycle", []).append(_translate(backward, fake[:room], params, start=seen))
            scorer.add("identity", direction, source, subjects=subjects, truth=truth, source=source)
            seen += len(source)
            if room:
                kept.setdefault("source", []).append(source[:room].clone())
                if truth is not None:
                    kept.setdefault("truth", []).append(truth[:room].clone())
        grid.sources[direction] = torch.cat(kept["source"])
        grid.truths[direction] = torch.cat(kept["truth"]) if "truth" in kept else None
        for label in grid.predictions:
            grid.predictions[label][direction] = torch.cat(kept[label])
            grid.reconstructions[label][direction] = torch.cat(kept[f"{label}\0cycle"])
    for direction, (_, _, real_train) in sides.items():
        scorer.add_features(REAL_TRAIN, direction, translation_scores.dataset_features(
            extractor, real_train, batch_size=bs, cache_dir=cache_dir), subjects_of(real_train))
    return grid, scorer.evaluate(n_boot=e.n_boot, fid_n_boot=e.fid_n_boot, alpha=e.alpha, seed=params.seed)


def _translate(generator: torch.nn.Module, images: torch.Tensor, params: Params, *, start: int) -> torch.Tensor:
    """``images`` (the test images ``start ..``) through ``generator`` in ``params.inference_mode``: eval in
    batches of ``eval.batch_size``; train in batches of ``inference_batch_size`` (their own batch statistics,
    dropout seeded by ``seed`` and the image index)."""
    mode = params.inference_mode
    batch_size = int(params.eval.batch_size) if mode == "eval" else int(params.inference_batch_size)
    with torch.no_grad():  # inference only: no autograd graph kept across the batch
        return translate(generator, images, batch_size=batch_size, mode=mode, seed=int(params.seed), start=start)


def feature_extractor(data: BrainData, params: Params, *, run_dir: str | os.PathLike | None = None) -> torch.nn.Module:
    """The FID feature network of ``eval.extractor`` (Inception when its weights exist, else a CT-vs-MRI CNN
    trained through the engine in ``run_dir``, reloaded when finished)."""
    pretrained = translation_scores.uses_inception(params.eval.extractor)  # then no training image is read
    return translation_scores.choose_extractor(
        train_images=None if pretrained else data.extractor_training_set(), train_labels=None,
        channels=int(params.data.channels),
        domain_cnn=params.eval.domain_cnn.to_dict(), prefer=params.eval.extractor, run_dir=run_dir)


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
