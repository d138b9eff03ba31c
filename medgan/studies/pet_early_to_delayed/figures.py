"""Study 4's own figures: test slices with every prediction and its error, and the worst slices per model.

Both are the generic translation figures (:mod:`medgan.reports.translation_figures`) fed with
this study's rows: the grid's slices and the worst ones were kept while the test set was scored.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from medgan.reports import translation_figures
from medgan.studies.pet_early_to_delayed.evaluation import DIRECTION, Scores, TestTranslations


def grid_rows(out: TestTranslations, *, n: int) -> dict[str, torch.Tensor]:
    """Rows for a translation grid: early, true delayed, each prediction and its absolute error.

    ``n`` test slices are picked evenly through the test set so the grid spans the body.
    """
    idx = torch.linspace(0, len(out.sources) - 1, n).round().long()
    rows = {"early (input)": out.sources[idx], "delayed (truth)": out.truth[idx]}
    for method, pred in out.predictions.items():
        rows[method] = pred[idx]
        # error 0..2 shown on the [-1, 1] scale
        rows[f"|{method} − truth|"] = (pred[idx] - out.truth[idx]).abs() - 1.0
    return rows


def prediction_grid(out: TestTranslations, *, n: int) -> plt.Figure:
    """``n`` test slices: input, truth, each model's prediction and its absolute error."""
    return translation_figures.translation_grid(grid_rows(out, n=n),
                                                title="Test slices: input, truth, predictions and absolute errors")


def worst_case_grids(scores: Scores) -> list[plt.Figure]:
    """Per trained model, its ``eval.worst_k`` worst test slices by SSIM (kept while scoring):
    input, prediction, truth, error."""
    figures = []
    for method in scores.samples.predictions:
        worst = scores.evaluation.worst.get((method, DIRECTION))
        if worst is None:
            continue
        captions = [f"{row.subject[:8]} #{row.index}\nSSIM {row.ssim:.2f}" for row in worst.rows.itertuples()]
        figures.append(translation_figures.worst_case_grid(worst.source, worst.prediction, worst.truth,
                                                           captions=captions,
                                                           title=f"{method}: worst test slices by SSIM"))
    return figures
