"""The paper the CT study reproduces: its setup, its Table 1, its claims and the study's headline numbers.

Jang, Yoo and Hong, "Assessment and Analysis of Fidelity and Diversity for GAN-based Medical
Image Generative Model", Journal of the Korea Computer Graphics Society, 2022.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from medgan.analysis.generative_scores import METRIC_ORDER
from medgan.config import Params
from medgan.reports import Claim, Headline
from medgan.studies.ct_fidelity_diversity.data import CTData

CITATION = {
    "authors": "Yoojin Jang, Jaejun Yoo, Helen Hong",
    "title": "Assessment and Analysis of Fidelity and Diversity for GAN-based Medical Image Generative Model",
    "venue": "Journal of the Korea Computer Graphics Society",
    "year": 2022,
}


def citation() -> str:
    """Authors, title, venue, year — as a reference line."""
    c = CITATION
    return f'{c["authors"]}, "{c["title"]}", {c["venue"]}, {c["year"]}'


# The study's setup (its Sections 3-4); shown beside this run's values by setup_table().
SETUP = {
    "patients": 190,
    "slices": 12160,
    "centre crop (px)": "160 of 512",
    "image size (px)": 128,
    "GAN training slices": "all 12,160",
    "reference and Real sets": "random halves of all slices (6,080 + 6,080)",
    "generated images per seed": 6080,
    "generation seeds": 3,
    "feature extractor": "ImageNet Inception V3 fine-tuned on the training slices (2-class survival head)",
    "extractor training epochs": 10,
    "PRD k-means clusters": 20,
    "PRD beta": 8,
    "improved P&R k": 3,
    "PGGAN batch size": 16,
}
# Karras et al. 2018 (ICLR), Table 2: generator and critic at 1024 px, millions of parameters each.
PGGAN_1024_PARAMETERS_M = 23.1

# Table 1 as printed (mean ± sd over 3 generation seeds). The paper's "Precision"/"Recall" are PRD's F_1/8 / F_8.
_TABLE_1 = {
    "Real": {"IS": "1.30", "FID": "2.05", "PRD F_8 (recall)": "0.997", "PRD F_1/8 (precision)": "0.997",
             "Improved precision": "0.987", "Improved recall": "0.987"},
    "DCGAN": {"IS": "1.12 ± 0.010", "FID": "120.75 ± 0.722", "PRD F_8 (recall)": "0.841 ± 0.004",
              "PRD F_1/8 (precision)": "0.902 ± 0.006", "Improved precision": "0.202 ± 0.002",
              "Improved recall": "0.342 ± 0.011"},
    "PGGAN": {"IS": "1.18 ± 0.005", "FID": "6.79 ± 0.354", "PRD F_8 (recall)": "0.989 ± 0.005",
              "PRD F_1/8 (precision)": "0.991 ± 0.011", "Improved precision": "0.705 ± 0.003",
              "Improved recall": "0.873 ± 0.014"},
}


def table_1() -> pd.DataFrame:
    """Table 1 (fine-tuned Inception V3 features, NSCLC-Radiomics), text cells as printed; "—" where not reported."""
    table = pd.DataFrame(_TABLE_1).T
    for c in METRIC_ORDER:
        if c not in table:
            table[c] = "—"
    table.index.name = "row"
    return table[METRIC_ORDER]


def table_1_means() -> pd.DataFrame:
    """Table 1's means as numbers (NaN where not reported)."""
    return table_1().map(lambda cell: float(cell.split("±")[0]) if cell != "—" else np.nan)


def table_1_beside_ours(ours_text: pd.DataFrame, *, extractor: str = "",
                        rows: tuple[str, ...] = ("Real", "DCGAN", "PGGAN")) -> pd.DataFrame:
    """Metric x (row, paper / ours): Table 1 transposed, ours beside the paper's."""
    paper = table_1()
    blocks = {}
    for r in rows:
        blocks[(r, "paper")] = paper.loc[r]
        blocks[(r, f"ours ({extractor})" if extractor else "ours")] = ours_text.loc[r]
    table = pd.DataFrame(blocks)
    table.index.name = "metric"
    return table.fillna("—")


