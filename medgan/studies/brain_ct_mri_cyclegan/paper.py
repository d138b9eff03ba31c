"""The paper study 3 reproduces, its reported numbers, and its claims checked on a run.

Kim, Kwon and Choi train CycleGAN on the unpaired Kaggle "CT and MRI brain scans" set with two
generator backbones, ResNet 9-block and U-Net-256, and compare them by FID in both directions.
"""

from __future__ import annotations

import pandas as pd
import torch

from medgan.config import Params
from medgan.models.image_to_image import count_parameters, define_discriminator, define_generator
from medgan.reports.results import Claim, Headline
from medgan.reports.translation_figures import inference_mode_text
from medgan.studies.brain_ct_mri_cyclegan.data import BrainData
from medgan.studies.brain_ct_mri_cyclegan.evaluation import MODEL_LABELS, model_label
from medgan.studies.brain_ct_mri_cyclegan.jobs import augmentation, total_steps

AUTHORS = "Seong-Hyeok Kim, Jang-Ho Kwon and Ki-Hwan Choi"
TITLE = "CycleGAN-Based Bidirectional Conversion of Brain CT and MRI Scans"
VENUE = "conference paper, in Korean (Seoul National University of Science and Technology; KIST)"
YEAR = None  # neither the venue's name nor the year is printed on the paper
CITATION = f"{AUTHORS}, “{TITLE}”, {VENUE}" + (f", {YEAR}" if YEAR else "")

# The paper's setup (its section 3; reference CycleGAN defaults where it is silent, see settings_table).
SETUP = {"dataset": 'Kaggle "CT and MRI brain scans" (unpaired)', "train images per modality": 1756,
         "test images per modality": 744, "image size (px)": 256, "epochs": 200,
         "generators": "ResNet 9-block, U-Net-256", "generator width": 64, "FID features": "ImageNet InceptionV3"}

# The paper's generators at its configuration (3-channel PNGs as loaded by the reference code, width 64)
ARCHITECTURES = {"resnet": "resnet_9blocks", "unet": "unet_256"}
PARAMS_M = {"resnet_9blocks": 11.4, "unet_256": 54.4}  # generator parameters (millions), as reported

# The paper's Table 2: FID per direction (ImageNet Inception, Kaggle test images) and generator parameters.
FID = {"ResNet-9": {"CT→MRI": 58.32, "MRI→CT": 71.41, "params (M)": 11.4},
       "U-Net": {"CT→MRI": 95.19, "MRI→CT": 90.47, "params (M)": 54.4}}

# How each claim is decided on a run (point estimates of the scores; CIs are shown beside them).
CRITERIA = {
    "ResNet-9 has lower FID than U-Net": "FID of ResNet-9 < FID of U-Net, in the same feature network",
    "ResNet-9 is closer to the truth than U-Net by SSIM": "mean SSIM against the truth of ResNet-9 > that of U-Net",
    "FID ranks the generators as the truth does": "the FID order of the two generators equals their SSIM order",
    "beats the identity baseline on SSIM": "mean SSIM of the translation > mean SSIM of the untranslated input",
}


def setup_table() -> pd.DataFrame:
    """The paper's data, image size, training length and feature network."""
    return pd.DataFrame({"paper": SETUP})


def fid_table() -> pd.DataFrame:
    """The paper's table: FID per direction and generator parameters (millions), per generator."""
    return pd.DataFrame(FID).T


def criteria_table() -> pd.DataFrame:
    """The rule that decides each claim."""
    return pd.DataFrame({"supported when": CRITERIA}).rename_axis("claim")


def settings_table(params: Params) -> pd.DataFrame:
    """The CycleGAN training settings of this run, beside the paper's (reference defaults where it is silent)."""
    t = params.train
    ours = {"image size (px)": params.data.image_size, "batch size": t.batch_size,
            "iterations": t.steps if t.get("epochs") is None else f"{t.epochs} epochs",
            "Adam lr, betas": f"{t.lr:g}, {tuple(t.betas)}", "lambda cycle": t.lambda_cycle,
            "lambda identity (x lambda cycle)": t.lambda_identity, "image pool": t.pool_size,
            "lr decay starts at": f"{t.decay_start:.0%} of training", "adversarial loss": "LSGAN",
            "discriminator": f"PatchGAN n_layers={params.discriminator.n_layers}, w{params.discriminator.width}"}
    paper = {"image size (px)": SETUP["image size (px)"], "batch size": "1 (reference default)",
             "iterations": f"{SETUP['epochs']} epochs",
             "Adam lr, betas": "2e-4, (0.5, 0.999) (reference default)", "lambda cycle": "λ (10 in the reference)",
             "lambda identity (x lambda cycle)": "not stated (0.5 reference default)",
             "image pool": "not stated (50 reference default)", "lr decay starts at": "not stated (50% reference)",
             "adversarial loss": "log-likelihood in eq. (1); reference code: LSGAN",
             "discriminator": "PatchGAN 70x70 (reference default)"}
    return pd.DataFrame({"paper": paper, "ours": ours})


