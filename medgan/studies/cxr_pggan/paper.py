"""The thesis study 5 reproduces: its citation, its reported numbers, and its claims checked by a run.

Minji Kim, *Image Synthesis and Anomaly Detection on Chest Radiographs using Generative
Adversarial Networks*, master's thesis (M.Eng.), Department of Medical Science, University of
Ulsan Graduate School (Asan Medical Center), 2021. Its data are private.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from medgan.analysis.anogan import ANOGAN, BASELINE, AnomalyEvaluation
from medgan.analysis.classifier_fidelity import ThreeStepResult
from medgan.config import Params
from medgan.reports import Claim, Headline

CITATION = {"authors": "Minji Kim",
            "title": "Image Synthesis and Anomaly Detection on Chest Radiographs using Generative Adversarial Networks",
            "venue": "Master's thesis, Department of Medical Science, University of Ulsan Graduate School",
            "year": 2021}


def citation() -> str:
    """Authors, title, venue, year, as one line."""
    c = CITATION
    return f"{c['authors']}, *{c['title']}*, {c['venue']}, {c['year']}"


# The thesis's networks (for the parameter-count table): PGGAN at 1024 px with z 512, ResNet-50 classifiers.
PGGAN_SETUP = {"resolution": 1024, "z_dim": 512, "width": 1.0}
CLASSIFIER_ARCH = "resnet50"

# Part (a), Tables 3-5 and Figures 7-9 (Asan Medical Center CXRs, ResNet-50, PGGAN at 1024 px).
THREE_STEP = pd.DataFrame(
    {"AUROC": [0.9830, 0.9673, 0.8810], "sensitivity": [0.934, 0.908, 0.851], "specificity": [0.933, 0.905, 0.816]},
    index=["classifier(real) on real test", "classifier(synthetic) on synthetic test",
           "classifier(synthetic) on real test"])
REAL_ON_REAL = "classifier(real) on real test"
SYNTHETIC_ON_REAL = "classifier(synthetic) on real test"

# Part (b): single-finding images among 30,000 generated, and the classifier likelihood reached at
# the end of each axis walk (Figure 10; none found for nodule, pneumothorax).
AXES_GENERATED = 30000
AXES = pd.DataFrame(
    {"single-finding images": [8683, 478, 484, 215, 2235, 0],
     "axis found": [None, False, True, True, True, False],
     "likelihood at the end of the walk": [None, None, 0.97, 0.89, 0.99, None]},
    index=["Normal", "Nodule", "Consolidation", "Interstitial Opacity", "Pleural Effusion", "Pneumothorax"])

# Part (c), Table 6: 100 real CXRs of 12 findings read by a radiologist on the AnoGAN residual maps
# (trained = among the supervised 6-class CNN's classes; it found 37/40 of those, 14/60 of the rest).
TABLE6 = pd.DataFrame(
    {"trained": [True, False, True, True, False, False, True, True, False, False, False, False],
     "n": [8, 9, 6, 9, 9, 6, 8, 9, 10, 10, 6, 10],
     "detected": [8, 9, 6, 9, 8, 5, 7, 8, 8, 6, 5, 10]},
    index=["Nodule", "Calcification", "Consolidation", "Interstitial Opacity", "Atelectasis",
           "Mediastinal Widening", "Pleural Effusion", "Pneumothorax", "Rib Fracture", "Pneumomediastinum",
           "Subcutaneous Emphysema", "Pneumoperitoneum"])
TABLE6["rate"] = TABLE6["detected"] / TABLE6["n"]
SUPERVISED_DETECTION = {"trained findings": (37, 40), "untrained findings": (14, 60), "all abnormal": (51, 100)}
# Table 6's rows sum to 89 of 100; the thesis's text says 90.
ANOGAN_ALL_ABNORMAL = (int(TABLE6["detected"].sum()), int(TABLE6["n"].sum()))
SUPERVISED = "supervised multi-label classifier"  # the method name evaluate_anomaly_detection gives it


# The thesis's method settings, beside this run's in :func:`settings_comparison`.
SETTINGS = {
    "image size (px)": 1024,
    "PGGAN latent size": 512,
    "classifier": CLASSIFIER_ARCH,
    "pseudo-label abnormal when P(abnormal) >": 0.7,
    "pseudo-label normal when P(abnormal) <": 0.3,
    "operating point P(abnormal) >=": 0.5,
    "single-finding image: top class >=": 0.9,
    "single-finding image: every other class <=": 0.1,
    "generated images for the axes": AXES_GENERATED,
    "AnoGAN image score": "mse",
    "AnoGAN residual smoothing sigma (px)": 0.0,
    "AnoGAN inversion steps x restarts": "—",
    "AnoGAN image threshold: specificity on normal validation images": "radiologist reading",
    "Dice pixel threshold: quantile of normal validation maps": "—",
}


def score_label(kind: str, sigma: float) -> str:
    """An AnoGAN image score in words, saying whether it is the thesis's (§4.2: the mean squared
    residual, on the raw difference map) or ours."""
    what = {"mse": "mean squared residual", "top1pct": "mean of the largest 1% |residual|"}[kind]
    where = "raw map" if sigma == 0 else f"map smoothed (Gaussian, sigma {sigma:g} px)"
    return f"{what}, {where} ({'the thesis' if (kind, sigma) == ('mse', 0) else 'ours'})"


def settings_comparison(P: Params) -> pd.DataFrame:
    """The method's settings in this run (from the parameters) beside the thesis's."""
    f, x, a = P.fidelity, P.axes, P.anogan
    ours = [P.data.image_size, P.pggan.z_dim, P.classifier.arch, f.positive_above, f.negative_below,
            P.classifier.threshold, x.keep_above, x.others_below, x.n_generate, a.score_kind, a.sigma,
            f"{a.steps} x {a.restarts}", a.specificity, a.pixel_quantile]
    return pd.DataFrame({"this run": [str(v) for v in ours], "thesis": [str(v) for v in SETTINGS.values()]},
                        index=pd.Index(list(SETTINGS), name="setting"))


def three_step_comparison(three: ThreeStepResult) -> pd.DataFrame:
    """The thesis's Tables 3-5 beside ours (AUROC, sensitivity, specificity per evaluation)."""
    ours = three.table().loc[THREE_STEP.index, ["AUROC", "sensitivity", "specificity"]]
    return pd.concat({"thesis": THREE_STEP, "ours": ours}, axis=1)