def setup_table(P: Params, data: CTData, *, extractor: str) -> pd.DataFrame:
    """The study's setup beside this run's (from the parameters, the data and the extractor)."""
    E = P.eval
    n_test = len(data.test)
    loaded = data.loaded or {"train": data.train, "test": data.test}
    halves = {"slice": f"random halves of all slices ({n_test:,} + {len(data.real):,})",
              "patient": f"held-out patients' slices ({n_test:,}) + training patients' ({len(data.real):,})"}
    ours = {
        "patients": len({s for ds in loaded.values() for s in ds.subjects}),
        "slices": sum(len(ds) for ds in loaded.values()),
        "centre crop (px)": P.data.crop_size,
        "image size (px)": P.data.image_size,
        "GAN training slices": f"{len(data.train):,} ({data.split} split)",
        "reference and Real sets": halves[data.split],
        "generated images per seed": E.n_generated or n_test,
        "generation seeds": len(E.seeds),
        "feature extractor": extractor,
        "extractor training epochs": P.features.epochs,
        "PRD k-means clusters": E.prd_clusters,
        "PRD beta": E.prd_beta,
        "improved P&R k": E.k,
        "PGGAN batch size": P.pggan.batch_size,
    }
    return pd.DataFrame({"paper": pd.Series(SETUP), "this run": pd.Series(ours)}).astype(str)


# --- claims and headlines ---------------------------------------------------------------------------------
def _relative_gap(mean: pd.DataFrame, a: str, b: str, metric: str) -> float:
    x, y = mean.loc[a, metric], mean.loc[b, metric]
    return abs(x - y) / max(abs(x) + abs(y), 1e-12) * 2


