"""Chest CT phantom in the NSCLC-Radiomics layout (DICOM CT series + clinical CSV).

Per patient: a thorax (body wall with fat, ribs, spine, heart, aorta, trachea, lungs with
vessels) and one lung tumour of varying size, shape and position, in HU with correlated noise,
written as ``NSCLC-Radiomics/LUNG1-XXX/<study>/<series>/1-NNN.dcm`` (uint16 stored values with
RescaleIntercept -1024, like the real data), plus a ``RTSTRUCT``-free clinical CSV. The death
label depends on tumour diameter and spiculation (logistic model), so a classifier can learn it.

Ground truth: ``truth/tumours.csv`` (diameter, spiculation, centre, death probability) and
``truth/masks/LUNG1-XXX.nii.gz`` (tumour mask, (Z,Y,X) like the CT).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from scipy import ndimage

from medgan import atomic
from medgan.data.dicom import deterministic_uid, write_slice
from medgan.data.nifti import write_nifti
from medgan.data.phantoms._shapes import lobulated_blob, segment_distance, smooth_noise

DEFAULTS = {"n_subjects": 30, "image_size": 128, "n_slices": 24, "pixel_spacing_mm": 2.5,
            "slice_thickness_mm": 5.0, "noise_hu": 20.0, "seed": 0}
SMOKE = {"n_subjects": 6, "image_size": 64, "n_slices": 6, "pixel_spacing_mm": 5.0}
# A paper-size set: the real scans' geometry, few patients and slices (enough for a split by patient).
PAPER_SIZE_COUNTS = {"n_subjects": 6, "n_slices": 12}
GEOMETRY_KEYS = ("image_size", "pixel_spacing_mm", "slice_thickness_mm")
CLINICAL_CSV = "NSCLC-Radiomics-Lung1.clinical-version3-Oct-2019.csv"
CLINICAL_COLUMNS = ["PatientID", "age", "clinical.T.Stage", "Clinical.N.Stage", "Clinical.M.Stage",
                    "Overall.Stage", "Histology", "gender", "Survival.time", "deadstatus.event"]


def _render_patient(rng: np.random.Generator, *, size: int, n_slices: int, pixel_mm: float,
                    slice_mm: float, noise_hu: float):
    """One thorax volume in HU (Z, Y, X) float32, the tumour mask, and tumour traits."""
    half = size * pixel_mm / 2
    coords = (np.arange(size, dtype=np.float32) + 0.5) * pixel_mm - half
    zc = (np.arange(n_slices, dtype=np.float32) - (n_slices - 1) / 2) * slice_mm
    z, y, x = np.meshgrid(zc, coords, coords, indexing="ij")  # y: anterior(-) -> posterior(+)
    zn = zc[:, None, None] / max(abs(zc).max(), 1.0)  # -1 inferior .. +1 superior
    body_rx, body_ry = rng.uniform(0.38, 0.46) * 2 * half, rng.uniform(0.27, 0.33) * 2 * half
    hu = np.full(z.shape, -1000.0, np.float32)
    body = (x / body_rx) ** 2 + (y / body_ry) ** 2 <= 1
    fat_depth = rng.uniform(6, 18)
    inner = (x / (body_rx - fat_depth)) ** 2 + (y / (body_ry - fat_depth)) ** 2 <= 1
    hu[body] = -100.0  # subcutaneous fat
    hu[inner] = 45.0   # muscle / mediastinum
    # lungs: two ellipsoids, shrinking towards the apex
    lung_rx = body_rx * rng.uniform(0.32, 0.38)
    lung_ry = body_ry * rng.uniform(0.62, 0.72) * (1 - 0.25 * np.clip(zn, 0, 1))
    lung_cx = body_rx * 0.47
    lungs = np.zeros(z.shape, bool)
    for side in (-1, 1):
        lungs |= ((x - side * lung_cx) / lung_rx) ** 2 + ((y - body_ry * 0.02) / lung_ry) ** 2 <= 1
    hu[lungs] = -860.0
    # heart: anterior left, larger inferiorly
    heart_r = body_ry * rng.uniform(0.32, 0.4) * (1.0 - 0.45 * (zn + 1) / 2)
    heart = ((x - body_rx * 0.1) / (heart_r * 1.15)) ** 2 + ((y + body_ry * 0.18) / heart_r) ** 2 <= 1
    hu[heart] = 40.0
    # aorta and spine (posterior midline), spinal canal
    aorta = (x + body_rx * 0.05) ** 2 + (y - body_ry * 0.35) ** 2 <= (0.07 * body_ry) ** 2
    hu[aorta] = 160.0
    spine_c = body_ry * 0.62
    spine_r = 0.14 * body_ry
    d_spine = np.sqrt(x ** 2 + (y - spine_c) ** 2)
    hu[d_spine <= spine_r] = 350.0
    hu[(d_spine <= spine_r) & (d_spine >= spine_r * 0.8)] = 700.0
    hu[x ** 2 + (y - spine_c - spine_r * 1.2) ** 2 <= (0.45 * spine_r) ** 2] = 20.0
    # trachea superiorly, two main bronchi at mid height
    trachea_r = rng.uniform(7, 10)
    trachea = (x ** 2 + (y - body_ry * 0.05) ** 2 <= trachea_r ** 2) & (zn > 0.1)
    hu[trachea] = -990.0
    axes = (zc, coords, coords)
    for side in (-1, 1):
        a, b = (0.1 * zc.max(), body_ry * 0.05, 0), (-0.3 * zc.max(), body_ry * 0.05, side * lung_cx * 0.8)
        box = _box(axes, np.minimum(a, b) - trachea_r * 0.6, np.maximum(a, b) + trachea_r * 0.6)
        hu[box][segment_distance((z[box], y[box], x[box]), a, b) <= trachea_r * 0.6] = -990.0
    # ribs: bony arcs in the body wall at a few heights
    rib_period = rng.uniform(22, 30)
    rib_level = np.abs(((z + rng.uniform(0, rib_period)) % rib_period) - rib_period / 2) < 4.5
    r_norm = np.sqrt((x / (body_rx - fat_depth)) ** 2 + (y / (body_ry - fat_depth)) ** 2)
    hu[rib_level & (r_norm > 0.9) & (r_norm < 0.97) & (y > -body_ry * 0.6)] = 600.0
    # lung vessels: random branching segments from the hila, brighter near the hilum
    vessel = np.zeros(z.shape, bool)
    for side in (-1, 1):
        hilum = np.array([0.0, body_ry * 0.05, side * lung_cx * 0.45], np.float32)
        for _ in range(9):
            end = hilum + np.array([rng.uniform(-1, 1) * zc.max(), rng.uniform(-0.6, 0.6) * lung_ry.mean(),
                                    side * rng.uniform(0.5, 1.2) * lung_rx], np.float32)
            radius = rng.uniform(1.2, 2.8)
            box = _box(axes, np.minimum(hilum, end) - radius, np.maximum(hilum, end) + radius)
            vessel[box] |= segment_distance((z[box], y[box], x[box]), hilum, end) <= radius
    hu[vessel & lungs] = 30.0
    # tumour
    side = rng.choice([-1, 1])
    diameter_mm = float(rng.uniform(12, 70))
    spiculation = float(rng.uniform(0, 1))
    centre = np.array([rng.uniform(-0.35, 0.35) * zc.max() if n_slices > 1 else 0.0,
                       rng.uniform(-0.4, 0.4) * lung_ry.mean(),
                       side * lung_cx * rng.uniform(0.5, 1.0)], np.float32)
    # the blob's radius is at most (1 + 2 lobulation + 18 spiculation) x its mean (see lobulated_blob)
    reach = diameter_mm / 2 * (1 + 2 * 0.3 + 18 * 0.35 * spiculation)
    box = _box(axes, centre - reach, centre + reach)
    tumour = np.zeros(z.shape, bool)
    tumour[box] = lobulated_blob((z[box], y[box], x[box]), centre, diameter_mm / 2, rng, lobulation=0.3,
                                 spiculation=0.35 * spiculation)
    tumour &= body
    hu[tumour] = rng.uniform(20, 50) + 15 * smooth_noise(rng, z.shape, 1.5)[tumour]
    # lung parenchyma texture and correlated scanner noise
    hu += np.where(lungs & ~vessel & ~tumour, 25 * smooth_noise(rng, z.shape, 2.0), 0)
    hu += noise_hu * (0.6 * rng.standard_normal(z.shape) + 0.8 * smooth_noise(rng, z.shape, 0.8))
    hu = ndimage.gaussian_filter(hu, (0, 0.5, 0.5))
    traits = {"diameter_mm": diameter_mm, "spiculation": spiculation,
              "centre_z_mm": float(centre[0]), "centre_y_mm": float(centre[1]), "centre_x_mm": float(centre[2])}
    return np.clip(hu, -1024, 3000).astype(np.float32), tumour, traits


def _box(axes, low_mm, high_mm) -> tuple[slice, ...]:
    """Index slices of the voxels whose centres lie within [low_mm, high_mm] on each axis (one voxel of
    margin). Shapes are computed inside it only: at 512 px the whole volume costs seconds per shape,
    and the values inside are the same."""
    box = []
    for centres, low, high in zip(axes, low_mm, high_mm):
        first = int(np.searchsorted(centres, low, side="left")) - 1
        last = int(np.searchsorted(centres, high, side="right")) + 1
        box.append(slice(max(first, 0), min(last, len(centres))))
    return tuple(box)


def _t_stage(diameter_mm: float) -> str:
    return "1" if diameter_mm < 30 else "2" if diameter_mm < 50 else "3" if diameter_mm < 70 else "4"


def paper_size(paper: dict) -> dict:
    """Options of a paper-size phantom from the study's resolved ``paper`` profile (a plain dict).

    The geometry is the real scans' (``paper["data"]["phantom"]``: NSCLC-Radiomics is 512 x 512
    slices of about 0.98 mm, 3 mm apart), so the loader crops and resizes exactly as on the real
    data (``data.crop_size`` of the stored matrix, to ``data.image_size``); counts are
    :data:`PAPER_SIZE_COUNTS`.
    """
    data = paper["data"]
    geometry = {key: data["phantom"][key] for key in GEOMETRY_KEYS if key in data["phantom"]}
    if "image_size" not in geometry:
        raise ValueError("chest_ct.paper_size: the paper profile has no data.phantom.image_size (the scans' matrix)")
    crop = data.get("crop_size")
    if crop and crop > geometry["image_size"]:
        raise ValueError(f"chest_ct.paper_size: data.crop_size {crop} exceeds the scans' matrix "
                         f"{geometry['image_size']} (data.phantom.image_size)")
    return {**PAPER_SIZE_COUNTS, **geometry}


def generate(folder: Path, *, n_subjects: int, image_size: int, n_slices: int, pixel_spacing_mm: float,
             slice_thickness_mm: float, noise_hu: float, seed: int) -> None:
    """Write the phantom into ``folder`` (the dataset root handed to :class:`NSCLCRadiomics`)."""
    folder = Path(folder)
    rng_master = np.random.default_rng(seed)
    clinical_rows, truth_rows = [], []
    for index in range(n_subjects):
        rng = np.random.default_rng(rng_master.integers(2 ** 63))
        patient_id = f"LUNG1-{index + 1:03d}"
        hu, tumour, traits = _render_patient(rng, size=image_size, n_slices=n_slices, pixel_mm=pixel_spacing_mm,
                                             slice_mm=slice_thickness_mm, noise_hu=noise_hu)
        # death risk rises with size and spiculation: learnable from the image
        logit = 0.09 * (traits["diameter_mm"] - 40) + 3.0 * (traits["spiculation"] - 0.5)
        p_death = float(1 / (1 + np.exp(-logit)))
        died = int(rng.random() < p_death)
        study_uid = deterministic_uid("study", seed, patient_id)
        series_uid = deterministic_uid("series", seed, patient_id)
        # real downloads use date-and-description folder names; the loader must not rely on them
        series_dir = folder / "NSCLC-Radiomics" / patient_id / f"01-01-2014-StudyID-{index % 7}" / f"{index % 3}.000000-NA-{index * 37 % 1000:03d}"
        stored = np.clip(np.round(hu + 1024), 0, 4095).astype(np.uint16)
        for k in range(n_slices):
            z_mm = (k - (n_slices - 1) / 2) * slice_thickness_mm
            write_slice(series_dir / f"1-{k + 1:03d}.dcm", stored[k], modality="CT", patient_id=patient_id,
                        patient_name=patient_id, series_uid=series_uid, study_uid=study_uid,
                        instance_number=n_slices - k,  # real series are often numbered head to feet
                        position_mm=(-image_size * pixel_spacing_mm / 2, -image_size * pixel_spacing_mm / 2, z_mm),
                        pixel_spacing_mm=(pixel_spacing_mm, pixel_spacing_mm),
                        slice_thickness_mm=slice_thickness_mm, rescale_slope=1.0, rescale_intercept=-1024.0,
                        bits_stored=12)
        write_nifti(folder / "truth" / "masks" / f"{patient_id}.nii.gz", tumour.astype(np.float32),
                    (slice_thickness_mm, pixel_spacing_mm, pixel_spacing_mm))
        histology = ["adenocarcinoma", "squamous cell carcinoma"][int(rng.random() < 0.5)]
        clinical_rows.append({
            "PatientID": patient_id, "age": round(float(rng.uniform(45, 85)), 2),
            "clinical.T.Stage": _t_stage(traits["diameter_mm"]), "Clinical.N.Stage": str(int(rng.integers(0, 4))),
            "Clinical.M.Stage": "0", "Overall.Stage": ["I", "II", "IIIa", "IIIb"][int(rng.integers(0, 4))],
            "Histology": histology, "gender": ["male", "female"][int(rng.random() < 0.35)],
            "Survival.time": int(rng.integers(60, 900) if died else rng.integers(900, 3000)),
            "deadstatus.event": died})
        truth_rows.append({"PatientID": patient_id, **{k: round(v, 3) for k, v in traits.items()},
                           "death_probability": round(p_death, 4), "deadstatus.event": died})
    _write_csv(folder / CLINICAL_CSV, CLINICAL_COLUMNS, clinical_rows)
    _write_csv(folder / "truth" / "tumours.csv", list(truth_rows[0]), truth_rows)


def _write_csv(path: Path, columns, rows) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, buffer.getvalue())