def axes_comparison(axes_table: pd.DataFrame, n_generated: int) -> pd.DataFrame:
    """Single-finding generated images per class and whether an axis was fitted: the thesis's and ours."""
    return pd.concat({f"thesis ({AXES_GENERATED:,} generated)": AXES, f"ours ({n_generated:,} generated)": axes_table},
                     axis=1)


def table6_comparison(evaluation: AnomalyEvaluation, *, method: str = ANOGAN) -> pd.DataFrame:
    """The thesis's Table 6 beside ours (per finding detected / n and rate)."""
    ours = evaluation.detection[method][["detected", "n", "rate"]]
    paper = TABLE6[["detected", "n", "rate"]].copy()
    totals = pd.DataFrame({"detected": [v[0] for v in SUPERVISED_DETECTION.values()],
                           "n": [v[1] for v in SUPERVISED_DETECTION.values()]},
                          index=[f"{k} (supervised CNN)" for k in SUPERVISED_DETECTION])
    totals["rate"] = totals["detected"] / totals["n"]
    detected, n = ANOGAN_ALL_ABNORMAL
    paper = pd.concat([paper, pd.DataFrame({"detected": [detected], "n": [n], "rate": [detected / n]},
                                           index=["all abnormal"]), totals])
    combined = pd.concat({"thesis (AnoGAN, radiologist reading)": paper, f"ours ({method}, threshold)": ours}, axis=1)
    for column in combined.columns:
        if column[1] in ("detected", "n"):
            combined[column] = combined[column].astype("Int64")  # counts, not 8.000
    return combined