def claims(numbers: pd.DataFrame, spread: pd.DataFrame, sweep: pd.DataFrame, *,
           models: tuple[str, str] = ("DCGAN", "PGGAN"), untrained: Mapping[str, str] | None = None) -> list[Claim]:
    """The paper's findings tested on our numbers.

    ``numbers`` from :func:`~medgan.analysis.generative_scores.summarise` (metric x mean/sd columns),
    ``spread`` from ``prd_spread``, ``sweep`` from ``k_sweep``; ``untrained`` maps a trained row to
    its untrained baseline row (a check added here; the paper has no such row).
    """
    a, b = models
    mean = numbers.xs("mean", axis=1, level=1)
    paper = table_1_means()
    out = []

    fid_gap, is_gap = _relative_gap(mean, a, b, "FID"), _relative_gap(mean, a, b, "IS")
    out.append(Claim(
        claim="FID separates the two models far more than IS",
        paper=f"FID {paper.loc[a, 'FID']:g} / {paper.loc[b, 'FID']:g}; IS {paper.loc[a, 'IS']:g} / {paper.loc[b, 'IS']:g}",
        ours=f"FID {mean.loc[a, 'FID']:.3g} / {mean.loc[b, 'FID']:.3g}; IS {mean.loc[a, 'IS']:.3g} / {mean.loc[b, 'IS']:.3g} "
             f"(relative gap FID {fid_gap:.2f}, IS {is_gap:.2f})",
        supported=bool(fid_gap > is_gap),
        evidence="relative gap |x − y| / mean(x, y) of FID > that of IS"))

    out.append(Claim(
        claim=f"{b} has a lower FID than {a}",
        paper=f"{paper.loc[b, 'FID']:g} vs {paper.loc[a, 'FID']:g}",
        ours=f"{mean.loc[b, 'FID']:.3g} vs {mean.loc[a, 'FID']:.3g}",
        supported=bool(mean.loc[b, "FID"] < mean.loc[a, "FID"]),
        evidence="mean over generation seeds"))

    pr = ("Improved precision", "Improved recall")
    better = {m: bool(mean.loc[b, m] > mean.loc[a, m]) for m in pr}
    out.append(Claim(
        claim=f"{b} beats {a} on improved precision and recall",
        paper="; ".join(f"{m}: {paper.loc[a, m]:g} vs {paper.loc[b, m]:g}" for m in pr),
        ours="; ".join(f"{m}: {mean.loc[a, m]:.3f} vs {mean.loc[b, m]:.3f}" for m in pr),
        supported=all(better.values()),
        evidence=f"{b} mean > {a} mean on both (over generation seeds)"))

    sd = spread.groupby("model")[[c for c in spread.columns if c not in ("model", "run")]].std(ddof=1)
    prd_sd = float(sd[["PRD F_8 (recall)", "PRD F_1/8 (precision)"]].to_numpy().max())
    imp_sd = float(sd[list(pr)].to_numpy().max())
    out.append(Claim(
        claim="k-means PRD changes from run to run; improved P&R is stable",
        paper="stated in the text (k-means restarts), no numbers",
        ours=f"largest run-to-run sd: PRD {prd_sd:.4f}, improved P&R {imp_sd:.4f} ({spread['run'].nunique()} runs)",
        supported=bool(prd_sd > 0 and imp_sd <= prd_sd / 10),
        evidence="PRD sd > 0 and improved P&R sd ≤ PRD sd / 10"))

    g = sweep.groupby(["model", "k"])[["precision", "recall"]].mean()
    sweep_models = list(dict.fromkeys(sweep["model"]))
    rises = [bool((np.diff(g.loc[m]["precision"]) >= -1e-9).all() and (np.diff(g.loc[m]["recall"]) >= -1e-9).all())
             for m in sweep_models]
    out.append(Claim(
        claim="improved precision and recall rise with k (both models)",
        paper="Fig. 5: both scores rise with k for both models",
        ours=", ".join(f"{m}: k={int(g.loc[m].index.min())}->{int(g.loc[m].index.max())} "
                       f"P {g.loc[m]['precision'].iloc[0]:.2f}->{g.loc[m]['precision'].iloc[-1]:.2f}, "
                       f"R {g.loc[m]['recall'].iloc[0]:.2f}->{g.loc[m]['recall'].iloc[-1]:.2f}" for m in sweep_models),
        supported=all(rises),
        evidence="mean over seeds never decreases from one k to the next"))

    for trained, base in (untrained or {}).items():
        if base not in mean.index:
            continue
        ok = bool(mean.loc[trained, "FID"] <= 0.5 * mean.loc[base, "FID"]
                  and mean.loc[trained, "Improved precision"] >= mean.loc[base, "Improved precision"] + 0.1)
        out.append(Claim(
            claim=f"trained {trained} is far better than an untrained one",
            paper="not in the paper (a floor baseline added here)",
            ours=f"FID {mean.loc[trained, 'FID']:.3g} vs {mean.loc[base, 'FID']:.3g}; improved precision "
                 f"{mean.loc[trained, 'Improved precision']:.3f} vs {mean.loc[base, 'Improved precision']:.3f}",
            supported=ok,
            evidence="FID ≤ half the untrained FID and improved precision ≥ untrained + 0.1"))
    return out


def headlines(numbers: pd.DataFrame, *, extractor: str, n_seeds: int | None = None) -> list[Headline]:
    """FID of both models and PGGAN's improved precision/recall, beside Table 1; with ``n_seeds``
    (the generation seeds the means are over) a 95% t-interval of each mean."""
    mean, sd = numbers.xs("mean", axis=1, level=1), numbers.xs("sd", axis=1, level=1)
    paper = table_1_means()
    picks = [("DCGAN", "FID"), ("PGGAN", "FID"), ("PGGAN", "Improved precision"), ("PGGAN", "Improved recall")]
    out = []
    for row, metric in picks:
        m, ci = float(mean.loc[row, metric]), {}
        if n_seeds and n_seeds > 1 and np.isfinite(sd.loc[row, metric]):
            half = float(student_t.ppf(0.975, n_seeds - 1) * sd.loc[row, metric] / np.sqrt(n_seeds))
            ci = dict(low=m - half, high=m + half, interval=f"95% t-interval over {n_seeds} generation seeds")
        out.append(Headline(label=f"{row} {metric}", ours=m, paper=float(paper.loc[row, metric]),
                            note=f"features: {extractor}", **ci))
    return out
