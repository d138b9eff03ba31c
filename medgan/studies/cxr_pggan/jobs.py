"""Study 5 (notebook ``05_cxr_pggan``): chest X-ray PGGAN, classifiers, latent axes, AnoGAN.

Models this recipe trains (each a job for the one engine; run folders
``runs/05_cxr_pggan/<profile>/<model>``):

- ``pggan``            PGGAN on normal + abnormal training images (parts a and b)
- ``pggan_normal``     PGGAN on normal training images only (part c, AnoGAN)
- ``classifier_real``  binary normal/abnormal classifier (sigmoid) on real images (step 1)
- ``classifier_synthetic``  the same classifier and settings on pseudo-labelled PGGAN images
  (step 2; needs the finished ``pggan`` and ``classifier_real`` runs)
- ``multilabel``       (normal + 5 findings) sigmoid classifier (part b; the supervised baseline
  of part c). Images whose only findings are outside the 5 are left out, as the thesis's
  6-class CNN never saw them.
- ``severity``         phantom only: a regressor of each finding's true severity in [0, 1]
  (sigmoid outputs, soft targets) that measures the images along a latent axis.

Data helpers (:func:`load_data`, :func:`binary_view`, ...) give the notebook the same views.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from medgan.analysis.anogan import ANOGAN, BASELINE
from medgan.config import Params, runs_dir
from medgan.data.base import ItemListDataset, subject_key
from medgan.data.chest_xray import ChestXray
from medgan.models.classifiers import build_classifier
from medgan.train.classifier import ClassifierStep, ImageLabelDataset
from medgan.train.recipes import TrainingJob, register

NOTEBOOK = "05_cxr_pggan"
NORMAL = "Normal"


# --- data ---------------------------------------------------------------------------------
def data_root(P: Params) -> Path:
    """The real dataset (``data.root``) or the CXR phantom generated from ``data.phantom``."""
    from medgan.data.phantoms import dataset_root

    return dataset_root(P.data, "cxr")


@dataclass
class CXRData:
    """The three patient-level splits, loaded once (multi-label over the 5 findings; masks on phantoms)."""

    root: Path
    findings: list[str]
    train: ChestXray
    val: ChestXray
    test: ChestXray
    is_phantom: bool

    def counts(self) -> pd.DataFrame:
        """Images, patients, normal/abnormal and per-finding counts per split."""
        rows = {}
        for name in ("train", "val", "test"):
            ds = getattr(self, name)
            abnormal = np.array([r["meta"]["abnormal"] for r in ds.records])
            labels = np.stack([r["label"] for r in ds.records])
            other = np.array([bool(r["meta"]["other_findings"]) for r in ds.records])
            rows[name] = {"images": len(ds), "patients": len(ds.subjects), "normal": int((abnormal == 0).sum()),
                          "abnormal": int(abnormal.sum()), **{f: int(labels[:, i].sum()) for i, f in enumerate(self.findings)},
                          "other (untrained) findings": int(other.sum())}
        return pd.DataFrame(rows).T


_DATA_CACHE: dict[str, CXRData] = {}


def load_data(P: Params) -> CXRData:
    """Load train/val/test of the CXR dataset (split by patient, ``data.split_fractions``).

    Decoded once per process and data configuration (the builders of every model share it).
    """
    key = json.dumps(P.data.to_dict(), sort_keys=True, default=str)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one configuration at a time: the images can be large
        _DATA_CACHE[key] = _load_data(P)
    return _DATA_CACHE[key]


def _load_data(P: Params) -> CXRData:
    root = data_root(P)
    # Lesion masks and severities exist where the phantom wrote its truth (also when data_root points at one).
    is_phantom = (root / "truth" / "findings.csv").is_file()
    common = dict(labels_csv=P.data.labels_csv, image_dir=P.data.image_dir, image_size=P.data.image_size,
                  findings=list(P.data.findings), split_fractions=tuple(P.data.split_fractions),
                  split_seed=P.data.split_seed, high_percentile=P.data.high_percentile,
                  view_positions=P.data.view_positions, with_masks=is_phantom, skip_bad=P.data.skip_bad)
    splits = {name: ChestXray(root, split=name, **common) for name in ("train", "val", "test")}
    return CXRData(root=root, findings=list(P.data.findings), is_phantom=is_phantom, **splits)


def _view(ds: ItemListDataset, keep, relabel, *, drop_mask: bool = True) -> ItemListDataset:
    records = []
    for r in ds.records:
        if not keep(r):
            continue
        new = {k: v for k, v in r.items() if not (drop_mask and k == "mask")}
        new["label"] = relabel(r)
        records.append(new)
    return ItemListDataset(records)


def binary_view(ds: ItemListDataset) -> ItemListDataset:
    """label = 1 abnormal (any finding), 0 normal."""
    return _view(ds, lambda r: True, lambda r: int(r["meta"]["abnormal"]))


def normal_view(ds: ItemListDataset, *, keep_mask: bool = False) -> ItemListDataset:
    """Normal images only (label 0)."""
    return _view(ds, lambda r: not r["meta"]["abnormal"], lambda r: 0, drop_mask=not keep_mask)


def multilabel_view(ds: ItemListDataset) -> ItemListDataset:
    """label = float32 (1 + K,) over (normal, findings...); images with untrained findings only are left out."""
    def relabel(r):
        return np.concatenate([[1.0 - r["meta"]["abnormal"]], r["label"]]).astype(np.float32)
    return _view(ds, lambda r: not r["meta"]["other_findings"], relabel)


def multilabel_names(P: Params) -> list[str]:
    return [NORMAL, *P.data.findings]


def severity_table(root: Path, findings: list[str]) -> dict[str, np.ndarray]:
    """Phantom truth: subject key -> severity (K,) in [0, 1] of each finding (0 when absent)."""
    truth = root / "truth" / "findings.csv"
    if not truth.is_file():
        raise FileNotFoundError(f"{truth}: severity truth exists for the phantom only")
    entries = pd.read_csv(root / "Data_Entry.csv", dtype={"Patient ID": str}, keep_default_na=False)
    subject_of = {row["Image Index"]: subject_key(f"cxr:{row['Patient ID']}") for _, row in entries.iterrows()}
    table = {s: np.zeros(len(findings), np.float32) for s in subject_of.values()}
    index = {f.lower(): i for i, f in enumerate(findings)}
    for _, row in pd.read_csv(truth).iterrows():
        i = index.get(str(row["finding"]).lower())
        if i is not None:
            table[subject_of[row["Image Index"]]][i] = float(row["severity"])
    return table


def severity_view(ds: ItemListDataset, table: dict[str, np.ndarray]) -> ItemListDataset:
    """label = the true severity (K,) of each finding (soft sigmoid targets)."""
    return _view(ds, lambda r: True, lambda r: table[r["subject"]].copy())


def images_of(ds: ItemListDataset) -> torch.Tensor:
    return torch.stack([torch.as_tensor(np.asarray(r["image"], dtype=np.float32)) for r in ds.records])


def masks_of(ds: ItemListDataset) -> torch.Tensor:
    """Union of all finding masks per image, (N, 1, H, W)."""
    return torch.stack([torch.as_tensor(np.asarray(r["mask"], dtype=np.float32)).amax(0, keepdim=True)
                        for r in ds.records])


def pos_weights(labels: np.ndarray) -> list[float]:
    """negatives / positives per output (BCE ``pos_weight``), so rare findings are not ignored."""
    y = np.asarray(labels, dtype=np.float64)
    pos = y.sum(0)
    return [float(min(20.0, (len(y) - p) / p)) if p > 0 else 1.0 for p in pos]


# --- classifiers ---------------------------------------------------------------------------
def build_model(P: Params, *, num_outputs: int):
    c = P.classifier
    return build_classifier(c.arch, in_channels=1, num_outputs=num_outputs, head="sigmoid", width=c.width,
                            blocks=list(c.blocks), stem_stride=c.stem_stride, stem_pool=c.stem_pool)


def classifier_job(P: Params, dataset, *, num_outputs: int, pos_weight=None, info=None) -> TrainingJob:
    """A classifier job with the shared settings of ``P.classifier`` (identical for real and synthetic)."""
    from medgan.train.engine import seed_everything

    seed_everything(P.seed)
    c = P.classifier
    model = build_model(P, num_outputs=num_outputs)
    step = ClassifierStep(model, lr=c.lr, weight_decay=c.weight_decay, pos_weight=pos_weight, lr_decay=c.lr_decay)
    fingerprint = {"classifier": c.to_dict(), "data": P.data.to_dict(), "n_items": len(dataset),
                   "num_outputs": num_outputs, "pos_weight": pos_weight}
    options = dict(total_steps=c.steps, batch_size=min(c.batch_size, len(dataset)), seed=P.seed, device=P.device,
                   log_every=c.log_every, fingerprint=fingerprint, desc=(info or {}).get("name", "classifier"))
    return TrainingJob(step=step, dataset=dataset, options=options, info=dict(info or {}))


@register(NOTEBOOK, "classifier_real")
def classifier_real(P: Params) -> TrainingJob:
    data = load_data(P)
    train = binary_view(data.train)
    return classifier_job(P, train, num_outputs=1, info={"name": "classifier(real)", "n": len(train)})


@register(NOTEBOOK, "multilabel")
def multilabel(P: Params) -> TrainingJob:
    data = load_data(P)
    train = multilabel_view(data.train)
    weights = pos_weights(np.stack([r["label"] for r in train.records]))
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


def synthetic_training_set(P: Params, generate, classifier, *, z_dim: int, real_train) -> tuple[ImageLabelDataset, dict]:
    """Step 2: pseudo-label ``fidelity.n_generate`` GAN images with classifier(real) and keep as many
    normal and abnormal ones as the real training set has (same number, same ratio)."""
    from medgan.analysis.classifier_fidelity import generate_and_pseudo_label, match_class_counts
    from medgan.train.engine import select_device

    f = P.fidelity
    images, probs, labels = generate_and_pseudo_label(
        generate, classifier, z_dim=z_dim, n=f.n_generate, batch_size=f.batch_size, seed=P.seed + 101,
        positive_above=f.positive_above, negative_below=f.negative_below, device=select_device(P.device))
    real_labels = np.array([r["label"] for r in real_train.records])
    counts = {0: int((real_labels == 0).sum()), 1: int((real_labels == 1).sum())}
    chosen = match_class_counts(labels, counts, seed=P.seed)
    kept = np.bincount(labels[chosen], minlength=2) if len(chosen) else np.zeros(2, int)
    if kept.min() < 2:
        raise ValueError(f"step 2: classifier(real) labelled only {int((labels == 0).sum())} of {len(labels)} PGGAN images "
                         f"normal (p < {f.negative_below}) and {int((labels == 1).sum())} abnormal (p > {f.positive_above}); "
                         f"too few to train classifier(synthetic) — raise fidelity.n_generate or train longer")
    info = {"generated": len(labels), "pseudo-labelled abnormal (p > %.2f)" % f.positive_above: int((labels == 1).sum()),
            "pseudo-labelled normal (p < %.2f)" % f.negative_below: int((labels == 0).sum()),
            "discarded (in between)": int((labels == -1).sum()),
            "kept normal": int((labels[chosen] == 0).sum()), "kept abnormal": int((labels[chosen] == 1).sum()),
            "real train normal": counts[0], "real train abnormal": counts[1]}
    return ImageLabelDataset(images[chosen], labels[chosen]), {**info, "probabilities": probs}


@register(NOTEBOOK, "classifier_synthetic")
def classifier_synthetic(P: Params) -> TrainingJob:
    """Needs the finished ``pggan`` and ``classifier_real`` runs of this profile."""
    from medgan.train.engine import load_trained

    base = runs_dir() / NOTEBOOK / P.profile
    real_job = classifier_real(P)
    load_trained(real_job.step, base / "classifier_real", device=P.device)
    gan_job = build_job_pggan(P, normal_only=False)
    load_trained(gan_job.step, base / "pggan", device=P.device)
    synthetic, info = synthetic_training_set(P, generator_fn(gan_job.step), real_job.step.model,
                                             z_dim=z_dim_of(gan_job.step), real_train=real_job.dataset)
    job = classifier_job(P, synthetic, num_outputs=1, info={"name": "classifier(synthetic)", "n": len(synthetic)})
    job.info.update(info)
    return job


# --- PGGAN -----------------------------------------------------------------------------------
def pggan_settings(P: Params, *, normal_only: bool = False) -> Params:
    """The ``pggan`` section, with ``pggan_normal``'s keys over it for the normal-only PGGAN."""
    return Params({**P.pggan.to_dict(), **(P.pggan_normal.to_dict() if normal_only else {})}, "pggan")


