"""The paper study 1 reproduces, what it reported, and its claims checked against this run.

The paper shows curves only (its figures 10 and 11), no table of values: FID per target domain
fell over training in both modes with small differences between domains, and LPIPS (diversity)
fell too, which the authors attribute to the 2 stains other than the 3 with distinctive features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd

from medgan.config import Params, load_params
from medgan.data.augment import Augment
from medgan.reports import Claim, Headline, paper_vs_ours
from medgan.studies.rxrx19a_stargan_v2.jobs import NOTEBOOK
from medgan.train.stargan_v2 import AUGMENT_KEYS


@dataclass(frozen=True)
class Citation:
    authors: str
    title: str
    venue: str
    year: int

    def __str__(self) -> str:
        return f"{self.authors}, “{self.title}”, {self.venue}, {self.year}"


CITATION = Citation(
    authors="Ha Rim Lee and Yong Do Her",
    title="A Design and Performance Evaluation of Automatic Cell Image Generating System Using COVID-19 "
          "Style Transformation Model",
    venue="Journal of Knowledge Information Technology and Systems (KKITS)",
    year=2021)
STARGAN_V2 = Citation(authors="Yunjey Choi, Youngjung Uh, Jaejun Yoo and Jung-Woo Ha",
                      title="StarGAN v2: Diverse Image Synthesis for Multiple Domains",
                      venue="IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)", year=2020)

# The paper's setup (section 2 and 3.3).
DOMAINS = ("Active", "Active+Aloxistatin", "Active+Pacritinib", "Active+Remdesivir")
STAINS = 5
COMPOUNDS_IN_RXRX19A = 1670
IMAGES_IN_RXRX19A = 305_520
ITERATIONS = {"latent": 50_000, "reference": 100_000}  # length of the FID curves of figure 10, per mode
STAINS_KEEPING_DIVERSITY = 3  # of 5: the authors' explanation of the diversity drop (figure 11)

# What the paper reported, per mode (curves only: directions, not values).
REPORTED = pd.DataFrame({"iterations": [ITERATIONS["latent"], ITERATIONS["reference"]],
                         "FID over training": ["falls", "falls"],
                         "LPIPS over training": ["falls", "falls"],
                         "FID across target domains": ["small deviations", "small deviations"]},
                        index=pd.Index(["latent", "reference"], name="mode"))


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in d.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def departures_from_paper_profile(P: Params, *, sections: tuple[str, ...] = ("data", "model", "train", "eval")
                                  ) -> pd.DataFrame:
    """Every parameter of ``sections`` where this run differs from the ``paper`` profile (the paper's
    data and iterations with the official StarGAN v2 settings); the data source and phantom are left out."""
    ours, theirs = _flat(P.to_dict()), _flat(load_params(NOTEBOOK, "paper").to_dict())
    keys = [k for k in ours if k.split(".")[0] in sections and not k.startswith(("data.root", "data.phantom"))
            and ours[k] != theirs.get(k)]
    return pd.DataFrame({"this run": [str(ours[k]) for k in keys], "paper profile": [str(theirs.get(k, "—")) for k in keys]},
                        index=pd.Index(keys, name="parameter"))


def _protocol_column(P: Params) -> dict[str, str]:
    t = P.train
    augment = Augment.from_params(P.augment.to_dict(), keys=AUGMENT_KEYS)
    balanced = t.sampling == "balanced"
    every = max(1, t.steps // max(1, t.n_checkpoints))
    return {
        "source images": ("balanced: every domain equally often (item weight 1 / images of its domain), "
                          "with replacement" if balanced else
                          "by count: uniform over the training images (a shuffle per epoch)"),
        "target domain and references": (
            ("target domain uniform over the domains" if balanced else
             "target domain = that of a training image drawn uniformly (domains by image count)")
            + "; x_ref and x_ref2 two independent uniform draws from the target domain's training images, "
              "read by index"),
        "augmentation": ("none" if augment is None else
                         augment.describe() + "; source, x_ref and x_ref2 each their own draw"
                         + ("; cells have no anatomical left or right, so mirrored fields are valid images"
                            if augment.hflip or augment.vflip else "")),
        "loss weights": (f"λ_reg {t.lambda_reg:g} (R1), λ_sty {t.lambda_sty:g}, λ_ds {t.lambda_ds:g} decaying "
                         f"linearly to 0 over {t.ds_iter:,} iterations, λ_cyc {t.lambda_cyc:g}"),
        "updates per iteration": ("D and G each latent- and reference-guided" if t.reference_mode
                                  else "D and G latent-guided only"),
        "schedule": (f"{t.steps:,} iterations of batch {t.batch_size}; Adam lr {t.lr:g} (G, E, D), "
                     f"{t.mapping_lr:g} (F), betas {tuple(t.betas)}, weight decay {t.weight_decay:g}; "
                     f"{t.precision}; checkpoints every {every:,} iterations"),
        "inference": (f"EMA copies (β {t.ema_beta:g}) of G, F and E; instance norm without running "
                      "statistics, so train and eval mode give the same outputs"),
    }


def protocol(P: Params) -> pd.DataFrame:
    """The training protocol this run used, computed from its parameters, beside the ``paper``
    profile's (the official StarGAN v2 AFHQ configuration: ``core/data_loader.py`` sampling and
    augmentation, the README's AFHQ loss weights, ``main.py`` defaults)."""
    ours, theirs = _protocol_column(P), _protocol_column(load_params(NOTEBOOK, "paper"))
    return pd.DataFrame({"this run": list(ours.values()), "paper profile (official StarGAN v2, AFHQ)":
                         [theirs[k] for k in ours]}, index=pd.Index(list(ours), name="setting"))


