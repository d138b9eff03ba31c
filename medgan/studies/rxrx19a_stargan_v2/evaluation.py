"""Study 1's evaluation: the scorers (trained on real crops only), FID / diversity / target accuracy
over training, the baselines beside them, the per-stain diversity table and the Grad-CAM panels.

The scoring itself is generic (:mod:`medgan.analysis.style_transfer_scores`); this module says
which images, networks and parameters (``eval`` section) the study feeds it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from medgan.analysis import style_transfer_scores as sts
from medgan.analysis.gradcam import grad_cam
from medgan.config import Params
from medgan.metrics.features import INCEPTION_ENV, DomainCNN, get_extractor, train_domain_cnn
from medgan.models.classifiers import build_classifier
from medgan.studies.rxrx19a_stargan_v2.data import EvaluationData
from medgan.train.classifier import train_classifier

MODES = ("latent", "reference")  # StarGAN v2's two ways to pick a style: mapping network or reference image


def evaluation_set(data: EvaluationData, P: Params) -> sts.EvalSet:
    """Held-out crops split into sources (at most ``eval.max_sources_per_domain`` per domain) and
    references; the training crops are the FID reference set of each domain. Indices only: the
    scores read the crops from the loaders' item stores chunk by chunk."""
    return sts.make_eval_set(data.train, data.train_labels, data.heldout, data.heldout_labels,
                             domain_names=data.domain_names, stain_names=data.stain_names, has_truth=data.has_truth,
                             max_sources_per_domain=P.eval.max_sources_per_domain, seed=P.eval.seed)


# --------------------------------------------------------------------------- scorers
@dataclass
class Scorers:
    """What scores translations: a feature extractor (FID), a distance (diversity), a domain classifier."""

    extractor: Any
    extractor_name: str
    distance: sts.DistanceSpec
    classifier: torch.nn.Module
    classifier_history: pd.DataFrame


def _domain_cnn(crops, *, channels: int, num_domains: int, config: dict, seed: int, run_dir: Path) -> DomainCNN:
    """The in-domain feature CNN on the crops' domain labels, trained through the engine in
    ``run_dir/domain_cnn`` (reloaded when finished); the crops are read per batch from the item store."""
    return train_domain_cnn(crops, channels=channels, num_classes=num_domains,
                            epochs=config["epochs"], batch_size=config["batch_size"], lr=config["lr"], seed=seed,
                            feature_dim=config["feature_dim"], width=config["width"],
                            num_blocks=config["num_blocks"], device="cpu", run_dir=run_dir / "domain_cnn")


def build_scorers(data: EvaluationData, P: Params, *, run_dir: str | os.PathLike) -> Scorers:
    """Train (or reload) the scorers on REAL training crops only.

    - extractor: ImageNet InceptionV3 when ``$MEDGAN_INCEPTION_WEIGHTS`` names a local file and
      ``eval.extractor`` is ``auto``/``inception_v3``, else a ``domain_cnn`` (``eval.domain_cnn``)
      trained on the domain labels (saved in ``run_dir`` and reused);
    - distance: LPIPS when its ImageNet trunk is on this machine, else the LPIPS-style distance on
      the ``domain_cnn``;
    - classifier: ``eval.classifier`` (softmax over the domains), trained through the engine in
      ``run_dir/domain_classifier`` (a finished run is reloaded) on the training crops as the loader
      serves them (read per batch).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    num_domains, channels = len(data.domain_names), len(data.stain_names)
    domain_cnn = _domain_cnn(data.train, channels=channels, num_domains=num_domains,
                             config=dict(P.eval.domain_cnn), seed=P.seed, run_dir=run_dir)
    choice = P.eval.extractor
    weights = os.environ.get(INCEPTION_ENV)
    if choice == "inception_v3" or (choice == "auto" and weights and Path(weights).is_file()):
        extractor = get_extractor("inception_v3")
    elif choice in ("auto", "domain_cnn"):
        extractor = domain_cnn
    else:
        raise ValueError(f"eval.extractor must be auto, inception_v3 or domain_cnn, not {choice!r}")
    distance = sts.make_distance(extractor=domain_cnn, lpips_net=P.eval.lpips_net)
    c = P.eval.classifier
    torch.manual_seed(P.seed)
    classifier = build_classifier(c.arch, in_channels=channels, num_outputs=num_domains, head="softmax",
                                  width=c.width)
    classifier, history = train_classifier(classifier, data.train,
                                           run_dir=run_dir / "domain_classifier", steps=c.steps,
                                           batch_size=c.batch_size, lr=c.lr, seed=P.seed, device=P.device,
                                           desc="domain classifier")
    return Scorers(extractor=extractor, extractor_name=getattr(extractor, "name", type(extractor).__name__),
                   distance=distance, classifier=classifier.eval(), classifier_history=history)


# --------------------------------------------------------------------------- scores over training
@dataclass
class TrainingScores:
    """scores: one row per (step, mode, target) — fid, lpips, lpips_<stain>, accuracy, truth_l1, ...;
    baselines: the identity mapping and the held-out real crops, one row per target."""

    scores: pd.DataFrame
    baselines: pd.DataFrame

    def last(self) -> pd.DataFrame:
        """The rows of the newest checkpoint."""
        return self.scores[self.scores["step"] == self.scores["step"].max()]

    def real(self) -> pd.DataFrame:
        """The held-out real rows (the FID a perfect translator could reach at these sample sizes)."""
        return self.baselines[self.baselines["mode"] == "real (held-out)"]


def score_over_training(step, run_dir: str | os.PathLike, eval_set: sts.EvalSet, scorers: Scorers, P: Params, *,
                        initial: dict | None, cache_dir: str | os.PathLike | None = None) -> TrainingScores:
    """Both modes at the initial weights (``initial``, step 0) and every checkpoint of ``run_dir`` (the
    keyed run folder, ``result.run_dir``), and the identity and real held-out baselines.
    ``cache_dir``: the feature cache, so the real sets' features are computed once."""
    kw = dict(n_styles=P.eval.n_styles, extractor=scorers.extractor, distance=scorers.distance,
              classifier=scorers.classifier, seed=P.eval.seed, cache_dir=cache_dir)
    scores = sts.evaluate_over_training(step, run_dir, eval_set, modes=MODES, initial=initial, **kw)
    baselines = pd.concat([sts.score_translations(step, eval_set, mode="identity", **kw),
                           sts.real_baselines(eval_set, extractor=scorers.extractor, classifier=scorers.classifier,
                                              cache_dir=cache_dir)], ignore_index=True)
    return TrainingScores(scores=scores, baselines=baselines)