def pggan_config(P: Params, *, normal_only: bool = False):
    from medgan.models.pggan import PGGANConfig

    g = pggan_settings(P, normal_only=normal_only)
    return PGGANConfig(resolution=P.data.image_size, channels=1, z_dim=g.z_dim, fmap_base=g.fmap_base,
                       fmap_max=g.fmap_max, width=g.width, mbstd_group_size=g.mbstd_group_size)


def build_job_pggan(P: Params, *, normal_only: bool) -> TrainingJob:
    """Study 2's PGGAN (one definition) on this study's training images (all, or normal only)."""
    from medgan.train.engine import seed_everything
    from medgan.train.pggan import PGGANStep

    seed_everything(P.seed)
    # The normal-only PGGAN may train longer (``pggan_normal`` overrides ``pggan``): AnoGAN needs a
    # generator that redraws normal anatomy closely, or its residual is all anatomy, no lesion.
    g = pggan_settings(P, normal_only=normal_only)
    data = load_data(P)
    dataset = normal_view(data.train) if normal_only else binary_view(data.train)
    config = pggan_config(P, normal_only=normal_only)
    step = PGGANStep(config, total_steps=g.steps, lr=g.lr, betas=tuple(g.betas), gp_weight=g.gp_weight,
                     drift_weight=g.drift_weight, ema_decay=g.ema_decay, fade_fraction=g.fade_fraction,
                     final_weight=g.final_weight)
    fingerprint = {"pggan": g.to_dict(), "data": P.data.to_dict(), "normal_only": normal_only, "n_items": len(dataset)}
    options = dict(total_steps=g.steps, batch_size=min(g.batch_size, len(dataset)), seed=P.seed, device=P.device,
                   log_every=g.log_every, sample_every=g.sample_every, sample_count=32, fingerprint=fingerprint,
                   desc="PGGAN (normal only)" if normal_only else "PGGAN")
    info = {"images": len(dataset), "normal only": normal_only, "growth": step.schedule.table()}
    return TrainingJob(step=step, dataset=dataset, options=options, info=info)


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


