"""The paper study 4 reproduces: its citation, its reported numbers, its claims and the headline numbers.

Almaslamani Muath, Kangsan Kim, Byung Hyun Byun and Sang-Keun Woo, "Comparison of Paired and
Unpaired Image-to-image Translation for 18F-FDG Delayed PET Generation" (Korean-language
conference paper, Korea Institute of Radiological and Medical Sciences). The paper's text names
neither its venue nor its year; its latest reference is from 2020.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from medgan.config import Params
from medgan.models.image_to_image import define_generator
from medgan.reports.results import Claim, Headline
from medgan.reports.translation_figures import inference_mode_text
from medgan.studies.pet_early_to_delayed.jobs import MODEL_LABELS, augmentation

AUTHORS = "Almaslamani Muath, Kangsan Kim, Byung Hyun Byun, Sang-Keun Woo"
TITLE = "Comparison of Paired and Unpaired Image-to-image Translation for 18F-FDG Delayed PET Generation"
VENUE = ("Korean-language conference paper (Korea Institute of Radiological and Medical Sciences); "
         "venue not named in its text")
YEAR = None  # not printed in the paper's text (its latest reference is from 2020)
SETUP = ("18 patients, early (7–21 min) and delayed (42–63 min) FDG PET after injection, 3D OSEM, "
         "7,002 axial slices of 128×128 at 5.3456 × 5.3456 × 5.0 mm")

# Table 2 of the paper: Pix2pix vs CycleGAN on the true delayed PET (PSNR range unstated; ImageNet-Inception FID).
REPORTED = {"Pix2pix": {"PSNR (dB)": 57.85, "FID": 4.953},
            "CycleGAN": {"PSNR (dB)": 47.45, "FID": 17.33}}
# Our metric names for the paper's columns.
METRIC_OF = {"PSNR (dB)": "psnr_db", "FID": "fid", "SSIM": "ssim"}
LOWER_IS_BETTER = {"fid", "mae"}


def citation() -> str:
    """The paper as one line: authors, title, venue, year."""
    return f"{AUTHORS}, \"{TITLE}\", {VENUE}, {YEAR or 'year not stated'}."


def reported_table() -> pd.DataFrame:
    """The paper's Table 2: one row per method, columns PSNR (dB) and FID."""
    return pd.DataFrame(REPORTED).T


def _estimate(summary: pd.DataFrame, method: str, metric: str, column: str = "estimate") -> float:
    rows = summary[(summary["method"] == method) & (summary["metric"] == metric)]
    return float(rows[column].iloc[0]) if len(rows) else math.nan


def ours_table(summary: pd.DataFrame, methods) -> pd.DataFrame:
    """Our subject-level PSNR, FID and SSIM per method, in the shape of :func:`reported_table`.

    ``summary``: rows method, metric, estimate (``TranslationEvaluation.summary``).
    """
    return pd.DataFrame({m: {column: _estimate(summary, m, metric) for column, metric in METRIC_OF.items()}
                         for m in methods}).T


def _beats(a: float, b: float, metric: str) -> bool:
    """Whether estimate ``a`` is better than ``b`` (higher, or lower for FID/MAE); False when either is missing."""
    if not (np.isfinite(a) and np.isfinite(b)):
        return False
    return bool(a < b) if metric in LOWER_IS_BETTER else bool(a > b)


def claims(summary: pd.DataFrame) -> list[Claim]:
    """The paper's claims checked on this run's subject-level estimates.

    The paper: the delayed frame can be predicted from the early one (here: Pix2pix must beat the
    early image used as the prediction, on PSNR and SSIM), and the paired model beats the unpaired
    one on PSNR and FID (Table 2).
    """
    out = []
    for metric, label in (("psnr_db", "PSNR"), ("ssim", "SSIM")):
        a, b = _estimate(summary, "Pix2pix", metric), _estimate(summary, "identity", metric)
        out.append(Claim(claim=f"Pix2pix predicts the delayed frame better than the early frame itself ({label})",
                         paper="delayed PET generated from early PET (no baseline reported)",
                         ours=f"Pix2pix {a:.3f} vs identity {b:.3f}", supported=_beats(a, b, metric),
                         evidence=f"subject-level mean {label}: Pix2pix > identity"))
    for column, label in (("PSNR (dB)", "PSNR"), ("FID", "FID")):
        metric = METRIC_OF[column]
        a, b = _estimate(summary, "Pix2pix", metric), _estimate(summary, "CycleGAN", metric)
        sign = "<" if metric in LOWER_IS_BETTER else ">"
        out.append(Claim(claim=f"Pix2pix (paired) beats CycleGAN (unpaired) on {label}",
                         paper=f"{REPORTED['Pix2pix'][column]:g} vs {REPORTED['CycleGAN'][column]:g}",
                         ours=f"{a:.3f} vs {b:.3f}", supported=_beats(a, b, metric),
                         evidence=f"{'subject-level mean' if metric != 'fid' else 'FID on all test slices'}: "
                                  f"Pix2pix {sign} CycleGAN"))
    return out