# --- claims -------------------------------------------------------------------------------------
def _fidelity_claims(three: ThreeStepResult) -> list[Claim]:
    real, syn = three.results[REAL_ON_REAL], three.results[SYNTHETIC_ON_REAL]
    p_real, p_syn = THREE_STEP.loc[REAL_ON_REAL, "AUROC"], THREE_STEP.loc[SYNTHETIC_ON_REAL, "AUROC"]
    return [
        Claim("(a) classifier(synthetic) recognises abnormal real CXRs well above chance",
              f"AUROC {p_syn:.3f} (real-trained {p_real:.3f})",
              f"AUROC {syn['auroc']:.3f} [{syn['auroc_low']:.3f}, {syn['auroc_high']:.3f}] (real-trained {real['auroc']:.3f})",
              supported=bool(syn["auroc_low"] > 0.5), evidence="95% CI lower bound of the AUROC > 0.5"),
        Claim("(a) the gap between the two classifiers is small / not significant",
              "'no statistical difference (p < 0.0001)': the p-value says the opposite",
              f"ΔAUROC {three.delong['difference']:.3f}, DeLong p = {three.delong['p_value']:.2g}",
              supported=bool(three.delong["p_value"] >= 0.05), evidence="DeLong p >= 0.05 on the same real test cases"),
    ]


def _axes_claims(axes_summary: pd.DataFrame, severity_available: bool) -> list[Claim]:
    if not len(axes_summary):
        return [Claim("(b) latent disease axes exist", "3 of 5 findings", "no finding had enough single-finding images",
                      supported=False, evidence="at least one axis fitted")]
    found = AXES["likelihood at the end of the walk"].dropna()
    rises = axes_summary["likelihood at end"] > axes_summary["likelihood at start"] + 0.3
    claims = [Claim("(b) moving a normal latent along a finding's axis raises that finding's likelihood",
                    "0 -> " + " / ".join(f"{v:.2f}" for v in found) + " (" + " / ".join(found.index.str.lower()) + ")",
                    "; ".join(f"{k}: {v['likelihood at start']:.2f} -> {v['likelihood at end']:.2f}"
                              for k, v in axes_summary.iterrows()),
                    supported=bool(rises.any()), evidence="likelihood rises by > 0.3 along at least one axis")]
    if severity_available and "Spearman(step, severity)" in axes_summary:
        rho = axes_summary["Spearman(step, severity)"]
        claims.append(Claim("(b) the axis controls severity (radiologist: up to moderate/severe)", "visual scoring only",
                            "; ".join(f"{k}: rho {v:.2f}" for k, v in rho.items()),
                            supported=bool((rho > 0.5).any()),
                            evidence="Spearman(step, measured severity) > 0.5 along at least one axis"))
    return claims


def _anomaly_claims(evaluation: AnomalyEvaluation) -> list[Claim]:
    s, d = evaluation.summary, evaluation.detection
    ano, base = s.loc[ANOGAN], s.loc[BASELINE]
    detected, n = ANOGAN_ALL_ABNORMAL
    claims = [Claim("(c) AnoGAN separates abnormal from normal CXRs without labels",
                    f"{detected}/{n} abnormal detected (radiologist reading; no normals scored)",
                    f"image AUROC {ano['image AUROC']:.3f} [{ano['AUROC low']:.3f}, {ano['AUROC high']:.3f}] "
                    f"(mean-image baseline {base['image AUROC']:.3f}, DeLong p = {base['DeLong p vs AnoGAN']:.2g})",
                    supported=bool(ano["AUROC low"] > 0.5), evidence="95% CI lower bound of the image AUROC > 0.5")]
    test = evaluation.localisation_test
    for metric in ("pixel AUROC", "Dice") if test is not None else ():
        t = test.loc[metric]
        claims.append(Claim(f"(c) AnoGAN's difference map localises lesions better than the mean-image baseline: "
                            f"{metric} (beyond the thesis: vs masks)", "shown visually",
                            f"{ano[metric]:.3f} vs {base[metric]:.3f}; difference {t['difference']:+.3f} "
                            f"[{t['low']:+.3f}, {t['high']:+.3f}] (paired bootstrap over images)",
                            supported=bool(t["low"] > 0), evidence="95% paired-bootstrap CI of the difference > 0"))
    if SUPERVISED in d.columns.get_level_values(0) and "untrained findings" in d.index:
        a_rate = d.loc["untrained findings", (ANOGAN, "rate")]
        s_rate = d.loc["untrained findings", (SUPERVISED, "rate")]
        cnn, cnn_n = SUPERVISED_DETECTION["untrained findings"]
        claims.append(Claim("(c) AnoGAN detects findings the supervised CNN was never trained on better than it",
                            f"untrained: CNN {cnn}/{cnn_n} ({cnn / cnn_n:.0%}); AnoGAN {detected / n:.0%} overall",
                            f"untrained findings detected: AnoGAN {a_rate:.0%}, classifier {s_rate:.0%} "
                            "(same threshold rule on normal validation images)",
                            supported=bool(a_rate > s_rate), evidence="AnoGAN's detection rate > the classifier's"))
    has_classifier = SUPERVISED in s.index
    claims.append(Claim("(c) the iterative search is slow (the thesis's stated weakness)", "no time given",
                        f"{ano['s / query']:.2f} s per query vs {s.loc[SUPERVISED, 's / query']:.4f} s for the classifier"
                        if has_classifier else f"{ano['s / query']:.2f} s per query",
                        supported=bool(has_classifier and ano["s / query"] > 10 * s.loc[SUPERVISED, "s / query"]),
                        evidence="AnoGAN's time per query > 10 x the classifier's"))
    return claims