def _mean_at(scores: pd.DataFrame, mode: str, metric: str, step: int) -> float:
    part = scores[(scores["mode"] == mode) & (scores["step"] == step)]
    return float(part[metric].mean())


def _change(scores: pd.DataFrame, mode: str, metric: str, *, skip_initial: bool) -> tuple[int, float, int, float]:
    """(first step, mean over targets there, last step, mean there); ``skip_initial`` starts after step 0."""
    steps = scores[scores["mode"] == mode]["step"]
    if skip_initial and (steps > 0).any():
        steps = steps[steps > 0]
    first, last = int(steps.min()), int(steps.max())
    return first, _mean_at(scores, mode, metric, first), last, _mean_at(scores, mode, metric, last)


def _fid_spread(scores: pd.DataFrame, mode: str) -> float:
    """max / min FID across target domains at the last checkpoint."""
    part = scores[(scores["mode"] == mode) & (scores["step"] == scores["step"].max())]["fid"]
    return float(part.max() / max(part.min(), 1e-12))


def _direction(before: float, after: float) -> str:
    return "falls" if after < before else "rises"


def paper_vs_ours_table(scores: pd.DataFrame, *, note: str = "") -> pd.DataFrame:
    """The paper's reported directions beside ours per mode, plus our mean/min/max FID and diversity
    over target domains at the last checkpoint (``scores``: rows per step, mode and target)."""
    rows, modes = [], [m for m in REPORTED.index if m in set(scores["mode"])]
    for mode in modes:
        _, f0, last, f1 = _change(scores, mode, "fid", skip_initial=False)
        _, l0, _, l1 = _change(scores, mode, "lpips", skip_initial=True)
        part = scores[(scores["mode"] == mode) & (scores["step"] == last)]
        rows.append({"iterations": last, "FID over training": _direction(f0, f1),
                     "LPIPS over training": _direction(l0, l1),
                     "FID across target domains": f"max/min {_fid_spread(scores, mode):.2f}",
                     "FID mean": part["fid"].mean(), "FID min": part["fid"].min(), "FID max": part["fid"].max(),
                     "LPIPS mean": part["lpips"].mean()})
    ours = pd.DataFrame(rows, index=pd.Index(modes, name="mode"))
    return paper_vs_ours(ours, REPORTED.loc[modes], note=note)


