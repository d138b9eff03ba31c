"""Early/delayed FDG PET phantom in the ``<root>/<patient>/{early,delayed}/`` layout.

Per patient: a body (brain, heart with blood pool, lungs, liver, kidneys, bladder, muscle) and
1-3 tumours. Each tissue follows a simple FDG time-activity model in SUV: tumours keep rising,
blood pool and background clear, the bladder fills, the brain rises slightly. Two frames are
simulated, early (start 7-9 min, ends by ~21 min) and delayed (start 42-46 min, ends by ~63 min):
true SUV -> activity concentration (Bq/ml, decay-corrected to the frame start) -> PSF blur ->
Poisson counts for the frame's duration with physical decay -> reconstructed Bq/ml. Written as a
DICOM PT series per frame (uint16 with a per-slice RescaleSlope, Units BQML, the tags SUV needs)
or, with ``file_format="nifti"``, ``PET.nii.gz`` + ``PET.json`` sidecar.

Ground truth: ``truth/<patient>/tumour_mask.nii.gz``, ``truth/<patient>/{early,delayed}_true_suv.nii.gz``
(noise-free SUV), ``truth/tumours.csv``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from scipy import ndimage

from medgan import atomic
from medgan.data.dicom import deterministic_uid, write_slice
from medgan.data.nifti import write_nifti
from medgan.data.phantoms._shapes import lobulated_blob, smooth_noise

DEFAULTS = {"n_subjects": 18, "image_size": 64, "n_slices": 48, "fov_mm": 684.2,
            "slice_thickness_mm": 20.0, "file_format": "dicom", "count_scale": 0.02, "seed": 0}
SMOKE = {"n_subjects": 4, "image_size": 32, "n_slices": 12, "slice_thickness_mm": 80.0}
# The counts of a paper-size set (``paper_size``): a few patients, a short stack of the paper's slices.
PAPER_SIZE_COUNTS = {"n_subjects": 5, "n_slices": 24}
F18_HALF_LIFE_S = 6586.2


def tissue_suv(rates: dict, minutes: float) -> dict[str, float]:
    """SUV of each tissue at ``minutes`` after injection (per-patient ``rates``)."""
    t = minutes
    return {
        "muscle": 0.55 + 0.9 * np.exp(-t / 12.0),
        "blood": rates["blood_floor"] + 4.0 * np.exp(-t / 9.0),
        "lung": 0.35 + 0.6 * np.exp(-t / 12.0),
        "liver": rates["liver"] * (1.0 + 0.35 * np.exp(-t / 25.0)),
        "kidney": 2.5 + 4.5 * np.exp(-t / 20.0),
        "brain": rates["brain"] * (1 - np.exp(-t / 14.0)),
        "myocardium": rates["myocardium"] * (1 - np.exp(-t / 25.0)),
        "bladder": rates["bladder"] * t / 60.0,
        "tumour": rates["tumour_ki"] * t / 10.0 + rates["tumour_free"] * np.exp(-t / 15.0),
    }


def _label_volume(rng, *, size: int, n_slices: int, pixel_mm: float, slice_mm: float):
    """Integer tissue map (Z, Y, X), tumour mask, and tumour list."""
    names = ["air", "muscle", "blood", "lung", "liver", "kidney", "brain", "myocardium", "bladder"]
    code = {n: i for i, n in enumerate(names)}
    coords = (np.arange(size, dtype=np.float32) + 0.5) * pixel_mm - size * pixel_mm / 2
    zc = (np.arange(n_slices, dtype=np.float32) + 0.5) * slice_mm
    length = n_slices * slice_mm
    z, y, x = np.meshgrid(zc, coords, coords, indexing="ij")
    f = z / length  # 0 pelvis -> 1 vertex
    labels = np.zeros(z.shape, np.uint8)
    rx, ry = rng.uniform(150, 185), rng.uniform(100, 125)
    torso = ((x / rx) ** 2 + (y / ry) ** 2 <= 1) & (f < 0.76)
    neck = ((x / 55) ** 2 + (y / 55) ** 2 <= 1) & (f >= 0.76) & (f < 0.83)
    head = (x / 80) ** 2 + (y / 95) ** 2 + ((f - 0.915) / 0.085 * 1.0) ** 2 <= 1
    labels[torso | neck | head] = code["muscle"]
    brain = (x / 68) ** 2 + (y / 82) ** 2 + ((f - 0.915) / 0.07) ** 2 <= 1
    labels[brain] = code["brain"]
    for side in (-1, 1):
        lung = ((x - side * 0.5 * rx) / (0.33 * rx)) ** 2 + (y / (0.7 * ry)) ** 2 + ((f - 0.64) / 0.11) ** 2 <= 1
        labels[lung] = code["lung"]
        kidney = ((x - side * 0.45 * rx) / 32) ** 2 + ((y - 0.55 * ry) / 22) ** 2 + ((f - 0.37) / 0.05) ** 2 <= 1
        labels[kidney] = code["kidney"]
    heart_c = (0.1 * rx, -0.25 * ry, 0.6)
    heart_r = ((x - heart_c[0]) / 55) ** 2 + ((y - heart_c[1]) / 48) ** 2 + ((f - heart_c[2]) / 0.05) ** 2
    labels[heart_r <= 1] = code["myocardium"]
    labels[heart_r <= 0.45] = code["blood"]
    liver = ((x + 0.35 * rx) / (0.5 * rx)) ** 2 + ((y + 0.05 * ry) / (0.7 * ry)) ** 2 + ((f - 0.49) / 0.07) ** 2 <= 1
    labels[liver & (labels == code["muscle"])] = code["liver"]
    bladder_r = rng.uniform(35, 55)
    bladder = (x / bladder_r) ** 2 + ((y + 0.3 * ry) / (0.8 * bladder_r)) ** 2 + ((f - 0.07) / 0.05) ** 2 <= 1
    labels[bladder] = code["bladder"]
    # tumours: lung, liver or soft tissue
    tumour_mask = np.zeros(z.shape, bool)
    tumours = []
    candidates = np.argwhere(np.isin(labels, [code["lung"], code["liver"], code["muscle"]]) & (f < 0.76) & (f > 0.15))
    for _ in range(int(rng.integers(1, 4))):
        zi, yi, xi = candidates[rng.integers(len(candidates))]
        radius = float(rng.uniform(15, 35))
        blob = lobulated_blob((z, y, x), (zc[zi], coords[yi], coords[xi]), radius, rng, lobulation=0.2)
        tumour_mask |= blob & (labels > 0)
        tumours.append({"z_mm": float(zc[zi]), "y_mm": float(coords[yi]), "x_mm": float(coords[xi]), "radius_mm": radius})
    return labels, names, tumour_mask, tumours


def _suv_volume(labels, names, tumour_mask, suv: dict[str, float], rng) -> np.ndarray:
    table = np.array([0.0] + [suv[n] for n in names[1:]], np.float32)
    volume = table[labels]
    volume[tumour_mask] = suv["tumour"]
    return volume


def _frame(true_suv, *, dose_bq, weight_kg, start_min, duration_min, count_scale, voxel_ml, psf_sigma_vox, rng):
    """Noisy Bq/ml image (decay-corrected to the frame start) from a true SUV volume."""
    concentration = true_suv * dose_bq * 2 ** (-start_min * 60 / F18_HALF_LIFE_S) / (weight_kg * 1000)
    blurred = ndimage.gaussian_filter(concentration, psf_sigma_vox)
    # counts fall with decay during the frame; longer frames gain counts
    decay_in_frame = 2 ** (-(duration_min * 30) / F18_HALF_LIFE_S)
    expected = blurred * voxel_ml * duration_min * 60 * decay_in_frame * 1e-3 * count_scale
    counts = rng.poisson(np.maximum(expected, 0))
    recon = counts / (voxel_ml * duration_min * 60 * decay_in_frame * 1e-3 * count_scale)
    return ndimage.gaussian_filter(recon.astype(np.float32), (0.5, 0.7, 0.7))


def _hhmmss(seconds: float) -> str:
    seconds = seconds % 86400
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}{int(m):02d}{s:09.6f}"


def paper_size(paper: dict) -> dict:
    """Options of a paper-size set from study 4's resolved ``paper`` profile: slices of its
    ``data.image_size`` (128 x 128) over ``data.phantom.fov_mm`` (the paper's 5.3456 mm pixels) and
    ``data.phantom.slice_thickness_mm`` (5.0 mm), DICOM as the scanner writes; few patients and slices."""
    data = paper["data"]
    geometry = data.get("phantom") or {}
    return {"image_size": int(data["image_size"]), "fov_mm": float(geometry.get("fov_mm", DEFAULTS["fov_mm"])),
            "slice_thickness_mm": float(geometry.get("slice_thickness_mm", DEFAULTS["slice_thickness_mm"])),
            "file_format": str(geometry.get("file_format", DEFAULTS["file_format"])), **PAPER_SIZE_COUNTS}


def generate(folder: Path, *, n_subjects: int, image_size: int, n_slices: int, fov_mm: float,
             slice_thickness_mm: float, file_format: str, count_scale: float, seed: int) -> None:
    """Write the phantom (root for :class:`PETEarlyDelayed`)."""
    if file_format not in ("dicom", "nifti"):
        raise ValueError(f"file_format must be 'dicom' or 'nifti', got {file_format!r}")
    folder = Path(folder)
    pixel_mm = fov_mm / image_size
    voxel_ml = pixel_mm * pixel_mm * slice_thickness_mm / 1000.0
    master = np.random.default_rng(seed)
    truth_rows = []
    for index in range(n_subjects):
        rng = np.random.default_rng(master.integers(2 ** 63))
        patient = f"PET{index + 1:03d}"
        labels, names, tumour_mask, tumours = _label_volume(rng, size=image_size, n_slices=n_slices,
                                                            pixel_mm=pixel_mm, slice_mm=slice_thickness_mm)
        rates = {"blood_floor": rng.uniform(1.2, 1.8), "liver": rng.uniform(1.8, 2.6), "brain": rng.uniform(6, 10),
                 "myocardium": rng.uniform(1, 9), "bladder": rng.uniform(10, 30),
                 "tumour_ki": rng.uniform(1.0, 2.5), "tumour_free": rng.uniform(1.0, 2.5)}
        weight_kg = float(rng.uniform(50, 95))
        dose_bq = float(weight_kg * rng.uniform(3.7e6, 5.5e6))  # ~0.1-0.15 mCi/kg
        injection_s = float(rng.uniform(8, 12) * 3600)  # clock time of injection
        frames = {"early": (rng.uniform(7, 9), 12.0), "delayed": (rng.uniform(42, 46), 17.0)}
        texture = np.exp(0.12 * smooth_noise(rng, labels.shape, 1.2))  # heterogeneous uptake
        study_uid = deterministic_uid("pet-study", seed, patient)
        for phase, (start_min, duration_min) in frames.items():
            true_suv = _suv_volume(labels, names, tumour_mask, tissue_suv(rates, start_min + duration_min / 2), rng) * texture
            bq_ml = _frame(true_suv, dose_bq=dose_bq, weight_kg=weight_kg, start_min=start_min,
                           duration_min=duration_min, count_scale=count_scale, voxel_ml=voxel_ml,
                           psf_sigma_vox=(6.5 / 2.355 / slice_thickness_mm, 6.5 / 2.355 / pixel_mm, 6.5 / 2.355 / pixel_mm),
                           rng=rng)
            write_nifti(folder / "truth" / patient / f"{phase}_true_suv.nii.gz", true_suv,
                        (slice_thickness_mm, pixel_mm, pixel_mm))
            series_dir = folder / patient / phase
            scan_s = injection_s + start_min * 60
            if file_format == "nifti":
                write_nifti(series_dir / "PET.nii.gz", bq_ml, (slice_thickness_mm, pixel_mm, pixel_mm))
                atomic.write_text(series_dir / "PET.json", json.dumps({
                    "Units": "Bq/mL", "InjectedRadioactivity": dose_bq / 1e6, "InjectedRadioactivityUnits": "MBq",
                    "BodyWeight": weight_kg, "InjectionStart": 0.0, "ScanStart": start_min * 60,
                    "RadionuclideHalfLife": F18_HALF_LIFE_S, "DecayCorrectionTime": start_min * 60}, indent=1))
                continue
            series_uid = deterministic_uid("pet-series", seed, patient, phase)
            info = Dataset()
            info.Radiopharmaceutical = "Fluorodeoxyglucose"
            info.RadionuclideTotalDose = f"{dose_bq:.1f}"
            info.RadionuclideHalfLife = f"{F18_HALF_LIFE_S}"
            info.RadiopharmaceuticalStartTime = _hhmmss(injection_s)
            extra = {"Units": "BQML", "DecayCorrection": "START", "PatientWeight": f"{weight_kg:.2f}",
                     "SeriesDate": "20200101", "SeriesTime": _hhmmss(scan_s), "AcquisitionTime": _hhmmss(scan_s),
                     "RadiopharmaceuticalInformationSequence": Sequence([info]), "SeriesDescription": phase}
            for k in range(n_slices):
                slope = max(float(bq_ml[k].max()) / 32000.0, 1e-3)  # per-slice scaling, as scanners do
                stored = np.clip(np.round(bq_ml[k] / slope), 0, 65535).astype(np.uint16)
                write_slice(series_dir / f"{k + 1:04d}.dcm", stored, modality="PT", patient_id=patient,
                            patient_name=patient, series_uid=series_uid, study_uid=study_uid, instance_number=k + 1,
                            position_mm=(-image_size * pixel_mm / 2, -image_size * pixel_mm / 2, (k + 0.5) * slice_thickness_mm),
                            pixel_spacing_mm=(pixel_mm, pixel_mm), slice_thickness_mm=slice_thickness_mm,
                            rescale_slope=slope, rescale_intercept=0.0, extra=extra)
        write_nifti(folder / "truth" / patient / "tumour_mask.nii.gz", tumour_mask.astype(np.float32),
                    (slice_thickness_mm, pixel_mm, pixel_mm))
        for t in tumours:
            truth_rows.append({"patient_folder": patient, **{k: round(v, 2) for k, v in t.items()},
                               "suv_early": round(tissue_suv(rates, 15)["tumour"], 3),
                               "suv_delayed": round(tissue_suv(rates, 52)["tumour"], 3)})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(truth_rows[0]))
    writer.writeheader()
    writer.writerows(truth_rows)
    atomic.write_text(folder / "truth" / "tumours.csv", buffer.getvalue())