@register(NOTEBOOK, "pggan")
def pggan(P: Params) -> TrainingJob:
    return build_job_pggan(P, normal_only=False)


@register(NOTEBOOK, "pggan_normal")
def pggan_normal(P: Params) -> TrainingJob:
    return build_job_pggan(P, normal_only=True)


# --- part (c) queries ------------------------------------------------------------------------------
@dataclass
class AnomalyQueries:
    normal_mean: torch.Tensor    # (1, 1, H, W) mean normal training image (the naive baseline's reference)
    normal_val: torch.Tensor     # (M, 1, H, W) normal validation images (thresholds)
    images: torch.Tensor         # (N, 1, H, W) test queries: normals, then single-finding images
    findings: list[str]          # (N,) "normal" or the finding's name
    masks: torch.Tensor | None   # (N, 1, H, W) lesion masks (phantom) or None
    trained: list[str]           # findings the supervised classifier was trained on

    def counts(self) -> pd.DataFrame:
        names, counts = np.unique(self.findings, return_counts=True)
        return pd.DataFrame({"queries": counts, "trained": [n in self.trained for n in names]}, index=names)


def anomaly_queries(P: Params, data: CXRData) -> AnomalyQueries:
    """Normal validation images and test queries for AnoGAN: ``anogan.n_test_normal`` normals and up
    to ``anogan.n_per_finding`` test images per finding that carry that finding alone."""
    a = P.anogan
    normals = [r for r in data.train.records if not r["meta"]["abnormal"]]
    normal_mean = torch.as_tensor(sum(np.asarray(r["image"], dtype=np.float64) for r in normals) / len(normals),
                                  dtype=torch.float32)[None]
    val_normals = normal_view(data.val)
    normal_val = images_of(val_normals)[: a.n_val_normal]
    picked, names = [], []
    by_finding: dict[str, list[int]] = {}
    for i, r in enumerate(data.test.records):
        if not r["meta"]["abnormal"]:
            by_finding.setdefault("normal", []).append(i)
        elif r["meta"]["n_findings"] == 1:
            by_finding.setdefault(r["meta"]["finding_labels"], []).append(i)
    for name in ["normal"] + sorted(k for k in by_finding if k != "normal"):
        take = by_finding.get(name, [])[: a.n_test_normal if name == "normal" else a.n_per_finding]
        picked += take
        names += [name] * len(take)
    records = [data.test.records[i] for i in picked]
    images = torch.stack([torch.as_tensor(np.asarray(r["image"], dtype=np.float32)) for r in records])
    masks = None
    if data.is_phantom:
        masks = torch.stack([torch.as_tensor(np.asarray(r["mask"], dtype=np.float32)).amax(0, keepdim=True)
                             for r in records])
    return AnomalyQueries(normal_mean=normal_mean, normal_val=normal_val, images=images, findings=names,
                          masks=masks, trained=list(data.findings))