def claims(scores: pd.DataFrame, *, num_domains: int, max_fid_ratio: float = 2.0) -> list[Claim]:
    """The paper's claims, and the checks this study adds, each decided from ``scores``.

    ``scores``: rows per (step, mode, target) with fid, lpips and, when measured, accuracy,
    truth_l1 and identity_l1. FID differences between domains count as small when max/min
    across targets stays below ``max_fid_ratio`` in every mode; "well above chance" is above
    twice chance (2 / ``num_domains``).
    """
    out = []
    for mode in sorted(set(scores["mode"])):
        first, f0, last, f1 = _change(scores, mode, "fid", skip_initial=False)
        paper_iterations = f"{ITERATIONS[mode]:,} iterations" if mode in ITERATIONS else "training"
        out.append(Claim(f"FID falls with training ({mode}-guided)", paper=f"falls over {paper_iterations} (curve)",
                         ours=f"mean FID {f0:.3g} at step {first} → {f1:.3g} at step {last}", supported=f1 < f0,
                         evidence="mean FID over target domains: last checkpoint below the first evaluated step"))
        l_first, l0, _, l1 = _change(scores, mode, "lpips", skip_initial=True)
        out.append(Claim(f"Diversity (LPIPS) falls with training ({mode}-guided)", paper="falls (curve)",
                         ours=f"{l0:.3g} at step {l_first} → {l1:.3g} at step {last}", supported=l1 < l0,
                         evidence="mean diversity: last checkpoint below the first checkpoint after step 0"))
        part = scores[(scores["mode"] == mode) & (scores["step"] == last)]
        if "accuracy" in part:
            acc = float(part["accuracy"].mean())
            out.append(Claim(f"Translations reach their target domain well above chance ({mode}-guided)",
                             paper="translations shown as images, not scored",
                             ours=f"mean target accuracy {acc:.2f} vs chance {1 / num_domains:.2f}",
                             supported=acc > 2 / num_domains,
                             evidence="accuracy of a classifier trained on real crops above twice chance"))
        if "truth_l1" in part:
            truth, identity = float(part["truth_l1"].mean()), float(part["identity_l1"].mean())
            out.append(Claim(f"Translations are closer to the true render than the source is ({mode}-guided)",
                             paper="not measurable on real data", ours=f"L1 to truth {truth:.3f} vs identity {identity:.3f}",
                             supported=truth < identity, evidence="phantom: L1 to the field rendered in the target domain"))
    spreads = {mode: _fid_spread(scores, mode) for mode in sorted(set(scores["mode"]))}
    out.append(Claim("Domain-to-domain differences of FID are small", paper="small deviations between drugs (curve)",
                     ours="max/min FID across targets at the last checkpoint: " +
                          ", ".join(f"{m} {r:.2f}" for m, r in spreads.items()),
                     supported=all(r < max_fid_ratio for r in spreads.values()),
                     evidence=f"max/min below {max_fid_ratio:g} in every mode"))
    return out


def headlines(scores: pd.DataFrame, *, extractor_name: str, distance_name: str) -> list[Headline]:
    """FID and diversity of the trained model (last checkpoint, mean over target domains) per mode,
    beside what the paper reported for them (curves: a direction, no value)."""
    last = scores[scores["step"] == scores["step"].max()]
    out = []
    for mode in [m for m in REPORTED.index if m in set(scores["mode"])]:
        part = last[last["mode"] == mode]
        spread = "range over the target domains"  # no CI: one FID per domain, the headline is their mean
        out.append(Headline(f"FID, {mode}-guided", ours=float(part["fid"].mean()),
                            paper=f"falls over {ITERATIONS[mode]:,} it. (curve only)", note=extractor_name,
                            low=float(part["fid"].min()), high=float(part["fid"].max()), interval=spread))
        out.append(Headline(f"LPIPS, {mode}-guided", ours=float(part["lpips"].mean()),
                            paper="falls (curve only)", note=distance_name,
                            low=float(part["lpips"].min()), high=float(part["lpips"].max()), interval=spread))
    return out
