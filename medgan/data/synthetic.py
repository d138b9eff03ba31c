"""Synthetic datasets on disk: an exported generator's images, or a folder translated by one.

Both stream (one batch in memory at a time), write every file atomically with a progress bar,
and resume: files already written are skipped, and because image i of a seed never depends on
the batch size or on the images before it, a resumed set equals one written in a single pass.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from medgan import atomic
from medgan.data.image_files import (SUFFIX, Intensity, channel_of, list_image_files, output_name, read_image_file,
                                     synthetic_uids, write_image_file)
from medgan.data.nifti import load_nifti, write_nifti
from medgan.models.portable import GeneratorModel

CHESTXRAY14_COLUMNS = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age",
                       "Patient Gender", "View Position"]
LABELS_CSV = "Data_Entry.csv"


def model_digest(model: GeneratorModel) -> str:
    return hashlib.sha256(json.dumps(model.spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _description(model: GeneratorModel) -> str:
    return (f"SYNTHETIC images, not a patient: medgan {model.spec.get('study')}:{model.spec.get('model')} "
            f"model {model_digest(model)}")


def generate_dataset(model: GeneratorModel, out: str | os.PathLike, *, n: int, seed: int = 0, fmt: str = "png",
                     batch_size: int = 64, label: str | None = None, strength: float | None = None,
                     progress: bool = True) -> dict[str, Any]:
    """Write ``n`` images of an unconditional model to ``out`` (``synthetic-000000.png`` ...).

    label, strength: a model with latent axes (study 5's chest PGGAN) moves every latent
        ``strength`` along ``label``'s axis (:meth:`GeneratorModel.latents`; default strength: the
        model's ``default_strength``). A label without an axis is an error naming those there are.
        A model without axes takes only the label it was trained on (``model.json["label"]``).
    Chest X-ray models (layout ``chestxray14``) also get ``Data_Entry.csv`` in the ChestX-ray14
    layout, with ``label`` (in its ChestX-ray14 spelling) or the model's own training label as every
    image's Finding Labels. Returns counts: written, skipped (already there).
    """
    if fmt not in SUFFIX:
        raise ValueError(f"format must be one of {sorted(SUFFIX)}, not {fmt!r}")
    if strength is not None and label is None:
        raise ValueError("--strength moves latents along a label's axis: give --label as well")
    trained_on = model.spec.get("label")
    # the label a model was trained on needs no axis; any other (or a strength) moves along one
    steer = label is not None and (label != trained_on or strength is not None)
    if steer:
        model.axis(label)  # an unknown label fails here, naming the labels with an axis
        finding = (model.spec["latent_axes"].get("finding_labels") or {}).get(label, label)  # the CSV's spelling
    else:
        finding = label or trained_on
    chest = model.spec.get("layout") == "chestxray14"
    if chest and fmt == "png" and not finding:
        labels = ", ".join(repr(k) for k in model.labels) or "none"
        raise ValueError(f"this chest X-ray model was trained on every finding: give --label (labels with a latent "
                         f"axis: {labels}) for the images and the labels CSV, or choose --format dicom/nifti")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    image_dir = out / "images" if chest and fmt == "png" else out
    intensity = Intensity.from_spec(model.spec)
    study_uid, series_uid = synthetic_uids(model_digest(model), seed)
    done = {i for i in range(n) if (image_dir / output_name(i, fmt)).exists()
            or (image_dir / output_name(i, fmt).replace(".png", "_w1.png")).exists()}
    written = 0
    bar = tqdm(total=n, initial=len(done), desc="generate", unit="image", disable=not progress)
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        if all(i in done for i in range(start, start + count)):
            continue
        _, images = next(model.iter_generate(start + count, seed=seed, batch_size=count, start=start,
                                             label=label if steer else None, strength=strength if steer else None))
        for offset, image in enumerate(images.numpy()):
            index = start + offset
            if index in done:
                continue
            write_image_file(image_dir / output_name(index, fmt), image, fmt, intensity, index=index,
                             description=_description(model), series_uid=series_uid, study_uid=study_uid)
            written += 1
            bar.update(1)
    bar.close()
    if chest and fmt == "png":
        _write_labels_csv(out / LABELS_CSV, n, fmt, finding)
    return {"written": written, "skipped": len(done), "folder": str(out)}


def _write_labels_csv(path: Path, n: int, fmt: str, label: str) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CHESTXRAY14_COLUMNS)
    for i in range(n):  # one synthetic "patient" per image: no two images share a subject
        writer.writerow([output_name(i, fmt), label, 0, f"synthetic-{i:06d}", "", "", "PA"])
    atomic.write_text(path, buffer.getvalue())


def translate_folder(model: GeneratorModel, source: str | os.PathLike, out: str | os.PathLike, *,
                     fmt: str | None = None, direction: str | None = None, domain: int | str | None = None,
                     seed: int = 0, batch_size: int = 16, progress: bool = True) -> dict[str, Any]:
    """Translate every image file under ``source`` into ``out``, keeping relative names and format."""
    source, out = Path(source), Path(out)
    if out.resolve().is_relative_to(source.resolve()):
        raise ValueError(f"{out}: the output folder is inside the input folder; choose another")
    fmt, files = list_image_files(source, fmt)
    intensity = Intensity.from_spec(model.spec)
    study_uid, series_uid = synthetic_uids(model_digest(model), seed)
    written = skipped = 0
    for number, path in enumerate(tqdm(files, desc="translate", unit="file", disable=not progress)):
        target = out / path.relative_to(source)
        if fmt == "png" and channel_of(path):  # per-channel PNGs: written again as <stem>_w1.png ...
            target = target.with_name(path.name[: -len("_w1.png")] + ".png")
        if target.exists() or target.with_name(target.name.replace(".png", "_w1.png")).exists():
            skipped += 1
            continue
        images = read_image_file(path, fmt, intensity)
        stack = images if fmt == "nifti" else images[None]  # NIfTI: every slice of the volume
        outputs = [model.translate(torch.from_numpy(np.ascontiguousarray(stack[s:s + batch_size])),
                                   direction=direction, domain=domain, seed=seed, start=number * 4096 + s)
                   for s in range(0, len(stack), batch_size)]
        result = torch.cat(outputs).numpy()
        if fmt == "nifti":
            _write_volume(target, result, intensity, path)
        else:
            write_image_file(target, result[0], fmt, intensity, index=number, description=_description(model),
                             series_uid=series_uid, study_uid=study_uid)
        written += 1
    return {"written": written, "skipped": skipped, "folder": str(out), "format": fmt}


def _write_volume(target: Path, slices: np.ndarray, intensity: Intensity, source: Path) -> None:
    """A translated volume with its source's voxel spacing (the affine's origin is not kept)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    write_nifti(target, intensity.to_physical(slices[:, 0]), load_nifti(source).spacing_mm)
