"""Brain CT/MRI PNG loader in the Kaggle layout ``Dataset/images/{trainA,trainB,testA,testB}``.

Unpaired: domain "A" and "B" are read separately (A = CT, B = MRI by default; swap with
``a_modality="mri"``). Each image: grayscale 8-bit (palette PNGs decoded through the palette;
transparent or 16-bit ones refused, see :func:`medgan.data.png_folders.read_png`) -> centre crop + pad to a square
(``crop_pad_size`` px, default the larger side) -> resize to ``image_size`` -> /255 to [-1, 1].
Phantom data also has ``truth/testA_in_B`` and ``truth/testB_in_A`` (the true counterpart of
each test image); ``with_truth=True`` returns it as ``target``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from medgan.data.base import BadInputLog, DataError, ItemListDataset, subject_key
from medgan.data.base import reads_data_root
from medgan.data.png_folders import list_images, read_png
from medgan.data.transforms import center_crop_or_pad, resize

# "subj007_s03.png" -> subject "subj007"; files without a slice suffix are their own subject
DEFAULT_SUBJECT_PATTERN = r"^(?P<subject>.+?)(?:_s\d+)?$"


def _find_dataset_dir(root: Path) -> Path:
    for candidate in (root / "Dataset" / "images", root / "images", root):
        if all((candidate / part).is_dir() for part in ("trainA", "trainB")) or (candidate / "testA").is_dir():
            return candidate
    raise DataError(f"{root}: no Dataset/images/{{trainA,trainB,testA,testB}} folders found")


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

    Items: image (1, S, S) in [-1, 1] (8-bit /255 scaled); label 0 = CT, 1 = MRI; subject key;
    meta {modality, domain, part, file_index}.
    """

    @reads_data_root()  # flat image folders, no patient folders
    def __init__(self, root: str | os.PathLike, *, domain: str = "A", part: str = "train",
                 image_size: int = 64, crop_pad_size: int | None = None, a_modality: str = "ct",
                 with_truth: bool = False, subject_pattern: str = DEFAULT_SUBJECT_PATTERN,
                 skip_bad: bool = False, salt: str | None = None):
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
        records = []
        for index, path in enumerate(list_images(folder)):
            try:
                pixels = read_png(path)
                if pixels.dtype != np.uint8:
                    raise DataError(f"{path}: expected 8-bit grayscale, got {pixels.dtype}")
                image = self._prepare(pixels, image_size, crop_pad_size)
                target = None
                if with_truth:
                    truth_path = truth_dir / path.name
                    if not truth_path.is_file():
                        raise DataError(f"{truth_path}: truth image for {path.name} missing")
                    truth_pixels = read_png(truth_path)
                    if truth_pixels.dtype != np.uint8:
                        raise DataError(f"{truth_path}: expected 8-bit grayscale, got {truth_pixels.dtype}")
                    target = self._prepare(truth_pixels, image_size, crop_pad_size)
            except DataError as exc:
                self.bad_input.reject(exc, path)
                continue
            match = pattern.match(path.stem)
            raw = match.group("subject") if match else path.stem
            record = {"image": image[None], "label": 0 if modality == "ct" else 1,
                      "subject": subject_key(f"brain:{part}:{raw}", salt=salt),
                      "meta": {"modality": modality, "domain": domain, "part": part, "file_index": index}}
            if target is not None:
                record["target"] = target[None]
            records.append(record)
        if not records:
            raise DataError(f"{folder}: no usable images ({self.bad_input.count} skipped)")
        super().__init__(records)

    @staticmethod
    def _prepare(pixels: np.ndarray, image_size: int, crop_pad_size: int | None) -> np.ndarray:
        square = crop_pad_size or max(pixels.shape)
        image = center_crop_or_pad(pixels.astype(np.float32), square, fill=0.0)
        image = resize(image, image_size)
        return image / 127.5 - 1.0