# --- what the notebook shows ---------------------------------------------------------------------
def examples(ds: ItemListDataset, n: int = 16, *, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """``n`` images (normal and abnormal mixed) and their finding labels, for a sample grid."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(ds.records), size=min(n, len(ds.records)), replace=False)
    records = [ds.records[i] for i in idx]
    titles = [(r["meta"]["finding_labels"] or "normal").replace("|", "+")[:22] for r in records]
    return torch.stack([torch.as_tensor(np.asarray(r["image"], dtype=np.float32)) for r in records]), titles


def architecture_table(P: Params) -> pd.DataFrame:
    """Parameter counts of this run's networks beside the thesis's configuration."""
    from medgan.models.classifiers import count_parameters
    from medgan.models.pggan import PGGANConfig, build_pggan

    paper = build_pggan(PGGANConfig(resolution=1024, channels=1, z_dim=512, width=1.0))
    c = P.classifier
    k = len(P.data.findings)
    rows = []
    for label, normal_only in (("PGGAN", False), ("normal-only PGGAN (AnoGAN)", True)):
        g = pggan_settings(P, normal_only=normal_only)
        ours = build_pggan(pggan_config(P, normal_only=normal_only))
        rows += [
            {"network": f"{label} generator", "this run": f"{P.data.image_size} px, z {g.z_dim}, width x{g.width:g}",
             "parameters": count_parameters(ours["G"]), "thesis setup": "1024 px, z 512",
             "thesis parameters": count_parameters(paper["G"])},
            {"network": f"{label} discriminator", "this run": "WGAN-GP critic, minibatch std",
             "parameters": count_parameters(ours["D"]), "thesis setup": "1024 px",
             "thesis parameters": count_parameters(paper["D"])},
        ]
    for name, outputs in (("classifier(real) / (synthetic)", 1), ("multi-label classifier", 1 + k), ("severity regressor", k)):
        rows.append({"network": name, "this run": f"{c.arch} (width {c.width}), {outputs} sigmoid",
                     "parameters": count_parameters(build_model(P, num_outputs=outputs)),
                     "thesis setup": f"resnet50, {outputs} sigmoid" if name != "severity regressor" else "—",
                     "thesis parameters": count_parameters(build_classifier("resnet50", num_outputs=outputs))
                     if name != "severity regressor" else None})
    return pd.DataFrame(rows).set_index("network")


def sample_images(step, n: int, *, seed: int = 0) -> torch.Tensor:
    """``n`` images of the trained EMA generator (full resolution, [-1, 1])."""
    g = torch.Generator().manual_seed(seed)
    G = generator_fn(step)
    device = next(G.parameters()).device
    return G(torch.randn(n, z_dim_of(step), generator=g).to(device)).cpu()


def scorer(model):
    """images -> probabilities (N, K) of a trained classifier (a callable for the latent-axes code)."""
    from functools import partial

    from medgan.train.classifier import predict_proba

    device = next(model.parameters()).device
    return partial(predict_proba, model, batch_size=256, device=str(device))


def three_step(P: Params, data: CXRData, real_model, synthetic_model, gan_step):
    """Step 3: both classifiers on the real test set, classifier(synthetic) on a held-out synthetic
    test set (pseudo-labelled by classifier(real), new latents, matched to the real test counts)."""
    from medgan.analysis.classifier_fidelity import (generate_and_pseudo_label, match_class_counts,
                                                     three_step_evaluation)
    from medgan.train.classifier import predict_proba

    f = P.fidelity
    test = binary_view(data.test)
    labels = np.array([r["label"] for r in test.records])
    device = next(real_model.parameters()).device
    images, _, pseudo = generate_and_pseudo_label(
        generator_fn(gan_step), real_model, z_dim=z_dim_of(gan_step), n=f.n_generate, batch_size=f.batch_size,
        seed=P.seed + 202, positive_above=f.positive_above, negative_below=f.negative_below, device=device)
    keep = match_class_counts(pseudo, {0: int((labels == 0).sum()), 1: int((labels == 1).sum())}, seed=P.seed + 1)
    return three_step_evaluation(
        real_test_labels=labels, real_on_real=predict_proba(real_model, test)[:, 0],
        synthetic_on_real=predict_proba(synthetic_model, test)[:, 0], synthetic_test_labels=pseudo[keep],
        synthetic_on_synthetic=predict_proba(synthetic_model, images[keep])[:, 0],
        threshold=P.classifier.threshold, n_boot=f.n_boot, seed=P.seed)


def synthetic_set_table(job: TrainingJob) -> pd.DataFrame:
    """How the pseudo-labelled synthetic training set was drawn (counts)."""
    rows = {k: v for k, v in job.info.items() if isinstance(v, (int, np.integer))}
    return pd.DataFrame({"images": rows})


def gradcam_cases(data: CXRData, n: int) -> tuple[torch.Tensor, list[str], torch.Tensor | None]:
    """Half normal, half single-finding abnormal test images (+ their lesion masks on the phantom)."""
    normals = [r for r in data.test.records if not r["meta"]["abnormal"]][: n // 2]
    abnormal = [r for r in data.test.records if r["meta"]["n_findings"] == 1][: n - len(normals)]
    records = normals + abnormal
    images = torch.stack([torch.as_tensor(np.asarray(r["image"], dtype=np.float32)) for r in records])
    titles = [r["meta"]["finding_labels"] or "normal" for r in records]
    masks = (torch.stack([torch.as_tensor(np.asarray(r["mask"], dtype=np.float32)).amax(0) for r in records])
             if data.is_phantom else None)
    return images, titles, masks


def cam_in_lesion(cams: torch.Tensor, masks: torch.Tensor | None, titles: list[str]) -> float:
    """Share of Grad-CAM mass inside the lesion mask, averaged over the abnormal cases (phantom only)."""
    if masks is None:
        return float("nan")
    shares = [float((c * m).sum() / c.sum().clamp_min(1e-12)) for c, m, t in zip(cams, masks, titles)
              if t != "normal" and m.sum() > 0]
    return float(np.mean(shares)) if shares else float("nan")


def walk_steps(P: Params, gan_step) -> list[float]:
    """``axes.walk_steps`` in latent units (they are given in units of sqrt(z_dim))."""
    scale = float(np.sqrt(z_dim_of(gan_step)))
    return [float(s) * scale for s in P.axes.walk_steps]


def walk_curves(walks, class_names) -> tuple[dict, dict]:
    """finding -> mean and sd over starts of its own likelihood along its axis."""
    names = list(class_names)
    mean = {k: p[:, :, names.index(k)].mean(0) for k, (_, p) in walks.items()}
    sd = {k: p[:, :, names.index(k)].std(0) for k, (_, p) in walks.items()}
    return mean, sd


def walk_severity(walks, severity_model, findings) -> dict[str, np.ndarray]:
    """finding -> (N, S) severity of the walked images, measured by the phantom severity regressor."""
    from medgan.train.classifier import predict_proba

    out = {}
    for name, (images, _) in walks.items():
        n, s = images.shape[:2]
        sev = predict_proba(severity_model, images.reshape(n * s, *images.shape[2:]),
                            device=str(next(severity_model.parameters()).device))
        out[name] = sev[:, list(findings).index(name)].reshape(n, s)
    return out


def walk_strips(walks, model, class_names, *, start: int = 0) -> tuple[dict, dict, dict]:
    """For one start latent: images (S, C, H, W), class-activation maps (S, H, W) of the multi-label
    classifier for the walked finding, and its likelihood (S,) — per finding."""
    from medgan.analysis.gradcam import grad_cam

    names = list(class_names)
    images, cams, probs = {}, {}, {}
    for name, (imgs, p) in walks.items():
        images[name] = imgs[start]
        cams[name] = grad_cam(model, imgs[start], classes=names.index(name))
        probs[name] = p[start, :, names.index(name)]
    return images, cams, probs


def invert_options(P: Params, normal_step) -> dict[str, Any]:
    """Keyword arguments of :func:`medgan.analysis.anogan.invert` for the normal-only PGGAN's step;
    with ``anogan.feature_weight > 0`` its critic's hidden features join the objective (AnoGAN)."""
    from medgan.models.pggan import CriticFeatures
    from medgan.train.engine import select_device

    a = P.anogan
    options = dict(steps=a.steps, lr=a.lr, restarts=a.restarts, feature_weight=a.feature_weight,
                   batch_size=a.batch_size, seed=P.seed, device=select_device(P.device))
    if a.feature_weight > 0:
        options["discriminator_features"] = CriticFeatures(normal_step.nets["D"])
    return options


def supervised_scores(model, queries: AnomalyQueries) -> tuple[tuple[np.ndarray, np.ndarray], float]:
    """The multi-label classifier as a detector: max P over the 5 findings, on the normal validation
    images and the queries; and its time per query in seconds."""
    import time

    from medgan.train.classifier import predict_proba

    device = str(next(model.parameters()).device)
    val = predict_proba(model, queries.normal_val, device=device)[:, 1:].max(1)
    t0 = time.perf_counter()
    test = predict_proba(model, queries.images, device=device)[:, 1:].max(1)
    return (val, test), (time.perf_counter() - t0) / len(queries.images)


def table6_comparison(evaluation, *, method: str = ANOGAN) -> pd.DataFrame:
    """The thesis's Table 6 beside ours (per finding detected / n and rate)."""
    from medgan.analysis.anogan import PAPER_SUPERVISED, PAPER_TABLE6

    ours = evaluation.detection[method][["detected", "n", "rate"]]
    paper = PAPER_TABLE6[["detected", "n", "rate"]].copy()
    totals = pd.DataFrame({"detected": [v[0] for v in PAPER_SUPERVISED.values()],
                           "n": [v[1] for v in PAPER_SUPERVISED.values()]},
                          index=[f"{k} (supervised CNN)" for k in PAPER_SUPERVISED])
    totals["rate"] = totals["detected"] / totals["n"]
    paper = pd.concat([paper, pd.DataFrame({"detected": [89], "n": [100], "rate": [0.89]}, index=["all abnormal"]),
                       totals])
    combined = pd.concat({"thesis (AnoGAN, radiologist reading)": paper, f"ours ({method}, threshold)": ours}, axis=1)
    for column in combined.columns:
        if column[1] in ("detected", "n"):
            combined[column] = combined[column].astype("Int64")  # counts, not 8.000
    return combined


def anomaly_examples(evaluation, queries: AnomalyQueries, *, per_finding: int = 1, max_rows: int = 8) -> dict:
    """Keyword arguments of :func:`medgan.reports.cxr_figures.anomaly_examples_figure` for a few queries
    (one normal, then ``per_finding`` of each finding)."""
    picked, seen = [], {}
    for i, name in enumerate(queries.findings):
        if seen.get(name, 0) < per_finding and len(picked) < max_rows:
            picked.append(i)
            seen[name] = seen.get(name, 0) + 1
    inv = evaluation.inversion
    return dict(queries=queries.images[picked], reconstructions=inv.reconstruction[picked],
                maps=evaluation.maps[ANOGAN][picked],
                baseline_maps=evaluation.maps[BASELINE][picked],
                masks=None if queries.masks is None else queries.masks[picked],
                titles=[queries.findings[i] for i in picked])


def claims_table(three, axes_summary: pd.DataFrame, severity_available: bool, evaluation) -> pd.DataFrame:
    """Each claim of the thesis, its number, ours, and whether our run supports it (computed, not typed)."""
    r = three.results
    real, syn_real = r["classifier(real) on real test"], r["classifier(synthetic) on real test"]
    rows = [
        {"claim": "(a) classifier(synthetic) recognises abnormal real CXRs well above chance",
         "thesis": "AUROC 0.881 (real-trained 0.983)",
         "ours": f"AUROC {syn_real['auroc']:.3f} [{syn_real['auroc_low']:.3f}, {syn_real['auroc_high']:.3f}] "
                 f"(real-trained {real['auroc']:.3f})",
         "supported": bool(syn_real["auroc_low"] > 0.5)},
        {"claim": "(a) the gap between the two classifiers is small / not significant",
         "thesis": "'no statistical difference (p < 0.0001)' — the p-value says the opposite",
         "ours": f"ΔAUROC {three.delong['difference']:.3f}, DeLong p = {three.delong['p_value']:.2g}",
         "supported": bool(three.delong["p_value"] >= 0.05)},
    ]
    if len(axes_summary):
        rises = axes_summary["likelihood at end"] > axes_summary["likelihood at start"] + 0.3
        rows.append({"claim": "(b) moving a normal latent along a finding's axis raises that finding's likelihood",
                     "thesis": "0 -> 0.97 / 0.89 / 0.99 (consolidation / interstitial / effusion)",
                     "ours": "; ".join(f"{k}: {v['likelihood at start']:.2f} -> {v['likelihood at end']:.2f}"
                                       for k, v in axes_summary.iterrows()),
                     "supported": bool(rises.any())})
        if severity_available and "Spearman(step, severity)" in axes_summary:
            rows.append({"claim": "(b) the axis controls severity (radiologist: up to moderate/severe)",
                         "thesis": "visual scoring only",
                         "ours": "; ".join(f"{k}: rho {v['Spearman(step, severity)']:.2f}" for k, v in axes_summary.iterrows()),
                         "supported": bool((axes_summary["Spearman(step, severity)"] > 0.5).any())})
    else:
        rows.append({"claim": "(b) latent disease axes exist", "thesis": "3 of 5 findings",
                     "ours": "no finding had enough single-finding images", "supported": False})
    s = evaluation.summary
    ano, base = s.loc[ANOGAN], s.loc[BASELINE]
    d = evaluation.detection
    rows += [
        {"claim": "(c) AnoGAN separates abnormal from normal CXRs without labels",
         "thesis": "90/100 abnormal detected (radiologist reading; no normals scored)",
         "ours": f"image AUROC {ano['image AUROC']:.3f} [{ano['AUROC low']:.3f}, {ano['AUROC high']:.3f}] "
                 f"(mean-image baseline {base['image AUROC']:.3f}, DeLong p = {base['DeLong p vs AnoGAN']:.2g})",
         "supported": bool(ano["AUROC low"] > 0.5)},
    ]
    test = evaluation.localisation_test
    for metric in ("pixel AUROC", "Dice") if test is not None else ():
        t = test.loc[metric]
        rows.append({"claim": f"(c) AnoGAN's difference map localises lesions better than the mean-image baseline: "
                              f"{metric} (beyond the thesis: vs masks)",
                     "thesis": "shown visually",
                     "ours": f"{ano[metric]:.3f} vs {base[metric]:.3f}; difference {t['difference']:+.3f} "
                             f"[{t['low']:+.3f}, {t['high']:+.3f}] (paired bootstrap over images)",
                     "supported": bool(t["low"] > 0)})
    sup = "supervised multi-label classifier"
    if sup in d.columns.get_level_values(0) and "untrained findings" in d.index:
        a_rate = d.loc["untrained findings", (ANOGAN, "rate")]
        s_rate = d.loc["untrained findings", (sup, "rate")]
        rows.append({"claim": "(c) AnoGAN detects findings the supervised CNN was never trained on better than it",
                     "thesis": "untrained: CNN 14/60 (23%); AnoGAN 90% overall",
                     "ours": f"untrained findings detected: AnoGAN {a_rate:.0%}, classifier {s_rate:.0%} (same 95% specificity rule)",
                     "supported": bool(a_rate > s_rate)})
    rows.append({"claim": "(c) the iterative search is slow (the thesis's stated weakness)",
                 "thesis": "no time given",
                 "ours": f"{ano['s / query']:.2f} s per query vs {s.loc[sup, 's / query']:.4f} s for the classifier"
                 if sup in s.index else f"{ano['s / query']:.2f} s per query",
                 "supported": bool(sup in s.index and ano["s / query"] > 10 * s.loc[sup, "s / query"])})
    return pd.DataFrame(rows).set_index("claim")