def claims(three: ThreeStepResult, axes_summary: pd.DataFrame, severity_available: bool,
           evaluation: AnomalyEvaluation) -> list[Claim]:
    """Each claim of the thesis, its number, ours, and whether this run supports it (computed, with its rule)."""
    return [*_fidelity_claims(three), *_axes_claims(axes_summary, severity_available), *_anomaly_claims(evaluation)]


def headlines(three: ThreeStepResult, evaluation: AnomalyEvaluation, *, note: str = "") -> list[Headline]:
    """Classifier(real) and classifier(synthetic) AUROC on the real test set, AnoGAN's image AUROC and
    its detection rate of abnormal queries, beside the thesis's values."""
    detected, n = ANOGAN_ALL_ABNORMAL
    d = evaluation.detection
    rate: Any = d.loc["all abnormal", (ANOGAN, "rate")] if "all abnormal" in d.index else float("nan")
    rate_ci: tuple[float | None, float | None] = (None, None)
    if "all abnormal" in d.index and d.loc["all abnormal", (ANOGAN, "n")] > 0:
        found, queries = int(d.loc["all abnormal", (ANOGAN, "detected")]), int(d.loc["all abnormal", (ANOGAN, "n")])
        wilson = binomtest(found, queries).proportion_ci(confidence_level=0.95, method="wilson")
        rate_ci = (float(wilson.low), float(wilson.high))
    boot = "95% bootstrap CI over test images"

    def auroc(name: str) -> dict[str, Any]:
        r = three.results[name]
        return dict(ours=float(r["auroc"]), low=float(r["auroc_low"]), high=float(r["auroc_high"]), interval=boot)

    s = evaluation.summary
    return [
        Headline("AUROC classifier(real), real test", paper=float(THREE_STEP.loc[REAL_ON_REAL, "AUROC"]), note=note,
                 **auroc(REAL_ON_REAL)),
        Headline("AUROC classifier(synthetic), real test", paper=float(THREE_STEP.loc[SYNTHETIC_ON_REAL, "AUROC"]),
                 note=note, **auroc(SYNTHETIC_ON_REAL)),
        Headline("AnoGAN image AUROC (normal vs abnormal)", float(s.loc[ANOGAN, "image AUROC"]), None,
                 "the thesis scored no normal images", low=float(s.loc[ANOGAN, "AUROC low"]),
                 high=float(s.loc[ANOGAN, "AUROC high"]), interval=boot),
        Headline("AnoGAN abnormal queries detected", float(np.float64(rate)), detected / n,
                 "thesis: radiologist reading; ours: score threshold set on normal validation images",
                 low=rate_ci[0], high=rate_ci[1], interval="95% Wilson interval" if rate_ci[0] is not None else ""),
    ]
