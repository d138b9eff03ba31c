"""The models study 5 trains, each a job for the one engine (run folders
``runs/05_cxr_pggan/<profile>/<model>/<key>``):

- ``pggan``            PGGAN on normal + abnormal training images (parts a and b)
- ``pggan_normal``     PGGAN on normal training images only (part c, AnoGAN)
- ``classifier_real``  binary normal/abnormal classifier (sigmoid) on real images (step 1)
- ``classifier_synthetic``  the same classifier and settings on pseudo-labelled PGGAN images
  (step 2; runs, or reloads, the ``pggan`` and ``classifier_real`` jobs first; the kept images
  are written to disk in its job folder and trained on from there)
- ``multilabel``       (normal + 5 findings) sigmoid classifier (part b; the supervised baseline
  of part c). Images whose only findings are outside the 5 are left out, as the thesis's
  6-class CNN never saw them.
- ``severity``         phantom only: a regressor of each finding's true severity in [0, 1]
  (sigmoid outputs, soft targets) that measures the images along a latent axis.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medgan.analysis.classifier_fidelity import (generate_and_pseudo_label, generate_batches, match_class_counts,
                                                 rank_labels, write_generated)
from medgan.config import Params, runs_dir
from medgan.data.augment import Augment
from medgan.data.base import ItemListDataset
from medgan.models.classifiers import build_classifier, count_parameters
from medgan.models.pggan import PGGANConfig, build_pggan
from medgan.studies.cxr_pggan import paper
from medgan.studies.cxr_pggan.data import (binary_view, load_data, multilabel_names, multilabel_view, normal_view,
                                           pos_weights, severity_table, severity_view)
from medgan.studies.registry import register
from medgan.train.classifier import ClassifierStep
from medgan.train.engine import seed_everything, select_device
from medgan.train.job import TrainingJob, run_job
from medgan.train.pggan import ImageGrowthSchedule, PGGANStep, growth_changes

NOTEBOOK = "05_cxr_pggan"
logger = logging.getLogger(__name__)


# --- classifiers ---------------------------------------------------------------------------
def build_model(P: Params, *, num_outputs: int) -> torch.nn.Module:
    """The classifier of ``P.classifier`` with ``num_outputs`` sigmoid outputs (one input channel)."""
    c = P.classifier
    return build_classifier(c.arch, in_channels=1, num_outputs=num_outputs, head="sigmoid", width=c.width,
                            blocks=list(c.blocks), stem_stride=c.stem_stride, stem_pool=c.stem_pool)


def classifier_job(P: Params, dataset, *, num_outputs: int, pos_weight=None, info=None) -> TrainingJob:
    """A classifier job with the shared settings of ``P.classifier`` (identical for real and synthetic)."""
    seed_everything(P.seed)  # the initial weights are part of the run's fingerprint
    c = P.classifier
    model = build_model(P, num_outputs=num_outputs)
    step = ClassifierStep(model, lr=c.lr, weight_decay=c.weight_decay, pos_weight=pos_weight, lr_decay=c.lr_decay)
    options = dict(total_steps=c.steps, batch_size=min(c.batch_size, len(dataset)), seed=P.seed, device=P.device,
                   precision=c.precision, log_every=c.log_every, num_workers=P.data.num_workers,
                   augment=classifier_augment(P),
                   desc=(info or {}).get("name", "classifier"))
    return TrainingJob(step=step, dataset=dataset, options=options, info=dict(info or {}))


@register(NOTEBOOK, "classifier_real")
def classifier_real(P: Params) -> TrainingJob:
    train = binary_view(load_data(P).train)
    return classifier_job(P, train, num_outputs=1, info={"name": "classifier(real)", "n": len(train)})


@register(NOTEBOOK, "multilabel")
def multilabel(P: Params) -> TrainingJob:
    train = multilabel_view(load_data(P).train)
    weights = pos_weights(train.label_array())
    return classifier_job(P, train, num_outputs=1 + len(P.data.findings), pos_weight=weights,
                          info={"name": "multi-label classifier", "n": len(train), "outputs": multilabel_names(P)})


@register(NOTEBOOK, "severity")
def severity(P: Params) -> TrainingJob:
    data = load_data(P)
    if not data.is_phantom:
        raise ValueError("the severity regressor needs the phantom's truth/findings.csv (data.root must be null)")
    train = severity_view(data.train, severity_table(data.root, data.findings))
    return classifier_job(P, train, num_outputs=len(P.data.findings),
                          info={"name": "severity regressor", "n": len(train), "outputs": list(P.data.findings)})


def synthetic_training_set(P: Params, generate, classifier, *, z_dim: int, real_train,
                           image_dir: Path) -> tuple[ItemListDataset, dict]:
    """Step 2: pseudo-label ``fidelity.n_generate`` GAN images with classifier(real) and keep as many
    normal and abnormal ones as the real training set has (same number, same ratio).

    When the thresholds leave fewer than 2 images of a class (classifier(real) undertrained, as
    after a rehearsal's single iteration), the most extreme images by P(abnormal) are labelled
    instead (:func:`rank_labels`), with a warning and a row in the table saying so.

    The draw keeps latents and probabilities only; the kept images are drawn again from their
    latents and written under ``image_dir`` (an item store), and classifier(synthetic) trains from
    there, so memory never holds the generated set.
    """
    f = P.fidelity
    device = select_device(P.device)
    drawn = generate_and_pseudo_label(
        generate, classifier, z_dim=z_dim, n=f.n_generate, batch_size=f.batch_size, seed=P.seed + 101,
        positive_above=f.positive_above, negative_below=f.negative_below, device=device, progress=True)
    labels = drawn.labels
    real_labels = real_train.label_array()
    counts = {0: int((real_labels == 0).sum()), 1: int((real_labels == 1).sum())}
    by_rank = min((labels == 0).sum(), (labels == 1).sum()) < 2
    if by_rank:
        logger.warning("step 2: classifier(real) labelled only %d of %d PGGAN images normal (p < %s) and %d abnormal "
                       "(p > %s); labelling the most extreme by rank instead", (labels == 0).sum(), len(labels),
                       f.negative_below, (labels == 1).sum(), f.positive_above)
        labels = rank_labels(drawn.probabilities, counts)
    chosen = match_class_counts(labels, counts, seed=P.seed)
    kept = np.bincount(labels[chosen], minlength=2) if len(chosen) else np.zeros(2, int)
    if kept.min() < 1:
        raise ValueError(f"step 2: {len(labels)} PGGAN images cannot give both classes; raise fidelity.n_generate")
    by_threshold = drawn.labels
    info = {"generated": len(labels),
            "pseudo-labelled abnormal (p > %.2f)" % f.positive_above: int((by_threshold == 1).sum()),
            "pseudo-labelled normal (p < %.2f)" % f.negative_below: int((by_threshold == 0).sum()),
            "discarded (in between)": int((by_threshold == -1).sum()),
            "labelled by rank instead (too few confident; 1 = yes)": int(by_rank),
            "kept normal": int((labels[chosen] == 0).sum()), "kept abnormal": int((labels[chosen] == 1).sum()),
            "real train normal": counts[0], "real train abnormal": counts[1]}
    store = write_generated(generate, drawn.latents[chosen], labels[chosen], image_dir, batch_size=f.batch_size,
                            device=device, progress=True)
    return ItemListDataset(store), {**info, "probabilities": drawn.probabilities}


@register(NOTEBOOK, "classifier_synthetic")
def classifier_synthetic(P: Params) -> TrainingJob:
    """Runs (or reloads, when finished) the ``pggan`` and ``classifier_real`` jobs of this profile's
    run folder, then pseudo-labels PGGAN images for classifier(synthetic) (written to disk in its
    job folder, ``generated-<key>``)."""
    base = runs_dir() / NOTEBOOK / P.profile
    real_job = classifier_real(P)
    run_job(real_job, base / "classifier_real")
    gan_job = pggan(P)
    run_job(gan_job, base / "pggan")
    synthetic, info = synthetic_training_set(P, generator_fn(gan_job.step), real_job.step.model,
                                             z_dim=z_dim_of(gan_job.step), real_train=real_job.dataset,
                                             image_dir=base / "classifier_synthetic")
    job = classifier_job(P, synthetic, num_outputs=1, info={"name": "classifier(synthetic)", "n": len(synthetic)})
    job.info.update(info)
    return job


# --- PGGAN -----------------------------------------------------------------------------------
def pggan_settings(P: Params, *, normal_only: bool = False) -> Params:
    """The ``pggan`` section, with ``pggan_normal``'s keys over it for the normal-only PGGAN (a null
    there keeps ``pggan``'s value)."""
    normal = {k: v for k, v in P.pggan_normal.to_dict().items() if v is not None} if normal_only else {}
    return Params({**P.pggan.to_dict(), **normal}, "pggan_normal" if normal_only else "pggan")


def pggan_config(P: Params, *, normal_only: bool = False) -> PGGANConfig:
    g = pggan_settings(P, normal_only=normal_only)
    return PGGANConfig(resolution=P.data.image_size, channels=1, z_dim=g.z_dim, fmap_base=g.fmap_base,
                       fmap_max=g.fmap_max, width=g.width, mbstd_group_size=g.mbstd_group_size)


def image_schedule(g: Params, n_images: int) -> ImageGrowthSchedule:
    """The official growth plan of a ``pggan`` section with ``growth: images``: phases in images shown,
    a minibatch per resolution (each at most the ``n_images`` training images, for tiny data sets)."""
    return ImageGrowthSchedule(stable_images=int(g.n_images_stable), fade_images=int(g.n_images_fade),
                               total_images=int(g.n_images),
                               batch_sizes=tuple(min(int(b), n_images) for b in g.batch_size_per_resolution))


def pggan_augment(P: Params) -> Augment | None:
    """The PGGANs' training augmentation (``augment.pggan``; None when it does nothing)."""
    return Augment.from_params(P.augment.pggan.to_dict(), keys=("image",))


def classifier_augment(P: Params) -> Augment | None:
    """Every classifier's training augmentation (``augment.classifier``; None when it does nothing)."""
    return Augment.from_params(P.augment.classifier.to_dict(), keys=("image",))


def build_job_pggan(P: Params, *, normal_only: bool) -> TrainingJob:
    """Study 2's PGGAN (one definition) on this study's training images (all, or normal only)."""
    seed_everything(P.seed)  # the initial weights are part of the run's fingerprint
    # The normal-only PGGAN may train longer (``pggan_normal`` overrides ``pggan``): AnoGAN needs a
    # generator that redraws normal anatomy closely, or its residual is all anatomy, no lesion.
    g = pggan_settings(P, normal_only=normal_only)
    data = load_data(P)
    dataset = normal_view(data.train) if normal_only else binary_view(data.train)
    if g.growth == "images":  # the official plan: images per phase, minibatch and lr per resolution
        schedule = image_schedule(g, len(dataset))
        total_steps, batch_size = schedule.total_steps, schedule.batch_schedule()
    elif g.growth == "steps":  # equal shares of g.steps at one batch size
        schedule, total_steps, batch_size = None, g.steps, min(g.batch_size, len(dataset))
    else:
        raise ValueError(f"pggan.growth must be 'steps' or 'images', not {g.growth!r}")
    step = PGGANStep(pggan_config(P, normal_only=normal_only), total_steps=total_steps, lr=g.lr, betas=tuple(g.betas),
                     gp_weight=g.gp_weight, drift_weight=g.drift_weight, ema_decay=g.ema_decay,
                     fade_fraction=g.fade_fraction, final_weight=g.final_weight, schedule=schedule,
                     lr_per_resolution=g.lr_per_resolution, reset_adam_at_growth=bool(g.reset_adam_at_growth))
    options = dict(total_steps=total_steps, batch_size=batch_size, seed=P.seed, device=P.device,
                   precision=g.precision, log_every=g.log_every, sample_every=g.sample_every, sample_count=g.sample_count,
                   num_workers=P.data.num_workers, augment=pggan_augment(P),
                   desc="PGGAN (normal only)" if normal_only else "PGGAN")
    info = {"images": len(dataset), "normal only": normal_only, "growth": growth_rows(step, batch_size)}
    return TrainingJob(step=step, dataset=dataset, options=options, info=info)


def growth_rows(step: PGGANStep, batch_size) -> list[dict]:
    """The growth table of a PGGAN step with each phase's minibatch, learning rate and whether Adam
    is reset at the phase's fade-in start and end (the table the report shows)."""
    rows = step.schedule.table()
    for row in rows:
        d = row["phase"]
        row.setdefault("batch_size", batch_size if isinstance(batch_size, int) else row.get("batch_size"))
        row["lr"] = step.lr_per_resolution[d] if step.lr_per_resolution else step.optimizers["G"].defaults["lr"]
        first, fade = row["first_step"], row["fade_in_steps"]
        candidates = sorted({first, *range(max(first, first + fade - 2), first + fade + 1)})  # a fade-in's start and end
        resets = [k for k in candidates if k <= row["last_step"] and growth_changes(step.schedule, k)]
        row["Adam reset at step"] = ", ".join(map(str, resets)) if step.reset_adam_at_growth and resets else "—"
    return rows


@register(NOTEBOOK, "pggan")
def pggan(P: Params) -> TrainingJob:
    return build_job_pggan(P, normal_only=False)


@register(NOTEBOOK, "pggan_normal")
def pggan_normal(P: Params) -> TrainingJob:
    return build_job_pggan(P, normal_only=True)


def growth_table(job: TrainingJob) -> pd.DataFrame:
    """A PGGAN job's growth schedule: steps per resolution and fade-in, one row per phase."""
    return pd.DataFrame(job.info["growth"]).set_index("phase")


def generator_fn(step) -> torch.nn.Module:
    """The trained EMA generator at full resolution, z -> images in [-1, 1] (no gradients)."""
    return step.generator(ema=True)


def inversion_generator(step) -> torch.nn.Module:
    """The EMA generator fixed at full resolution with gradients to z (for AnoGAN's search).

    Returns raw (unclamped) output, so pixels near +-1 still pass gradient to z; reconstructions
    are compared in the same range as the queries.
    """
    G = step.nets["G_ema"]
    G.set_growth(G.max_depth, 1.0)
    return G.eval()


def z_dim_of(step) -> int:
    return int(step.z_dim)


def sample_images(step, n: int, *, seed: int = 0, batch_size: int = 16) -> torch.Tensor:
    """``n`` images of the trained EMA generator (full resolution, [-1, 1]), drawn ``batch_size`` at a time."""
    g = torch.Generator().manual_seed(seed)
    G = generator_fn(step)
    device = next(G.parameters()).device
    z = torch.randn(n, z_dim_of(step), generator=g)
    return torch.cat([x.cpu() for x in generate_batches(G, z, batch_size=batch_size, device=device)])


def architecture_table(P: Params) -> pd.DataFrame:
    """Parameter counts of this run's networks beside the thesis's configuration."""
    thesis = build_pggan(PGGANConfig(channels=1, **paper.PGGAN_SETUP))
    c = P.classifier
    k = len(P.data.findings)
    setup = f"{paper.PGGAN_SETUP['resolution']} px, z {paper.PGGAN_SETUP['z_dim']}"
    rows = []
    for label, normal_only in (("PGGAN", False), ("normal-only PGGAN (AnoGAN)", True)):
        g = pggan_settings(P, normal_only=normal_only)
        ours = build_pggan(pggan_config(P, normal_only=normal_only))
        rows += [
            {"network": f"{label} generator", "this run": f"{P.data.image_size} px, z {g.z_dim}, width x{g.width:g}",
             "parameters": count_parameters(ours["G"]), "thesis setup": setup,
             "thesis parameters": count_parameters(thesis["G"])},
            {"network": f"{label} discriminator", "this run": "WGAN-GP critic, minibatch std",
             "parameters": count_parameters(ours["D"]), "thesis setup": f"{paper.PGGAN_SETUP['resolution']} px",
             "thesis parameters": count_parameters(thesis["D"])},
        ]
    for name, outputs in (("classifier(real) / (synthetic)", 1), ("multi-label classifier", 1 + k), ("severity regressor", k)):
        in_thesis = name != "severity regressor"
        rows.append({"network": name, "this run": f"{c.arch} (width {c.width}), {outputs} sigmoid",
                     "parameters": count_parameters(build_model(P, num_outputs=outputs)),
                     "thesis setup": f"{paper.CLASSIFIER_ARCH}, {outputs} sigmoid" if in_thesis else "—",
                     "thesis parameters": count_parameters(build_classifier(paper.CLASSIFIER_ARCH, num_outputs=outputs))
                     if in_thesis else None})
    return pd.DataFrame(rows).set_index("network")


# --- the protocol in the report's method section (computed from the parameters) ---------------
def _growth_text(g: Params, n_images: int, max_depth: int) -> tuple[str, str, str]:
    """(growth plan, minibatch, learning rate) of one PGGAN section in words."""
    sizes = [4 * 2 ** d for d in range(max_depth + 1)]
    if g.growth == "images":
        s = image_schedule(g, n_images)
        plan = (f"official plan in images shown: {s.stable_images:,} at 4x4, then {s.fade_images:,} fading in + "
                f"{s.stable_images:,} stable per resolution, {s.final_stable_images:,} stable at {sizes[-1]} px; "
                f"{s.total_images:,} images = {s.total_images / n_images:.1f} epochs of the {n_images:,} training "
                f"images, {s.total_steps:,} iterations")
        batch = ", ".join(f"{r} px: {b}" for r, b in zip(sizes, s.batch_sizes))
    else:
        plan = (f"equal shares of {g.steps:,} iterations per resolution (4x4 1 share, the last {g.final_weight:g}), "
                f"{g.fade_fraction:.0%} of each later phase fading in; "
                f"{g.steps * min(g.batch_size, n_images) / n_images:.1f} epochs of the {n_images:,} training images")
        batch = f"{min(g.batch_size, n_images)} at every resolution"
    lrs = g.lr_per_resolution
    lr = (", ".join(f"{r} px: {v:g}" for r, v in zip(sizes, lrs)) if lrs else f"{g.lr:g} at every resolution")
    return plan, batch, lr + f" (Adam betas {tuple(g.betas)})"


def protocol(P: Params, data) -> pd.DataFrame:
    """What this run actually does, from the parameters: sampling, augmentation, growth plan (phases,
    minibatch and learning rate per resolution, Adam resets), inference mode and the AnoGAN score."""
    rows: dict[str, str] = {}
    max_depth = int(np.log2(P.data.image_size // 4))
    rows["sampling (every model)"] = "uniform: each epoch shuffles the training images, each seen once (no weighting)"
    for label, augment in (("PGGANs", pggan_augment(P)), ("classifiers", classifier_augment(P))):
        rows[f"augmentation, {label}"] = augment.describe() if augment else (
            "none: no left-right flip (a mirrored chest radiograph shows dextrocardia, not a normal chest)")
    for label, normal_only, view in (("PGGAN", False, binary_view), ("normal-only PGGAN", True, normal_view)):
        g = pggan_settings(P, normal_only=normal_only)
        plan, batch, lr = _growth_text(g, len(view(data.train)), max_depth)
        rows[f"{label}: growth"] = plan
        rows[f"{label}: minibatch"] = batch
        rows[f"{label}: learning rate"] = lr
        rows[f"{label}: Adam state"] = ("reset (moments and step counts) when each fade-in starts and when it ends "
                                        "(official reset_opt_for_new_lod)" if g.reset_adam_at_growth else
                                        "kept through the growth")
        rows[f"{label}: evaluation"] = f"EMA generator (decay {g.ema_decay:g}) at full resolution"
    c = P.classifier
    rows["classifiers: training"] = (f"{c.arch}, {c.steps:,} iterations at batch {c.batch_size}, AdamW lr {c.lr:g} "
                                     f"({c.lr_decay} decay), weight decay {c.weight_decay:g}")
    rows["classifiers: inference"] = "eval mode (batch norm on running statistics)"
    a = P.anogan
    rows["AnoGAN: inversion"] = (f"Adam on z, lr {a.lr:g}, {a.steps} iterations x {a.restarts} random starts, "
                                 f"objective: mean squared residual" +
                                 (f" + {a.feature_weight:g} x critic features" if a.feature_weight > 0 else ""))
    rows["AnoGAN: image score"] = paper.score_label(a.score_kind, float(a.sigma))
    rows["AnoGAN: reported beside"] = paper.score_label(a.compare_score.kind, float(a.compare_score.sigma))
    rows["AnoGAN: threshold"] = f"{a.specificity:.0%} quantile of the normal validation images' scores"
    return pd.DataFrame({"this run": list(rows.values())}, index=pd.Index(list(rows), name="protocol"))
