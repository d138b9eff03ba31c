"""Part (a) of study 5: fidelity of the PGGAN's images measured by classifiers (the thesis's 3 steps),
and where the two classifiers look (Grad-CAM, with the lesion masks on the phantom)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from medgan.analysis.classifier_fidelity import (ThreeStepResult, generate_and_pseudo_label, generate_batches,
                                                 match_class_counts, three_step_evaluation)
from medgan.analysis.gradcam import grad_cam
from medgan.config import Params
from medgan.studies.cxr_pggan.data import CXRData, binary_view, gradcam_cases
from medgan.studies.cxr_pggan.jobs import generator_fn, z_dim_of
from medgan.train.classifier import predict_proba
from medgan.train.job import TrainingJob


def synthetic_set_table(job: TrainingJob) -> pd.DataFrame:
    """How the pseudo-labelled synthetic training set of a ``classifier_synthetic`` job was drawn (counts)."""
    rows = {k: v for k, v in job.info.items() if isinstance(v, (int, np.integer))}
    return pd.DataFrame({"images": rows})


def three_step(P: Params, data: CXRData, real_model, synthetic_model, gan_step) -> ThreeStepResult:
    """Step 3: both classifiers on the real test set, classifier(synthetic) on a held-out synthetic
    test set (pseudo-labelled by classifier(real), new latents, matched to the real test counts).

    The synthetic test images are streamed: the draw keeps latents and probabilities, and the kept
    latents are drawn again batch by batch for classifier(synthetic); the real test set is read
    from disk batch by batch."""
    f = P.fidelity
    test = binary_view(data.test)
    labels = test.label_array()
    device = next(real_model.parameters()).device
    G = generator_fn(gan_step)
    drawn = generate_and_pseudo_label(
        G, real_model, z_dim=z_dim_of(gan_step), n=f.n_generate, batch_size=f.batch_size, seed=P.seed + 202,
        positive_above=f.positive_above, negative_below=f.negative_below, device=device, progress=True)
    keep = match_class_counts(drawn.labels, {0: int((labels == 0).sum()), 1: int((labels == 1).sum())}, seed=P.seed + 1)
    batches = generate_batches(G, drawn.latents[keep], batch_size=f.batch_size, device=device)
    synthetic_scores = [predict_proba(synthetic_model, images, device=str(device))[:, 0] for images in batches]
    return three_step_evaluation(
        real_test_labels=labels, real_on_real=predict_proba(real_model, test, device=str(device))[:, 0],
        synthetic_on_real=predict_proba(synthetic_model, test, device=str(device))[:, 0],
        synthetic_test_labels=drawn.labels[keep],
        synthetic_on_synthetic=np.concatenate(synthetic_scores) if synthetic_scores else np.zeros(0),
        threshold=P.classifier.threshold, n_boot=f.n_boot, seed=P.seed)


def delong_table(three: ThreeStepResult) -> pd.DataFrame:
    """DeLong's test of classifier(real) vs classifier(synthetic) on the real test set, as one row."""
    return pd.DataFrame([three.delong], index=["classifier(real) vs classifier(synthetic), real test set"])


def cam_in_lesion(cams: torch.Tensor, masks: torch.Tensor | None, titles: list[str]) -> float:
    """Share of Grad-CAM mass inside the lesion mask, averaged over the abnormal cases (phantom only)."""
    if masks is None:
        return float("nan")
    shares = [float((c * m).sum() / c.sum().clamp_min(1e-12)) for c, m, t in zip(cams, masks, titles)
              if t != "normal" and m.sum() > 0]
    return float(np.mean(shares)) if shares else float("nan")


def gradcam_comparison(data: CXRData, models: dict[str, torch.nn.Module], n: int
                       ) -> tuple[torch.Tensor, list[str], dict[str, torch.Tensor], pd.DataFrame]:
    """Grad-CAM of each named classifier on the same ``n`` test cases (half normal, half one finding).

    Returns (images (n, 1, H, W), titles, name -> maps (n, H, W) in [0, 1], a one-row table of the
    share of Grad-CAM mass inside the lesion mask per classifier (NaN without masks)).
    """
    images, titles, masks = gradcam_cases(data, n)
    cams = {name: grad_cam(model, images) for name, model in models.items()}
    share = pd.DataFrame({name: [cam_in_lesion(c, masks, titles)] for name, c in cams.items()},
                         index=["Grad-CAM mass inside the lesion mask"])
    return images, titles, cams, share
