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
from medgan.train.pggan import PGGANStep

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
                   log_every=c.log_every, num_workers=P.data.num_workers, desc=(info or {}).get("name", "classifier"))
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
    """The ``pggan`` section, with ``pggan_normal``'s keys over it for the normal-only PGGAN."""
    return Params({**P.pggan.to_dict(), **(P.pggan_normal.to_dict() if normal_only else {})}, "pggan")


def pggan_config(P: Params, *, normal_only: bool = False) -> PGGANConfig:
    g = pggan_settings(P, normal_only=normal_only)
    return PGGANConfig(resolution=P.data.image_size, channels=1, z_dim=g.z_dim, fmap_base=g.fmap_base,
                       fmap_max=g.fmap_max, width=g.width, mbstd_group_size=g.mbstd_group_size)


def build_job_pggan(P: Params, *, normal_only: bool) -> TrainingJob:
    """Study 2's PGGAN (one definition) on this study's training images (all, or normal only)."""
    seed_everything(P.seed)  # the initial weights are part of the run's fingerprint
    # The normal-only PGGAN may train longer (``pggan_normal`` overrides ``pggan``): AnoGAN needs a
    # generator that redraws normal anatomy closely, or its residual is all anatomy, no lesion.
    g = pggan_settings(P, normal_only=normal_only)
    data = load_data(P)
    dataset = normal_view(data.train) if normal_only else binary_view(data.train)
    step = PGGANStep(pggan_config(P, normal_only=normal_only), total_steps=g.steps, lr=g.lr, betas=tuple(g.betas),
                     gp_weight=g.gp_weight, drift_weight=g.drift_weight, ema_decay=g.ema_decay,
                     fade_fraction=g.fade_fraction, final_weight=g.final_weight)
    options = dict(total_steps=g.steps, batch_size=min(g.batch_size, len(dataset)), seed=P.seed, device=P.device,
                   log_every=g.log_every, sample_every=g.sample_every, sample_count=g.sample_count,
                   num_workers=P.data.num_workers,
                   desc="PGGAN (normal only)" if normal_only else "PGGAN")
    info = {"images": len(dataset), "normal only": normal_only, "growth": step.schedule.table()}
    return TrainingJob(step=step, dataset=dataset, options=options, info=info)


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