def summary_table(result: TrainingScores, *, extractor_name: str, distance_name: str) -> pd.DataFrame:
    """Per target domain and mode: the last checkpoint, the untrained generator (step 0 when present),
    the identity mapping and real held-out crops, side by side."""
    scores, baselines = result.scores, result.baselines
    parts = [result.last().assign(row="trained (last checkpoint)")]
    if (scores["step"] == 0).any():
        parts.append(scores[scores["step"] == 0].assign(row="untrained generator"))
    parts.append(baselines.assign(row=baselines["mode"]))
    table = pd.concat(parts, ignore_index=True)
    table["mode"] = table["mode"].where(~table["row"].isin(["identity", "real (held-out)"]), "—")
    keep = ["row", "mode", "target", "fid", "lpips", "accuracy", "truth_l1", "identity_l1", "n_outputs"]
    table = table[[c for c in keep if c in table.columns]]
    return table.rename(columns={"fid": f"FID ({extractor_name})", "lpips": f"diversity ({distance_name})",
                                 "accuracy": "target accuracy"})


def stain_drop_table(scores: pd.DataFrame, *, stain_names: Sequence[str]) -> pd.DataFrame:
    """Per-stain diversity at the first checkpoint after step 0 and at the last, with the relative change
    — which stains carry the fall of diversity."""
    trained = scores[scores["step"] > 0]
    first, last = trained["step"].min(), trained["step"].max()
    rows = []
    for mode, part in trained.groupby("mode"):
        for s in stain_names:
            a = part[part["step"] == first][f"lpips_{s}"].mean()
            b = part[part["step"] == last][f"lpips_{s}"].mean()
            rows.append({"mode": mode, "stain": s, f"diversity at {first}": a, f"diversity at {last}": b,
                         "relative change": (b - a) / a if a > 0 else float("nan")})
    return pd.DataFrame(rows)


def last_checkpoint_means(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean, min and max over target domains of FID and diversity at the last checkpoint, per mode."""
    last = scores[scores["step"] == scores["step"].max()]
    table = last.groupby("mode")[["fid", "lpips"]].agg(["mean", "min", "max"])
    table.columns = [f"{a} {b}" for a, b in table.columns]
    return table


# --------------------------------------------------------------------------- translations and Grad-CAM
def grid_sources(eval_set: sts.EvalSet, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first source of each domain (at most ``count``): images (n, C, S, S) and labels (n,)."""
    idx = [int((eval_set.source_labels == k).nonzero()[0]) for k in range(eval_set.num_domains)][:count]
    return eval_set.read_sources(idx), eval_set.source_labels[idx]


@dataclass
class GradCAMPanel:
    """Images (n, C, S, S), their Grad-CAM maps (n, S, S) in [0, 1] and one title each."""

    images: torch.Tensor
    cams: torch.Tensor
    titles: list[str]


def gradcam_on_real(classifier: torch.nn.Module, eval_set: sts.EvalSet, count: int) -> GradCAMPanel:
    """Grad-CAM of the domain classifier on one real source crop per domain, for its true domain."""
    idx = torch.cat([(eval_set.source_labels == k).nonzero().view(-1)[:1] for k in range(eval_set.num_domains)])[:count]
    images, labels = eval_set.read_sources(idx), eval_set.source_labels[idx]
    return GradCAMPanel(images, grad_cam(classifier, images, classes=labels),
                        [eval_set.domain_names[int(k)] for k in labels])


def gradcam_on_translations(classifier: torch.nn.Module, outputs: torch.Tensor, source_labels: torch.Tensor,
                            domain_names: Sequence[str], count: int) -> GradCAMPanel:
    """Grad-CAM on the first style of each source translated into the next domain, for that target.

    outputs: (N, K, n_styles, C, S, S) from :func:`~medgan.analysis.style_transfer_scores.translate_examples`.
    """
    targets = (source_labels + 1) % len(domain_names)
    images = outputs[torch.arange(len(source_labels)), targets, 0][:count]
    targets = targets[:count]
    return GradCAMPanel(images, grad_cam(classifier, images, classes=targets),
                        [f"→{domain_names[int(k)]}" for k in targets])
