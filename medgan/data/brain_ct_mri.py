"""Brain CT/MRI PNG loader in the Kaggle layout ``Dataset/images/{trainA,trainB,testA,testB}``.

Unpaired: domain "A" and "B" are read separately (A = CT, B = MRI by default; swap with
``a_modality="mri"``). Each image: grayscale 8-bit (palette PNGs decoded through the palette;
transparent or 16-bit ones refused, see :func:`medgan.data.png_folders.read_png`) -> centre crop + pad to a square
(``crop_pad_size`` px, default the larger side) -> resize to ``image_size`` -> /255 to [-1, 1].
Phantom data also has ``truth/testA_in_B`` and ``truth/testB_in_A`` (the true counterpart of
each test image); ``with_truth=True`` returns it as ``target``.

Building a dataset lists the folder (file names give the subjects); the pixels are decoded once per
PNG into the dataset's item store (:mod:`medgan.data.item_store`, in the work directory) and read
from there per item, so memory does not grow with the number of images.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from medgan.data.base import BadInputLog, DataError, ItemListDataset, reads_data_root, subject_key
from medgan.data.item_store import build_store
from medgan.data.png_folders import list_images, read_png
from medgan.data.transforms import center_crop_or_pad, resize

# "subj007_s03.png" -> subject "subj007"; files without a slice suffix are their own subject
DEFAULT_SUBJECT_PATTERN = r"^(?P<subject>.+?)(?:_s\d+)?$"


def _find_dataset_dir(root: Path) -> Path:
    for candidate in (root / "Dataset" / "images", root / "images", root):
        if all((candidate / part).is_dir() for part in ("trainA", "trainB")) or (candidate / "testA").is_dir():
            return candidate
    raise DataError(f"{root}: no Dataset/images/{{trainA,trainB,testA,testB}} folders found")


@dataclass(frozen=True)
class PNGEntry:
    """One PNG to decode (picklable, for the store's worker processes), with its finished row fields."""

    path: str
    truth: str | None          # the true counterpart's PNG (phantom test images), or None
    image_size: int
    crop_pad_size: int | None
    subject: str               # pseudonymous key, made while indexing (the salt stays in this process)
    label: int                 # 0 = CT, 1 = MRI
    modality: str
    domain: str
    part: str
    file_index: int


def _read_8bit(path: Path) -> np.ndarray:
    pixels = read_png(path)
    if pixels.dtype != np.uint8:
        raise DataError(f"{path}: expected 8-bit grayscale, got {pixels.dtype}")
    return pixels


def prepare(pixels: np.ndarray, image_size: int, crop_pad_size: int | None) -> np.ndarray:
    """uint8 (H, W) -> float32 (image_size, image_size) in [-1, 1]: square crop/pad, resize, /127.5 - 1."""
    square = crop_pad_size or max(pixels.shape)
    image = center_crop_or_pad(pixels.astype(np.float32), square, fill=0.0)
    image = resize(image, image_size)
    return image / 127.5 - 1.0


def decode_png(entry: PNGEntry) -> list[dict]:
    """One PNG (and its truth) as a finished item; a bad file raises DataError naming it."""
    image = prepare(_read_8bit(Path(entry.path)), entry.image_size, entry.crop_pad_size)
    record = {"image": image[None].astype(np.float32), "label": entry.label, "subject": entry.subject,
              "meta": {"modality": entry.modality, "domain": entry.domain, "part": entry.part,
                       "file_index": entry.file_index}}
    if entry.truth is not None:
        truth = Path(entry.truth)
        if not truth.is_file():
            raise DataError(f"{truth}: truth image for {Path(entry.path).name} missing")
        record["target"] = prepare(_read_8bit(truth), entry.image_size, entry.crop_pad_size)[None].astype(np.float32)
    return [record]


decode_png.version = 1  # bump when the decoded items change


class BrainCTMRI(ItemListDataset):
    """One domain of the unpaired brain CT/MRI set.

    Args:
        root: folder holding ``Dataset/images`` (or the ``images`` folder itself).
        domain: "A" or "B". part: "train" or "test".
        image_size: output side in px. crop_pad_size: square size for centre crop/pad before
            resizing (None = the image's larger side, i.e. pad to square without cropping).
        a_modality: modality stored in the A folders ("ct" or "mri"); B is the other one.
        with_truth: add ``target`` = the true counterpart (phantoms: ``truth/test{A}_in_{B}``).
        subject_pattern: regex with a ``subject`` group applied to the file stem.
        skip_bad: skip (log, count in ``.bad_input``) unreadable images instead of raising.
        num_workers: processes decoding the PNGs when the item store is built (0: this process).
        progress: progress bars while indexing and decoding.

    Items: image (1, S, S) in [-1, 1] (8-bit /255 scaled); label 0 = CT, 1 = MRI; subject key;
    meta {modality, domain, part, file_index}.
    """

    @reads_data_root()  # flat image folders, no patient folders
    def __init__(self, root: str | os.PathLike, *, domain: str = "A", part: str = "train",
                 image_size: int = 64, crop_pad_size: int | None = None, a_modality: str = "ct",
                 with_truth: bool = False, subject_pattern: str = DEFAULT_SUBJECT_PATTERN,
                 skip_bad: bool = False, salt: str | None = None, num_workers: int = 0, progress: bool = True):
        if domain not in ("A", "B") or part not in ("train", "test"):
            raise ValueError(f"domain must be 'A'/'B' and part 'train'/'test', got {domain!r}, {part!r}")
        if a_modality not in ("ct", "mri"):
            raise ValueError(f"a_modality must be 'ct' or 'mri', got {a_modality!r}")
        root = Path(root)
        self.bad_input = BadInputLog(skip_bad=skip_bad, name="BrainCTMRI")
        folder = _find_dataset_dir(root) / f"{part}{domain}"
        modality = a_modality if domain == "A" else ("mri" if a_modality == "ct" else "ct")
        other = "B" if domain == "A" else "A"
        truth_dir = root / "truth" / f"{part}{domain}_in_{other}"
        if with_truth and not truth_dir.is_dir():
            raise DataError(f"{truth_dir}: with_truth=True but no truth folder (only phantoms have one)")
        pattern = re.compile(subject_pattern)
        entries, files = [], []
        for index, path in enumerate(tqdm(list_images(folder), desc=f"BrainCTMRI {part}{domain}: indexing",
                                          unit="file", disable=not progress)):
            match = pattern.match(path.stem)
            raw = match.group("subject") if match else path.stem
            truth = truth_dir / path.name if with_truth else None
            entries.append(PNGEntry(path=str(path), truth=None if truth is None else str(truth),
                                    image_size=int(image_size), crop_pad_size=crop_pad_size,
                                    subject=subject_key(f"brain:{part}:{raw}", salt=salt),
                                    label=0 if modality == "ct" else 1, modality=modality, domain=domain, part=part,
                                    file_index=index))
            files.append(path)
            if truth is not None and truth.is_file():  # a missing truth is the decoder's error to report
                files.append(truth)
        store = build_store(entries, decode_png, name=f"brain-{part}{domain}", root=root, files=files,
                            settings={"image_size": int(image_size), "crop_pad_size": crop_pad_size,
                                      "with_truth": with_truth},
                            bad_input=self.bad_input, where=lambda entry: entry.path, num_workers=num_workers,
                            progress=progress)
        super().__init__(store)
