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

from medgan.reports.results import Claim, Headline

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


def _estimate(summary: pd.DataFrame, method: str, metric: str) -> float:
    rows = summary[(summary["method"] == method) & (summary["metric"] == metric)]
    return float(rows["estimate"].iloc[0]) if len(rows) else math.nan


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
            out.append(Headline(label=f"{method} {column.split()[0]}",
                                ours=_estimate(summary, method, METRIC_OF[column]),
                                paper=REPORTED[method][column], note=note))
    return out