def architecture_table(params: Params) -> pd.DataFrame:
    """Generator/discriminator parameter counts: the paper's configuration (3 -> 3 channels, width 64,
    instance norm, as the reference code loads the PNGs as RGB) and the one this run trains."""
    rows = []
    for model, g in params.models.items():
        paper_name = ARCHITECTURES.get(model)
        if paper_name is not None:
            with torch.device("meta"):  # counting only
                paper_g = define_generator(paper_name, 3, 3, width=64, norm="instance", init_gain=None)
                paper_d = define_discriminator(3, width=64, norm="instance", init_gain=None)
            paper_count, paper_d_count = count_parameters(paper_g), count_parameters(paper_d)
        else:
            paper_count = paper_d_count = None
        with torch.device("meta"):
            ours_g = define_generator(g.generator, params.data.channels, params.data.channels, width=g.width,
                                      norm=g.norm, dropout=g.dropout, init_gain=None)
            ours_d = define_discriminator(params.data.channels, width=params.discriminator.width,
                                          n_layers=params.discriminator.n_layers, norm=params.discriminator.norm,
                                          init_gain=None)
        rows.append({"model": model, "paper generator": paper_name,
                     "paper reports (M)": PARAMS_M.get(paper_name),
                     "reference code, 3ch w64 (M)": None if paper_count is None else paper_count / 1e6,
                     "PatchGAN D, 3ch w64 (M)": None if paper_d_count is None else paper_d_count / 1e6,
                     "our generator": g.generator, "our width": g.width,
                     "ours G (M)": count_parameters(ours_g) / 1e6, "ours D (M)": count_parameters(ours_d) / 1e6})
    return pd.DataFrame(rows).set_index("model")


# The reference implementation's defaults for each protocol row (pytorch-CycleGAN-and-pix2pix: options/*.py,
# data/unaligned_dataset.py, data/base_dataset.py, test.py); the paper states none of them.
REFERENCE_PROTOCOL = {
    "sampling": "batch 1: each CT image in turn (shuffled), an MRI image drawn at random for it (unaligned_dataset.py)",
    "augmentation": "resize to 286 px and a random 256 px crop; left-right flip with probability 0.5; "
                    "CT and MRI transformed independently (base_dataset.get_transform)",
    "test images": "resized to 256 px, no crop, no flip (test.py: no_flip, load_size = crop_size)",
    "inference mode": "train unless --eval (test.py); the same images with CycleGAN's instance norm and no dropout",
    "schedule": "200 epochs: 100 at Adam lr 2e-4, betas (0.5, 0.999), then 100 decaying linearly to 0",
}


def protocol_table(params: Params, data: BrainData) -> pd.DataFrame:
    """What this run actually did, computed from ``params`` (and the data's sizes), beside the reference's
    defaults: how training batches are drawn, the augmentation, the test images, the generators'
    inference mode and the schedule."""
    t, c = params.train, int(params.data.channels)
    n_a, n_b, bs = len(data.train_a), len(data.train_b), int(t.batch_size)
    steps = total_steps(params, n_a, n_b)
    aug = augmentation(params)
    with torch.device("meta"):  # which layers the generators have, nothing computed
        nets = {MODEL_LABELS.get(m, m): define_generator(g.generator, c, c, width=g.width, norm=g.norm,
                                                         dropout=g.dropout, init_gain=None)
                for m, g in params.models.items()}
    length = (f"{t.epochs} epochs of max(|CT|, |MRI|) = {max(n_a, n_b)} images = " if t.get("epochs") is not None
              else "")
    ours = {
        "sampling": f"batch {bs}: {bs} CT and {bs} MRI train images drawn independently (the {n_a} × {n_b} "
                    f"(CT, MRI) combinations shuffled without replacement each epoch, seed {params.seed})",
        "augmentation": aug.describe() if aug is not None else "none",
        "test images": f"resized to {params.data.image_size} px, no crop, no flip",
        "inference mode": inference_mode_text(params.inference_mode, batch_size=int(params.inference_batch_size),
                                              seed=int(params.seed), generators=nets),
        "schedule": f"{length}{steps} iterations of batch {bs}; Adam lr {t.lr:g}, betas {tuple(t.betas)}, constant "
                    f"for the first {t.decay_start:.0%}, then decaying linearly to 0",
    }
    return pd.DataFrame({"this run": ours, "reference default": REFERENCE_PROTOCOL}).rename_axis("protocol")


