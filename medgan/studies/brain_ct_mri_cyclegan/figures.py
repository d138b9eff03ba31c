"""Study 3's figures, built on the generic translation figures (:mod:`medgan.reports.translation_figures`).

- :func:`training_images` — a few training images of each modality (different subjects: unpaired).
- :func:`translation_rows` / :func:`translation_grids` — input, each generator's translation and its
  cycle reconstruction, and (phantom) the true image, per direction.
- :func:`score_figure` — every score with its CI, per method and direction.
- :func:`worst_case_figures` — the test images with the lowest SSIM against the truth, per generator
  and direction.
"""

from __future__ import annotations

from typing import Iterator

import matplotlib.pyplot as plt
import torch

from medgan.analysis.translation_scores import TranslationEvaluation
from medgan.config import Params
from medgan.reports.translation_figures import score_panels, translation_grid, worst_case_grid
from medgan.studies.brain_ct_mri_cyclegan.data import BrainData
from medgan.studies.brain_ct_mri_cyclegan.evaluation import (REAL_TRAIN, UNTRAINED, TestTranslations, short_label,
                                                             trained_labels)


def training_images(data: BrainData, n: int) -> plt.Figure:
    """``n`` training images of each modality, one row per modality."""
    return translation_grid(data.training_rows(n), title="Training images (different subjects in the two rows: unpaired)")


def translation_rows(out: TestTranslations, direction: str, *, n: int) -> dict[str, torch.Tensor]:
    """Rows for a translation grid: source, then each trained model's translation and reconstruction, then truth."""
    src, dst = direction.split("→")
    rows = {f"{src} (input)": out.sources[direction][:n]}
    for label, by_direction in out.predictions.items():
        if label == UNTRAINED:
            continue
        rows[f"{short_label(label)} {direction}"] = by_direction[direction][:n]
        rows[f"{short_label(label)} {direction}→{src}"] = out.reconstructions[label][direction][:n]
    if out.truths.get(direction) is not None:
        rows[f"true {dst}"] = out.truths[direction][:n]
    return rows


def translation_grids(out: TestTranslations, *, n: int) -> Iterator[plt.Figure]:
    """One translation grid per direction, ``n`` test images each."""
    for direction in out.sources:
        yield translation_grid(translation_rows(out, direction, n=n), title=f"{direction} on test subjects")


def score_figure(ev: TranslationEvaluation, params: Params) -> plt.Figure:
    """FID, SSIM and PSNR of every method (without the real-train FID reference) with their CIs."""
    coverage = f"{1 - params.eval.alpha:.0%}"
    return score_panels(ev.summary[ev.summary["method"] != REAL_TRAIN], metrics=["fid", "ssim", "psnr_db"],
                        labels={"fid": f"FID ({ev.extractor[:24]})", "ssim": "SSIM vs truth",
                                "psnr_db": "PSNR vs truth (dB)"},
                        title=f"Scores with {coverage} CIs (FID: lower is better; SSIM, PSNR: higher)")


def worst_case_figures(ev: TranslationEvaluation, out: TestTranslations, params: Params) -> Iterator[plt.Figure]:
    """Per trained generator and direction, the ``eval.worst_k`` test images with the lowest SSIM
    (input, translation, truth, |error|), as kept while scoring. Nothing without truth."""
    for label in trained_labels(params):
        for direction in out.sources:
            worst = ev.worst.get((label, direction))
            if worst is None or worst.source is None:
                continue
            yield worst_case_grid(
                worst.source, worst.prediction, worst.truth,
                captions=[f"{r.subject[:8]} #{r.index}\nSSIM {r.ssim:.2f}, PSNR {r.psnr_db:.1f}"
                          for r in worst.rows.itertuples()],
                title=f"{label}, {direction}: {len(worst.rows)} worst test images by SSIM")
