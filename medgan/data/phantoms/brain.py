"""Brain CT/MRI phantom in the Kaggle "CT and MRI brain scans" layout.

Each subject is one procedural head (scalp, skull, CSF, folded cortex, white matter,
ventricles, random deformation) sampled at several axial levels and rendered twice: as CT
(bright bone, grey brain, dark CSF) and as MRI (T2-like: bright CSF, dark bone; or T1-like).
``Dataset/images/trainA`` (CT) and ``trainB`` (MRI) hold *different* subjects (unpaired);
``testA``/``testB`` hold the same test subjects, and the true counterpart of every test image is
kept aside in ``truth/testA_in_B/`` and ``truth/testB_in_A/`` under the same file name.
File names are ``subjNNN_sKK.png`` (subject, slice).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from medgan.data.phantoms._shapes import grid2d, smooth_noise
from medgan.data.png_folders import write_png

DEFAULTS = {"n_train_subjects": 30, "n_test_subjects": 10, "slices_per_subject": 8, "image_size": 64,
            "mri_contrast": "t2", "seed": 0}
SMOKE = {"n_train_subjects": 4, "n_test_subjects": 2, "slices_per_subject": 3, "image_size": 32}
# The counts of a paper-size set (``paper_size``): a few subjects, the paper's image size.
PAPER_SIZE_COUNTS = {"n_train_subjects": 2, "n_test_subjects": 2, "slices_per_subject": 1}

# tissue labels
AIR, SCALP, BONE, CSF, GREY, WHITE, VENTRICLE = range(7)
INTENSITY = {  # 8-bit display values per tissue
    "ct": {AIR: 0, SCALP: 70, BONE: 250, CSF: 35, GREY: 110, WHITE: 95, VENTRICLE: 30},
    "t2": {AIR: 0, SCALP: 120, BONE: 15, CSF: 235, GREY: 140, WHITE: 90, VENTRICLE: 245},
    "t1": {AIR: 0, SCALP: 200, BONE: 15, CSF: 40, GREY: 120, WHITE: 175, VENTRICLE: 35},
}


def head_labels(rng: np.random.Generator, anatomy: dict, level: float, size: int) -> np.ndarray:
    """Tissue label map (size, size) of one head at axial ``level`` in [0, 1] (0 low, 1 vertex)."""
    render = size * 2  # render at 2x and downsample later for smooth edges
    y, x = grid2d(render)
    # displacement field: the subject's own deformation (fixed per subject), plus a little per slice
    warp = anatomy["warp"]
    yy = y + ndimage.zoom(warp[0], render / warp.shape[1], order=1)
    xx = x + ndimage.zoom(warp[1], render / warp.shape[1], order=1)
    shrink = np.sqrt(max(1e-3, 1 - (level * 0.9) ** 2))  # head narrows towards the vertex
    ry, rx = anatomy["ry"] * (0.55 + 0.45 * shrink), anatomy["rx"] * (0.55 + 0.45 * shrink)
    radius = np.sqrt((xx / rx) ** 2 + (yy / ry) ** 2)
    angle = np.arctan2(yy, xx)
    labels = np.full(radius.shape, AIR, np.uint8)
    labels[radius <= 1.0] = SCALP
    labels[radius <= 0.93] = BONE
    labels[radius <= 0.93 - anatomy["skull"]] = CSF
    # cortex with gyri: the grey/white boundary and brain surface fold with angle
    folds = anatomy["fold_amp"] * np.sin(anatomy["fold_freq"] * angle + anatomy["fold_phase"] + 3 * level)
    brain_edge = 0.93 - anatomy["skull"] - 0.03
    labels[radius <= brain_edge + 0.4 * folds] = GREY
    labels[radius <= brain_edge - 0.09 + folds] = WHITE
    # sulci: CSF clefts reaching in from the surface
    sulci = (np.cos(anatomy["fold_freq"] * angle + anatomy["fold_phase"] + 3 * level) > 0.93) & (radius > brain_edge - 0.12) & (radius <= brain_edge)
    labels[sulci] = CSF
    # ventricles (present at mid levels): two crescents beside the midline, plus the falx
    v_size = anatomy["ventricle"] * np.clip(1 - abs(level - 0.45) / 0.35, 0, 1)
    if v_size > 0.02:
        for side in (-1, 1):
            vent = ((xx - side * 0.12 * rx) / (0.08 * rx + v_size * 0.3)) ** 2 + ((yy + 0.05) / (0.35 * ry * (0.4 + v_size))) ** 2 <= 1
            labels[vent & (labels >= GREY)] = VENTRICLE
    labels[(np.abs(xx) < 0.012) & (radius <= brain_edge) & (np.abs(yy) > 0.3 * ry)] = CSF
    return labels


def render(labels: np.ndarray, contrast: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """Tissue labels -> uint8 image of one modality with texture, noise (and bias field for MRI)."""
    table = INTENSITY[contrast]
    image = np.zeros(labels.shape, np.float32)
    for tissue, value in table.items():
        image[labels == tissue] = value
    tissue = labels > AIR
    image += np.where(tissue, 6 * smooth_noise(rng, labels.shape, 3.0), 0)
    if contrast == "ct":
        image += 4 * rng.standard_normal(labels.shape)
    else:
        y, x = grid2d(labels.shape[0])
        bias = 1 + 0.12 * (rng.uniform(-1, 1) * x + rng.uniform(-1, 1) * y)  # coil bias field
        image = image * bias
        # magnitude of complex Gaussian noise (Rician), as in MR magnitude images
        image = np.hypot(image + 6 * rng.standard_normal(labels.shape), 6 * rng.standard_normal(labels.shape))
    small = image.reshape(size, 2, size, 2).mean(axis=(1, 3))
    return np.clip(np.round(small), 0, 255).astype(np.uint8)


def _anatomy(rng: np.random.Generator) -> dict:
    return {"ry": rng.uniform(0.78, 0.9), "rx": rng.uniform(0.62, 0.74), "skull": rng.uniform(0.04, 0.07),
            "fold_amp": rng.uniform(0.015, 0.03), "fold_freq": int(rng.integers(9, 15)),
            "fold_phase": rng.uniform(0, 2 * np.pi), "ventricle": rng.uniform(0.1, 0.45),
            "warp": 0.04 * np.stack([smooth_noise(rng, (16, 16), 3.0), smooth_noise(rng, (16, 16), 3.0)])}


def paper_size(paper: dict) -> dict:
    """Options of a paper-size set from study 3's resolved ``paper`` profile: PNGs of its
    ``data.image_size`` (256 px, as the paper's padded Kaggle images), a few subjects."""
    return {"image_size": int(paper["data"]["image_size"]), **PAPER_SIZE_COUNTS}


def generate(folder: Path, *, n_train_subjects: int, n_test_subjects: int, slices_per_subject: int,
             image_size: int, mri_contrast: str, seed: int) -> None:
    """Write the phantom (root for :class:`BrainCTMRI`: the folder holding ``Dataset/``)."""
    if mri_contrast not in ("t1", "t2"):
        raise ValueError(f"mri_contrast must be 't1' or 't2', got {mri_contrast!r}")
    folder = Path(folder)
    images = folder / "Dataset" / "images"
    master = np.random.default_rng(seed)
    n_total = 2 * n_train_subjects + n_test_subjects
    for index in range(n_total):
        rng = np.random.default_rng(master.integers(2 ** 63))
        anatomy = _anatomy(rng)
        levels = np.linspace(0.1, 0.8, slices_per_subject) + rng.uniform(-0.03, 0.03, slices_per_subject)
        for k, level in enumerate(levels):
            labels = head_labels(rng, anatomy, float(level), image_size)
            name = f"subj{index:03d}_s{k:02d}.png"
            ct = render(labels, "ct", rng, image_size)
            mri = render(labels, mri_contrast, rng, image_size)
            if index < n_train_subjects:          # CT-only subjects
                write_png(images / "trainA" / name, ct)
            elif index < 2 * n_train_subjects:    # MRI-only subjects (unpaired)
                write_png(images / "trainB" / name, mri)
            else:                                 # test subjects: both, truth kept aside
                write_png(images / "testA" / name, ct)
                write_png(images / "testB" / name, mri)
                write_png(folder / "truth" / "testA_in_B" / name, mri)
                write_png(folder / "truth" / "testB_in_A" / name, ct)
