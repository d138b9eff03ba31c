"""Early/delayed FDG PET loader: paired axial slices (early -> ``image``, delayed -> ``target``).

Layout: ``<root>/<patient>/{early,delayed}/`` each holding a DICOM PT series or ``PET.nii.gz``
with an optional ``PET.json`` sidecar. Values become SUVbw per series from its own tags
(DICOM: RadionuclideTotalDose, RadionuclideHalfLife, RadiopharmaceuticalStartTime,
PatientWeight, decay to SeriesTime) or sidecar keys (``Units`` "Bq/mL" with
``InjectedRadioactivity`` [MBq], ``BodyWeight`` [kg], ``InjectionStart``/``ScanStart`` [s],
``RadionuclideHalfLife`` [s, default F-18]; or ``Units`` "SUV"/"g/ml"). A NIfTI without sidecar
is read as SUV only with ``nifti_without_sidecar="suv"``. Scaling: SUV clipped to
[0, ``suv_max``] -> [-1, 1] (``suv_max`` is in every item's meta to invert it).
Early and delayed must have the same slice positions (same patient, same world z), else an
error naming both series. NIfTI frames are brought to one (canonical RAS+) orientation and their
positions taken from the affine (:func:`medgan.data.nifti.load_nifti`), so a frame stored
z-reversed pairs with the right slices and one shifted in z is refused, as for DICOM.

Building a dataset lists the patient folders and their files (no pixels). Each patient is then
decoded once (both frames to SUV, paired, scaled, resized, with its mask) into the data root's item
store (:mod:`medgan.data.item_store`, in the work directory; parallel with ``num_workers``), which
holds every patient of every split; later runs, and the other split, read slices from it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from medgan.data.base import (BadInputLog, DataAccessError, DataError, ItemListDataset, data_problems,
                              filter_by_split, reads_data_root, resolve_salt, subject_key)
from medgan.data.dicom import find_series, load_series, walk_files
from medgan.data.item_store import ItemStore, build_store
from medgan.data.nifti import load_nifti, nifti_shape, read_nifti
from medgan.data.splits import split_path, subject_split
from medgan.data.transforms import nearest_resize, resize, window

PHASES = ("early", "delayed")
F18_HALF_LIFE_S = 6586.2


def read_phase(folder: Path, *, salt: str | None, log: BadInputLog, nifti_without_sidecar: str):
    """One frame as (suv (Z,Y,X) float32, spacing_mm, positions_mm, subject key or None, source),
    positions in world mm along the slice normal, ascending; source is the file or series folder."""
    nifti = folder / "PET.nii.gz"
    if not nifti.is_file() and (folder / "PET.nii").is_file():
        nifti = folder / "PET.nii"
    if nifti.is_file():
        volume = load_nifti(nifti)
        values, spacing = volume.array, volume.spacing_mm
        sidecar = nifti.parent / "PET.json"
        if sidecar.is_file():
            values = values * np.float32(nifti_suv_factor(sidecar))
        elif nifti_without_sidecar != "suv":
            raise DataError(f"{sidecar}: sidecar missing, so {nifti.name} cannot be converted to SUV "
                            f"(pass nifti_without_sidecar='suv' if the values are SUV already)")
        return values, spacing, volume.positions_mm, None, nifti
    series = find_series(folder, modality="PT", salt=salt, log=log)
    if not series:
        raise DataError(f"{folder}: no PET.nii.gz and no DICOM series with Modality PT (empty folder?)")
    if len(series) > 1:
        raise DataError(f"{folder}: {len(series)} PET series (SeriesInstanceUID) in one phase folder")
    volume = load_series(series[0].files, salt=salt, log=log)
    return volume.array, volume.spacing_mm, volume.positions_mm, volume.subject, series[0].folder


def nifti_suv_factor(sidecar: Path) -> float:
    """SUVbw factor from a JSON sidecar (keys in the module docstring)."""
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{sidecar}: not valid JSON ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{sidecar}: not UTF-8 text (JSON sidecars must be UTF-8: {exc.reason})") from exc
    except OSError as exc:
        raise DataAccessError(f"{sidecar}: unreadable ({type(exc).__name__}: {exc.strerror})") from exc
    if not isinstance(meta, dict):
        raise DataError(f"{sidecar}: expected a JSON object of keys, got {type(meta).__name__}")
    units = str(meta.get("Units", "")).lower()
    if units in ("suv", "g/ml", "suvbw"):
        return 1.0
    if units not in ("bq/ml", "bqml"):
        raise DataError(f"{sidecar}: Units={meta.get('Units')!r} (need 'Bq/mL' or 'SUV')")
    for key in ("InjectedRadioactivity", "BodyWeight", "ScanStart"):
        if not _is_number(meta.get(key)) or (key != "ScanStart" and meta[key] <= 0):
            raise DataError(f"{sidecar}: {key} missing or invalid ({meta.get(key)!r}); needed for SUV")
    for key in ("RadionuclideHalfLife", "DecayCorrectionTime", "InjectionStart"):
        if key in meta and not (_is_number(meta[key]) and (key != "RadionuclideHalfLife" or meta[key] > 0)):
            raise DataError(f"{sidecar}: {key} is not a valid number of seconds ({meta[key]!r})")
    unit = str(meta.get("InjectedRadioactivityUnits", "MBq"))
    scale = {"MBq": 1e6, "kBq": 1e3, "Bq": 1.0, "mCi": 3.7e7}.get(unit)
    if scale is None:
        raise DataError(f"{sidecar}: InjectedRadioactivityUnits={unit!r} unknown")
    half_life = float(meta.get("RadionuclideHalfLife", F18_HALF_LIFE_S))
    reference = "DecayCorrectionTime" if "DecayCorrectionTime" in meta else "ScanStart"
    elapsed = float(meta[reference]) - float(meta.get("InjectionStart", 0.0))
    if elapsed < 0:  # decaying "backwards" would inflate every SUV; both are seconds on one clock
        raise DataError(f"{sidecar}: InjectionStart ({meta.get('InjectionStart')!r} s) is after {reference} "
                        f"({meta[reference]!r} s); the injection must precede the scan")
    dose = meta["InjectedRadioactivity"] * scale * 2 ** (-elapsed / half_life)
    return float(meta["BodyWeight"]) * 1000.0 / dose


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


SUBJECT_DIRS = ("*",)  # one folder per patient directly under the root
NOT_PATIENT_FOLDERS = ("truth", ".medgan_cache")
SKIPPED_FIELD = "bad_input"  # row field of a patient's first slice: what its decode skipped (file, reason)


@dataclass(frozen=True)
class PatientEntry:
    """One patient to decode (picklable, for the store's worker processes) and every setting that shapes its slices."""

    root: str
    folder: str                # the patient folder's name under ``root``
    suv_max: float
    image_size: int | None
    min_body_suv: float
    with_masks: bool
    nifti_without_sidecar: str
    skip_bad: bool
    salt_probe: str            # a key made with the salt: the store changes with the salt, which it never holds
    salt: str = field(repr=False)  # for DICOM PatientID keys in the worker; left out of the store key's text


def decode_patient(entry: PatientEntry) -> list[dict]:
    """Both frames of one patient -> its slice items (image = early, target = delayed, mask), in z order.

    Runs inside the data root's privacy boundary (relative paths and keys in every message, also in a
    worker process); what it skips within a frame (``skip_bad``) rides on the first item's row.
    """
    root = Path(entry.root)
    folder = root / entry.folder
    with data_problems(root, subject_dirs=SUBJECT_DIRS, salt=entry.salt):
        log = BadInputLog(skip_bad=entry.skip_bad, name="PETEarlyDelayed")
        frames = {phase: read_phase(folder / phase, salt=entry.salt, log=log,
                                    nifti_without_sidecar=entry.nifti_without_sidecar) for phase in PHASES}
        subject = _check_pair(folder, frames, entry.salt)
        mask = None
        if entry.with_masks:
            mask, _ = read_nifti(root / "truth" / entry.folder / "tumour_mask.nii.gz")
            if mask.shape != frames["early"][0].shape:
                raise DataError(f"{root / 'truth' / entry.folder}: mask shape {mask.shape} != PET "
                                f"{frames['early'][0].shape}")
        early, spacing, positions = frames["early"][:3]
        delayed = frames["delayed"][0]
        items = []
        for k in range(early.shape[0]):
            if entry.min_body_suv > 0 and early[k].max() < entry.min_body_suv:
                continue
            item = {"image": _scale(early[k], entry.suv_max, entry.image_size)[None].astype(np.float32),
                    "target": _scale(delayed[k], entry.suv_max, entry.image_size)[None].astype(np.float32),
                    "label": -1, "subject": subject,
                    "meta": {"slice_index": k, "z_mm": float(positions[k]), "spacing_z_mm": float(spacing[0]),
                             "pixel_spacing_mm": float(spacing[1]), "suv_max": float(entry.suv_max),
                             "n_slices": int(early.shape[0])}}
            if mask is not None:
                m = mask[k] if entry.image_size is None else nearest_resize(mask[k], entry.image_size)
                item["mask"] = (m > 0.5).astype(np.float32)[None]
            items.append(item)
        if items and log.skipped:
            items[0][SKIPPED_FIELD] = [list(s) for s in log.skipped]
        return items


decode_patient.version = 1  # bump when the decoded items change


def _check_pair(folder: Path, frames: dict, salt) -> str:
    (early, sp_e, pos_e, key_e, src_e), (delayed, sp_d, pos_d, key_d, src_d) = frames["early"], frames["delayed"]
    if key_e is not None and key_d is not None and key_e != key_d:
        raise DataError(f"{folder}: early and delayed series belong to different patients (PatientID)")
    if early.shape != delayed.shape:
        raise DataError(f"{folder}: early {early.shape} and delayed {delayed.shape} volumes differ in shape")
    formats = {phase: "NIfTI" if ".nii" in Path(src).name else "DICOM" for phase, src in (("early", src_e),
                                                                                         ("delayed", src_d))}
    if formats["early"] != formats["delayed"]:
        # NIfTI arrays come back in RAS+, DICOM arrays in their stored row/column order: pairing one
        # with the other would line up in z but could be mirrored in-plane.
        raise DataError(f"{folder}: early is {formats['early']} ({src_e}) and delayed is {formats['delayed']} "
                        f"({src_d}); store both phases of a patient in one format")
    # one rule for DICOM and NIfTI: world positions along the slice normal, sorted ascending
    if not np.allclose(pos_e, pos_d, atol=0.5) or not np.allclose(sp_e, sp_d, rtol=1e-3):
        offset = float(np.max(np.abs(np.asarray(pos_d) - np.asarray(pos_e))))
        raise DataError(f"{folder}: early and delayed slice positions/spacing differ (world z along the slice "
                        f"normal: ImagePositionPatient or NIfTI affine; up to {offset:.1f} mm apart, spacing "
                        f"{sp_e[0]:.3f} vs {sp_d[0]:.3f} mm) between {src_e} and {src_d}")
    return key_e or subject_key(f"pet:{folder.name}", salt=salt)


def _scale(suv: np.ndarray, suv_max: float, image_size: int | None) -> np.ndarray:
    image = window(suv, low=0.0, high=suv_max)
    return image if image_size is None else resize(image, image_size)


class StoreSubset:
    """Some rows of an item store, in a given order, read like a store (one split's slices)."""

    def __init__(self, store: ItemStore, indices: list[int]):
        self.store, self.indices = store, list(indices)
        self.rows = [store.rows[i] for i in self.indices]
        self.content = hashlib.sha256(f"{store.content}:{self.indices}".encode()).hexdigest()[:32]

    def __len__(self) -> int:
        return len(self.indices)

    def read(self, index: int) -> dict:
        if not 0 <= index < len(self.indices):
            raise IndexError(index)
        return self.store.read(self.indices[index])


class PETEarlyDelayed(ItemListDataset):
    """Paired early/delayed PET slices per patient.

    Args:
        root: folder of patient folders. split: None or a split name (the split file lives in the
            dataset's work folder, :func:`medgan.data.splits.split_path`).
        suv_max: SUV mapped to +1 (0 maps to -1). image_size: resize slices (None keeps them).
        skip_bad: skip (log, count) bad or unpaired patients instead of raising.
        with_masks: add ``mask`` from ``root/truth/<patient>/tumour_mask.nii.gz`` (phantoms).
        nifti_without_sidecar: "error" (default) or "suv" (NIfTI values are SUV already).
        min_body_suv: drop slices whose early maximum SUV is below this (outside the body); 0 keeps all.
        num_workers: processes decoding patients when the item store is built (0: this process).
        progress: progress bars while indexing and decoding.

    Items: image = early (1, H, W), target = delayed (1, H, W), both in [-1, 1]; label -1;
    subject key; meta {slice_index, z_mm, spacing_z_mm, pixel_spacing_mm, suv_max, n_slices}.
    Ordered by subject key, then z.
    """

    @reads_data_root(subject_dirs=SUBJECT_DIRS)
    def __init__(self, root: str | os.PathLike, *, split: str | None = None, suv_max: float = 15.0,
                 image_size: int | None = None, split_fractions=(0.67, 0.0, 0.33), split_seed: int = 0,
                 skip_bad: bool = False, with_masks: bool = False, nifti_without_sidecar: str = "error",
                 min_body_suv: float = 0.0, salt: str | None = None, num_workers: int = 0, progress: bool = True):
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: PET data folder not found")
        self.bad_input = BadInputLog(skip_bad=skip_bad, name="PETEarlyDelayed")
        try:
            patients = sorted(p for p in root.iterdir() if p.is_dir() and p.name not in NOT_PATIENT_FOLDERS
                              and not p.name.startswith("."))
        except OSError as exc:
            raise DataAccessError(f"{root}: PET data folder unreadable ({type(exc).__name__}: {exc.strerror})") from exc
        if not patients:
            raise DataError(f"{root}: empty folder (no patient folders)")
        salt_value = resolve_salt(root, salt)[0]
        probe = subject_key("store-salt-probe", salt=salt_value)
        entries, files, slices = [], [], 0
        for folder in tqdm(patients, desc="PET: indexing", unit="patient", disable=not progress):
            missing = [phase for phase in PHASES if not (folder / phase).is_dir()]
            if missing:
                self.bad_input.problem(folder, f"unpaired PET patient: no {'/'.join(missing)} folder")
                continue
            # file list for the store's key (an unreadable folder is counted here, and again by no one)
            phase_files = {phase: walk_files(folder / phase, log=self.bad_input) for phase in PHASES}
            files += phase_files["early"] + phase_files["delayed"]
            mask = root / "truth" / folder.name / "tumour_mask.nii.gz"
            if with_masks and mask.is_file():
                files.append(mask)
            slices += _slice_count(folder / "early", phase_files["early"])
            entries.append(PatientEntry(root=str(root), folder=folder.name, suv_max=float(suv_max),
                                        image_size=None if image_size is None else int(image_size),
                                        min_body_suv=float(min_body_suv), with_masks=bool(with_masks),
                                        nifti_without_sidecar=nifti_without_sidecar, skip_bad=bool(skip_bad),
                                        salt_probe=probe, salt=salt_value))
        if not entries:
            raise DataError(f"{root}: no usable PET patients ({self.bad_input.count} skipped)")
        store = build_store(entries, decode_patient, name="pet", root=root, files=files,
                            settings={"suv_max": float(suv_max), "image_size": image_size,
                                      "min_body_suv": float(min_body_suv), "with_masks": bool(with_masks),
                                      "nifti_without_sidecar": nifti_without_sidecar},
                            bad_input=self.bad_input, where=lambda entry: Path(entry.root) / entry.folder,
                            num_workers=num_workers, progress=progress, expected_items=max(slices, len(entries)))
        self._replay_frame_skips(store)
        subjects = sorted({row["subject"] for row in store.rows})
        fractions = _fractions(split_fractions)
        self.split_map = subject_split(subjects, fractions=fractions, seed=split_seed,
                                       path=split_path(root, fractions=fractions, seed=split_seed))
        keep = filter_by_split(subjects, self.split_map, split)
        # subjects in key order, each subject's slices in z order (as the store holds them)
        order = sorted((i for i, row in enumerate(store.rows) if row["subject"] in keep),
                       key=lambda i: (store.rows[i]["subject"], i))
        if not order:
            raise DataError(f"{root}: no slices for split={split!r}")
        super().__init__(StoreSubset(store, order))

    def _replay_frame_skips(self, store: ItemStore) -> None:
        """Count what each patient's decode skipped within a frame (once: the indexing may have seen it)."""
        seen = set(self.bad_input.skipped)
        for row in store.rows:
            for where, reason in row.pop(SKIPPED_FIELD, []):
                if (where, reason) not in seen:
                    seen.add((where, reason))
                    self.bad_input.skipped.append((where, reason))


def _slice_count(folder: Path, files: list[Path]) -> int:
    """Slices of one frame, from the file list or the NIfTI header (the free-space estimate only)."""
    for name in ("PET.nii.gz", "PET.nii"):
        if (folder / name).is_file():
            try:
                return int(nifti_shape(folder / name)[-1])
            except DataError:
                return 1  # the decoder names the problem
    return len(files)


def _fractions(fractions):
    if isinstance(fractions, dict):
        return fractions
    values = list(fractions)
    names = ["train", "val", "test"][: len(values)]
    return dict(zip(names, values))