def headlines(summary: pd.DataFrame, *, extractor: str, psnr_range: str) -> list[Headline]:
    """PSNR and FID of Pix2pix and CycleGAN beside the paper's Table 2.

    ``extractor``: the FID feature network's name; ``psnr_range``: the declared PSNR range, in words.
    """
    out = []
    for column, note in (("PSNR (dB)", f"range {psnr_range}; the paper's range is unstated"),
                         ("FID", f"features: {extractor}; paper: ImageNet Inception")):
        for method in ("Pix2pix", "CycleGAN"):
            metric = METRIC_OF[column]
            out.append(Headline(label=f"{method} {column.split()[0]}", ours=_estimate(summary, method, metric),
                                paper=REPORTED[method][column], note=note,
                                low=_estimate(summary, method, metric, "low"),
                                high=_estimate(summary, method, metric, "high"),
                                interval="95% bootstrap CI over subjects"))
    return out


# The reference implementation's defaults for each protocol row (pytorch-CycleGAN-and-pix2pix: options/*.py,
# data/aligned_dataset.py, data/unaligned_dataset.py, data/base_dataset.py, test.py); the paper states none of them.
REFERENCE_PROTOCOL = {
    "sampling": "batch 1; Pix2pix: aligned (A, B) pairs, shuffled; CycleGAN: each A in turn (shuffled), "
                "a B drawn at random for it",
    "augmentation": "resize to 286 px and a random 256 px crop; left-right flip with probability 0.5; "
                    "one draw for a Pix2pix pair (aligned_dataset.py), independent draws for CycleGAN",
    "test slices": "resized to 256 px, no crop, no flip (test.py: no_flip, load_size = crop_size)",
    "generator": "unet_256 (Pix2pix default; the paper names no network)",
    "inference mode": "train unless --eval (test.py): batch statistics of batches of 1, dropout on",
    "schedule": "200 epochs: 100 at Adam lr 2e-4, betas (0.5, 0.999), then 100 decaying linearly to 0",
}


def _dropout_layers(net: torch.nn.Module) -> int:
    return sum(isinstance(m, torch.nn.Dropout) for m in net.modules())


def protocol_table(params: Params) -> pd.DataFrame:
    """What this run actually did, computed from ``params``, beside the reference's defaults: how training
    batches are drawn, the augmentation of each model, the test slices, the generator, its inference mode
    (both modes are scored; this one fills the other tables) and the schedule."""
    t, g, bs = params.train, params.generator, int(params.train.batch_size)
    augmentations = {MODEL_LABELS[m]: augmentation(params, m) for m in MODEL_LABELS}
    with torch.device("meta"):  # which layers the generators have, nothing computed
        nets = {"Pix2pix": define_generator(g.name, 1, 1, width=int(g.width), norm=g.norm, dropout=bool(g.dropout),
                                            init_gain=None),
                "CycleGAN": define_generator(g.name, 1, 1, width=int(g.width), norm=g.norm, dropout=False,
                                             init_gain=None)}
    ours = {
        "sampling": f"batch {bs}; Pix2pix: (early, delayed) pairs of train slices shuffled without replacement each "
                    f"epoch; CycleGAN: early and delayed train slices drawn independently (every combination "
                    f"shuffled), the pairing unused; seed {params.seed}",
        "augmentation": "; ".join(f"{label}: {aug.describe() if aug is not None else 'none'}"
                                  for label, aug in augmentations.items()),
        "test slices": f"{params.data.image_size} px, no crop, no flip",
        "generator": f"{g.name}, width {g.width}, {g.norm} norm; Pix2pix's has {_dropout_layers(nets['Pix2pix'])} "
                     f"dropout layers (the reference puts them only between two 8 × width levels), CycleGAN's none",
        "inference mode": inference_mode_text(params.inference_mode, batch_size=int(params.inference_batch_size),
                                              seed=int(params.seed), generators=nets),
        "schedule": f"{t.steps} iterations of batch {bs} per model; Adam lr {t.lr:g}, betas {tuple(t.betas)}, "
                    f"constant for the first {t.decay_start:.0%}, then decaying linearly to 0",
    }
    return pd.DataFrame({"this run": ours, "reference default": REFERENCE_PROTOCOL}).rename_axis("protocol")
