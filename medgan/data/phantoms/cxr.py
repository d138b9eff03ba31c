"""Chest X-ray phantom in a ChestX-ray14-style layout, as 12-bit DICOM.

Each PA radiograph is built from attenuation maps: soft tissue of the torso, two lung fields,
heart and mediastinum, diaphragm domes, spine, posterior ribs, clavicles and branching lung
vessels. Findings are added with a lesion mask and a severity in [0, 1]:
trained (the thesis's 5): nodule, consolidation, interstitial opacity, pleural effusion,
pneumothorax; untrained: rib fracture, calcification, pneumoperitoneum, mediastinal widening,
subcutaneous emphysema.

Layout: ``images/<Image Index>.dcm`` (12-bit; some MONOCHROME1 with inverted storage; a
RescaleSlope/Intercept modality LUT), ``Data_Entry.csv`` (``Image Index, Finding Labels,
Follow-up #, Patient ID, Patient Age, Patient Gender, View Position``; findings joined by ``|``,
"No Finding" when normal). :func:`paper_size` gives a paper-size set (~2,000-px detector images).
Ground truth: ``truth/masks/<image stem>/<finding slug>.png``
(8-bit 0/255, written for present findings) and ``truth/findings.csv`` (image, finding, severity).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from scipy import ndimage

from medgan import atomic
from medgan.data.dicom import deterministic_uid, write_slice
from medgan.data.phantoms._shapes import grid2d, smooth_noise
from medgan.data.png_folders import write_png
from medgan.data.transforms import nearest_resize, resize

DEFAULTS = {"n_patients": 400, "images_per_patient": 1, "image_size": 256, "render_size": None,
            "normal_fraction": 0.45, "untrained_fraction": 0.2, "monochrome1_fraction": 0.3, "seed": 0}
SMOKE = {"n_patients": 16, "image_size": 64}
# A paper-size set (``paper_size``): detector images of ~2,000 px like the thesis's 12-bit DICOMs
# (43 cm at ~0.2 mm), never smaller than the model's input; the anatomy is drawn at 512 px and
# upsampled (drawing costs ~20 s an image at 2048 px, ~1 s at 512), detector noise at full size.
PAPER_DETECTOR_PX = 2048
PAPER_RENDER_PX = 512
PAPER_SIZE_COUNTS = {"n_patients": 24, "images_per_patient": 1}
TRAINED = ["Nodule", "Consolidation", "Interstitial Opacity", "Pleural Effusion", "Pneumothorax"]
UNTRAINED = ["Rib Fracture", "Calcification", "Pneumoperitoneum", "Mediastinal Widening", "Subcutaneous Emphysema"]
ALL_FINDINGS = TRAINED + UNTRAINED
CSV_COLUMNS = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender", "View Position"]


def slug(finding: str) -> str:
    return finding.lower().replace(" ", "_")


def _anatomy(rng, size):
    y, x = grid2d(size)  # y: -1 top (apex) .. +1 bottom
    a = {"y": y, "x": x}
    a["body_rx"] = rng.uniform(0.78, 0.9)
    a["lung_top"] = rng.uniform(-0.78, -0.68)
    a["dome"] = rng.uniform(0.35, 0.5)  # diaphragm height
    a["lung_rx"] = rng.uniform(0.3, 0.36)
    a["lung_cx"] = rng.uniform(0.36, 0.42)
    a["heart_r"] = rng.uniform(0.22, 0.3)
    a["med_w"] = rng.uniform(0.09, 0.12)
    a["rib_gap"] = rng.uniform(0.13, 0.16)
    return a


def _lung_masks(a):
    y, x = a["y"], a["x"]
    masks = []
    for side in (-1, 1):
        dome_y = a["dome"] - 0.12 * ((x - side * a["lung_cx"]) / a["lung_rx"]) ** 2 + (0.05 if side < 0 else 0)
        u = (x - side * a["lung_cx"]) / a["lung_rx"]
        top = a["lung_top"] + 0.35 * u ** 2
        masks.append((np.abs(u) <= 1) & (y >= top) & (y <= dome_y))
    return masks  # right lung (image left), left lung


def render(rng, size, findings):
    """Return (attenuation image float (H, W), masks {finding: bool (H, W)})."""
    a = _anatomy(rng, size)
    y, x = a["y"], a["x"]
    right, left = _lung_masks(a)
    lungs = right | left
    att = np.zeros((size, size), np.float32)
    # torso soft tissue: thicker centrally (a chord through an elliptical body)
    att += 1.0 * np.sqrt(np.clip(1 - (x / a["body_rx"]) ** 2, 0, 1)) * (y > -0.95)
    shoulders = (np.abs(x) < a["body_rx"] + 0.1) & (y < -0.6)
    att += 0.3 * shoulders * np.sqrt(np.clip(1 - ((np.abs(x) - 0.6) / 0.45) ** 2, 0, 1))
    att -= 0.55 * lungs * np.sqrt(np.clip(1 - ((np.abs(x) - a["lung_cx"]) / a["lung_rx"]) ** 2, 0, 1))
    # abdomen below diaphragm
    att += 0.25 * (y > a["dome"] + 0.05) * (np.abs(x) < a["body_rx"])
    mediastinum = (np.abs(x) < a["med_w"]) & (y > -0.9)
    att += 0.35 * mediastinum
    heart_level = ((x - 0.1) / (a["heart_r"] * 1.3)) ** 2 + ((y - (a["dome"] - 0.2)) / (a["heart_r"] * 0.95)) ** 2
    heart = heart_level <= 1
    att += 0.45 * np.sqrt(np.clip(1 - heart_level, 0, 1)) ** 0.5 * (y < a["dome"] + 0.05)
    spine = np.abs(x) < 0.06
    vertebra = spine * (0.5 + 0.2 * (np.cos((y + 1) * np.pi / 0.11) > -0.6))
    att += 0.35 * vertebra
    # posterior ribs: arcs descending laterally, every rib_gap
    ribs = np.zeros_like(att)
    rib_paths = []
    for k in range(10):
        y0 = a["lung_top"] + 0.02 + k * a["rib_gap"]
        for side in (-1, 1):
            u = side * x
            # posterior rib: leaves the spine, rises briefly, then sweeps down and out
            curve = y0 - 0.06 * np.clip(u - 0.06, 0, 0.25) / 0.25 + 0.9 * np.clip(u - 0.3, 0, None) ** 2
            half_width = 0.013 + 0.004 * k / 10
            distance = np.abs(y - curve)
            band = (distance < half_width) & (u > 0.07) & (u < a["lung_cx"] + a["lung_rx"] * 1.05)
            ribs = np.maximum(ribs, band * (1.0 - 0.5 * (distance / half_width) ** 2))
            rib_paths.append((y0, side))
    att += 0.25 * ribs
    for side in (-1, 1):  # clavicles
        u = side * x
        line = -0.72 + 0.12 * (u - 0.1) - 0.15 * (u - 0.35) ** 2
        att += 0.35 * ((np.abs(y - line) < 0.025) & (u > 0.06) & (u < 0.7))
    # vessels: branches from each hilum, thinning and fading outwards
    vessels = np.zeros_like(att)
    for side in (-1, 1):
        hilum = (a["dome"] - 0.45, side * 0.18)
        for _ in range(14):
            angle = rng.uniform(-np.pi * 0.85, np.pi * 0.85)
            length = rng.uniform(0.2, 0.45)
            end = (hilum[0] + length * np.cos(angle), hilum[1] + side * length * abs(np.sin(angle)))
            t = np.clip(((y - hilum[0]) * (end[0] - hilum[0]) + (x - hilum[1]) * (end[1] - hilum[1])) / length ** 2, 0, 1)
            d = np.hypot(y - (hilum[0] + t * (end[0] - hilum[0])), x - (hilum[1] + t * (end[1] - hilum[1])))
            vessels = np.maximum(vessels, (d < 0.012 * (1.3 - t)) * (1 - 0.7 * t))
    vessel_term = 0.12 * vessels * lungs
    masks = {}
    lesion = np.zeros_like(att)
    for finding, severity in findings.items():
        for _attempt in range(10):  # a random placement can miss (e.g. outside the lung): redraw
            mask, add = _finding(finding, severity, rng, a, lungs, right, left, ribs, size)
            if mask.any():
                break
        else:
            raise RuntimeError(f"phantom cxr: could not place {finding} with a non-empty mask")
        masks[finding] = mask
        if finding == "Pneumothorax":
            vessel_term = np.where(mask, 0, vessel_term)
        lesion += add
    att += vessel_term + lesion
    att += 0.04 * smooth_noise(rng, (size, size), size / 64)  # soft-tissue mottle
    return ndimage.gaussian_filter(att, size / 256 * 0.8), masks


def _finding(name, severity, rng, a, lungs, right, left, ribs, size):
    y, x = a["y"], a["x"]
    pixel = 2.0 / size  # small findings stay at least ~1.5 pixels wide at any image_size
    side_mask = right if rng.random() < 0.5 else left
    pts = np.argwhere(side_mask)
    cy, cx = pts[rng.integers(len(pts))] / size * 2 - 1 if len(pts) else (0.0, 0.0)
    if name == "Nodule":
        r = 0.04 + 0.06 * severity
        d = np.hypot(y - cy, x - cx) / r
        mask = d <= 1
        return mask, 0.35 * np.clip(1 - d ** 2, 0, 1) ** 0.5
    if name == "Consolidation":
        blob = smooth_noise(rng, (size, size), size / 14) + 2.5 * (1 - np.hypot(y - cy, x - cx) / (0.15 + 0.2 * severity))
        core = np.hypot(y - cy, x - cx) < 0.05 + 0.05 * severity  # never empty
        mask = ((blob > 1.0) | core) & side_mask
        return mask, 0.35 * ndimage.gaussian_filter(mask.astype(np.float32), size / 100)
    if name == "Interstitial Opacity":
        lower = y > (a["dome"] - 0.35 - 0.4 * severity)
        net = np.abs(smooth_noise(rng, (size, size), size / 120)) < 0.35
        mask = lungs & lower
        return mask, (0.08 + 0.1 * severity) * (net & mask)
    if name == "Pleural Effusion":
        level = a["dome"] - 0.05 - 0.45 * severity
        meniscus = level - 0.12 * ((np.abs(x) - a["lung_cx"] + a["lung_rx"]) / a["lung_rx"]).clip(0, 2)
        mask = side_mask & (y > meniscus)
        return mask, 0.45 * ndimage.gaussian_filter(mask.astype(np.float32), size / 120)
    if name == "Pneumothorax":
        side = -1 if side_mask is right else 1
        u = side * x
        edge = a["lung_cx"] + a["lung_rx"] * (1 - 0.25 - 0.5 * severity) + 0.1 * (y - a["lung_top"])
        mask = side_mask & (u > edge) & (y < a["dome"] - 0.2)
        line = side_mask & (np.abs(u - edge) < 0.006)
        return mask, -0.12 * mask + 0.08 * line
    if name == "Rib Fracture":
        r = np.argwhere(ribs > 0.5)
        cy, cx = r[rng.integers(len(r))] / size * 2 - 1
        d = np.hypot(y - cy, x - cx)
        radius = max(0.035, 1.5 * pixel)
        gap = (np.abs(x - cx) < max(0.006 + 0.006 * severity, 0.5 * pixel)) & (ribs > 0.2)
        return d < radius, -0.35 * gap * ribs + 0.1 * severity * ((d < radius) & ~gap)
    if name == "Calcification":
        d = np.hypot(y - cy, x - cx) / max(0.01 + 0.012 * severity, 0.8 * pixel)
        return d <= 1.5, 0.9 * (d <= 1)
    if name == "Pneumoperitoneum":
        side = -1 if rng.random() < 0.6 else 1
        dome_y = a["dome"] + 0.05 - 0.12 * ((x - side * a["lung_cx"]) / a["lung_rx"]) ** 2
        mask = (y > dome_y + 0.01) & (y < dome_y + 0.03 + 0.05 * severity) & (np.abs(x - side * a["lung_cx"]) < a["lung_rx"] * 0.9)
        return mask, -0.35 * mask
    if name == "Mediastinal Widening":
        extra = 0.04 + 0.08 * severity
        mask = (np.abs(x) < a["med_w"] + extra) & (np.abs(x) >= a["med_w"] - 0.01) & (y > -0.75) & (y < a["dome"] - 0.3)
        return mask, 0.35 * mask
    if name == "Subcutaneous Emphysema":
        side = -1 if rng.random() < 0.5 else 1
        wall = (side * x > a["body_rx"] - 0.2) & (side * x < a["body_rx"]) & (y > -0.5 - 0.3 * severity) & (y < 0.4)
        streaks = smooth_noise(rng, (size, size), size / 90) > 1.0
        mask = wall & streaks
        return ndimage.binary_dilation(mask, iterations=1), -0.3 * mask
    raise ValueError(f"unknown finding {name!r}")


def _draw_findings(rng, normal_fraction, untrained_fraction):
    if rng.random() < normal_fraction:
        return {}
    findings = {}
    if rng.random() < untrained_fraction:
        for name in rng.choice(UNTRAINED, size=1 + int(rng.random() < 0.2), replace=False):
            findings[str(name)] = float(rng.uniform(0.3, 1.0))
        if rng.random() < 0.5:
            return findings
    for name in rng.choice(TRAINED, size=1 + int(rng.random() < 0.3), replace=False):
        findings[str(name)] = float(rng.uniform(0.25, 1.0))
    return findings


def paper_size(paper: dict) -> dict:
    """Options of a paper-size set from study 5's resolved ``paper`` profile: 12-bit DICOM
    radiographs of the profile's ``data.phantom.image_size`` (else :data:`PAPER_DETECTOR_PX`) px,
    at least its ``data.image_size`` (the loader resizes them to it), anatomy drawn at
    ``data.phantom.render_size`` (else :data:`PAPER_RENDER_PX`), a few patients."""
    data = paper["data"]
    phantom = data.get("phantom") or {}
    detector = max(int(phantom.get("image_size") or PAPER_DETECTOR_PX), int(data["image_size"]))
    render = min(detector, int(phantom.get("render_size") or PAPER_RENDER_PX))
    return {"image_size": detector, "render_size": render, **PAPER_SIZE_COUNTS}


def _upsample(array: np.ndarray, size: int, *, nearest: bool = False) -> np.ndarray:
    if array.shape[-1] == size:
        return array
    return (nearest_resize(array.astype(np.float32), size) > 0.5) if nearest else resize(array, size)


def generate(folder: Path, *, n_patients: int, images_per_patient: int, image_size: int, render_size: int | None,
             normal_fraction: float, untrained_fraction: float, monochrome1_fraction: float, seed: int) -> None:
    """Write the phantom (root for :class:`ChestXray`).

    ``image_size``: the detector's side in px (files, masks); ``render_size``: the side the anatomy
    and findings are drawn at, then upsampled (None: ``image_size``; smaller is much faster)."""
    folder = Path(folder)
    render_size = int(render_size or image_size)
    if render_size > image_size:
        raise ValueError(f"phantom cxr: render_size {render_size} exceeds image_size {image_size}")
    master = np.random.default_rng(seed)
    rows, truth_rows = [], []
    for patient in range(n_patients):
        patient_id = 10000 + patient
        for follow_up in range(images_per_patient):
            rng = np.random.default_rng(master.integers(2 ** 63))
            findings = _draw_findings(rng, normal_fraction, untrained_fraction)
            attenuation, masks = render(rng, render_size, findings)
            attenuation = _upsample(attenuation, image_size)
            masks = {k: _upsample(m, image_size, nearest=True) for k, m in masks.items()}
            # detector: exposure ~ exp(-mu*t); displayed value rises with attenuation; 12 bits
            exposure = np.exp(-1.6 * attenuation)
            signal = 4095 * (1 - exposure)
            signal = signal + rng.normal(0, 12, signal.shape) * np.sqrt(np.clip(exposure, 0.05, 1))
            intercept = float(rng.choice([0.0, -512.0]))
            value = np.clip(np.round(signal), 0, 4095)
            stem = f"{patient_id:08d}_{follow_up:03d}"
            mono1 = rng.random() < monochrome1_fraction
            stored = (4095 - value if mono1 else value) - (0 if intercept == 0 else 0)
            write_slice(folder / "images" / f"{stem}.dcm", stored.astype(np.uint16), modality="DX",
                        patient_id=str(patient_id), patient_name=f"Phantom^{patient_id}",
                        series_uid=deterministic_uid("cxr-series", seed, stem), study_uid=deterministic_uid("cxr", seed, stem),
                        pixel_spacing_mm=(0.14 * 2000 / image_size,) * 2, rescale_slope=1.0, rescale_intercept=intercept,
                        bits_stored=12, photometric="MONOCHROME1" if mono1 else "MONOCHROME2",
                        extra={"ViewPosition": "PA"})
            for finding, mask in masks.items():
                write_png(folder / "truth" / "masks" / stem / f"{slug(finding)}.png", (mask * 255).astype(np.uint8))
                truth_rows.append({"Image Index": f"{stem}.dcm", "finding": finding,
                                   "trained": int(finding in TRAINED), "severity": round(findings[finding], 4),
                                   "area_fraction": round(float(mask.mean()), 5)})
            rows.append({"Image Index": f"{stem}.dcm", "Finding Labels": "|".join(findings) or "No Finding",
                         "Follow-up #": follow_up, "Patient ID": patient_id, "Patient Age": int(rng.integers(25, 85)),
                         "Patient Gender": "M" if rng.random() < 0.5 else "F", "View Position": "PA"})
    _write_csv(folder / "Data_Entry.csv", CSV_COLUMNS, rows)
    _write_csv(folder / "truth" / "findings.csv", ["Image Index", "finding", "trained", "severity", "area_fraction"], truth_rows)


def _write_csv(path, columns, rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, buffer.getvalue())