def claims(summary: pd.DataFrame, params: Params, directions: list[str]) -> list[Claim]:
    """The paper's claim (ResNet-9 beats U-Net by FID) and our checks against the truth, decided on this run.

    ``summary``: rows method, direction, metric, estimate, low, high (``TranslationEvaluation.summary``);
    the methods are named by ``evaluation.model_label``; ``identity`` is the untranslated input.
    Each claim is decided by its rule in :data:`CRITERIA`; claims whose scores are missing are left out.
    """
    res, unet = model_label(params, "resnet"), model_label(params, "unet")
    est = summary.set_index(["method", "direction", "metric"])

    def has(method: str, direction: str, metric: str) -> bool:
        return (method, direction, metric) in est.index

    def get(method: str, direction: str, metric: str, column: str = "estimate") -> float:
        return float(est.loc[(method, direction, metric), column])

    def with_ci(method: str, direction: str, metric: str, fmt: str) -> str:
        return (f"{get(method, direction, metric):{fmt}} [{get(method, direction, metric, 'low'):{fmt}}, "
                f"{get(method, direction, metric, 'high'):{fmt}}]")

    not_measured = "not measured (no truth on unpaired data)"
    out = []
    for direction in directions:
        fid = has(res, direction, "fid") and has(unet, direction, "fid")
        ssim = has(res, direction, "ssim") and has(unet, direction, "ssim")
        if fid:
            a, b = get(res, direction, "fid"), get(unet, direction, "fid")
            paper_fid = FID["ResNet-9"].get(direction), FID["U-Net"].get(direction)
            out.append(Claim(claim=f"ResNet-9 has lower FID than U-Net ({direction})",
                             paper=f"FID {paper_fid[0]} vs {paper_fid[1]}",
                             ours=f"FID {with_ci(res, direction, 'fid', '.3g')} vs {with_ci(unet, direction, 'fid', '.3g')}",
                             supported=a < b, evidence=CRITERIA["ResNet-9 has lower FID than U-Net"]))
        if ssim:
            a, b = get(res, direction, "ssim"), get(unet, direction, "ssim")
            out.append(Claim(claim=f"ResNet-9 is closer to the truth than U-Net by SSIM ({direction})",
                             paper=not_measured,
                             ours=f"SSIM {with_ci(res, direction, 'ssim', '.3f')} vs {with_ci(unet, direction, 'ssim', '.3f')}",
                             supported=a > b, evidence=CRITERIA["ResNet-9 is closer to the truth than U-Net by SSIM"]))
        if fid and ssim:
            by_fid = get(res, direction, "fid") < get(unet, direction, "fid")
            by_ssim = get(res, direction, "ssim") > get(unet, direction, "ssim")
            order = {True: "ResNet-9 > U-Net", False: "U-Net > ResNet-9"}
            out.append(Claim(claim=f"FID ranks the generators as the truth (SSIM) does ({direction})",
                             paper=not_measured, ours=f"FID: {order[by_fid]}; SSIM: {order[by_ssim]}",
                             supported=by_fid == by_ssim, evidence=CRITERIA["FID ranks the generators as the truth does"]))
        for label in (res, unet):
            if has(label, direction, "ssim") and has("identity", direction, "ssim"):
                a, b = get(label, direction, "ssim"), get("identity", direction, "ssim")
                out.append(Claim(claim=f"{label.split(' (')[0]} beats the identity baseline on SSIM ({direction})",
                                 paper=not_measured,
                                 ours=f"SSIM {with_ci(label, direction, 'ssim', '.3f')} vs identity "
                                      f"{with_ci('identity', direction, 'ssim', '.3f')}",
                                 supported=a > b, evidence=CRITERIA["beats the identity baseline on SSIM"]))
    return out


def headlines(summary: pd.DataFrame, params: Params, directions: list[str], *, extractor: str = "") -> list[Headline]:
    """FID of each generator in each direction, beside the paper's (ours in ``extractor``'s features)."""
    out = []
    for model in params.models:
        label, short = model_label(params, model), MODEL_LABELS.get(model, model)
        for direction in directions:
            rows = summary[(summary["method"] == label) & (summary["direction"] == direction)
                           & (summary["metric"] == "fid")]
            if rows.empty:
                continue
            out.append(Headline(label=f"{short} FID {direction}", ours=float(rows["estimate"].iloc[0]),
                                paper=FID.get(short, {}).get(direction),
                                note=f"ours: {extractor} features" if extractor else "",
                                low=float(rows["low"].iloc[0]), high=float(rows["high"].iloc[0]),
                                interval="95% bootstrap CI over subjects"))
    return out
