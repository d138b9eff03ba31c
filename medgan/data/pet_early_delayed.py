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
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from medgan import atomic
from medgan.config import dataset_work_dir, ensure_free_space
from medgan.data.base import (BadInputLog, DataAccessError, DataError, ItemListDataset, files_digest, filter_by_split,
                              reads_data_root, subject_key)
from medgan.data.dicom import find_series, load_series, walk_files
from medgan.data.nifti import load_nifti, read_nifti
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



class PETEarlyDelayed(ItemListDataset):
    """Paired early/delayed PET slices per patient.

    Args:
        root: folder of patient folders. split: None or a split name (``root/splits.json``).
        suv_max: SUV mapped to +1 (0 maps to -1). image_size: resize slices (None keeps them).
        skip_bad: skip (log, count) bad or unpaired patients instead of raising.
        with_masks: add ``mask`` from ``root/truth/<patient>/tumour_mask.nii.gz`` (phantoms).
        nifti_without_sidecar: "error" (default) or "suv" (NIfTI values are SUV already).
        min_body_suv: drop slices whose early maximum SUV is below this (outside the body); 0 keeps all.
        cache: keep decoded SUV volumes in ``<dataset work dir>/cache/pet-*.npz`` (atomic; keyed by
            a hash of every file's bytes and the settings), so a second split loads in a moment.

    Items: image = early (1, H, W), target = delayed (1, H, W), both in [-1, 1]; label -1;
    subject key; meta {slice_index, z_mm, spacing_z_mm, pixel_spacing_mm, suv_max, n_slices}.
    """

    @reads_data_root(subject_dirs=("*",))  # one folder per patient
    def __init__(self, root: str | os.PathLike, *, split: str | None = None, suv_max: float = 15.0,
                 image_size: int | None = None, split_fractions=(0.67, 0.0, 0.33), split_seed: int = 0,
                 skip_bad: bool = False, with_masks: bool = False, nifti_without_sidecar: str = "error",
                 min_body_suv: float = 0.0, salt: str | None = None, cache: bool = True,
                 progress: bool = False):
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: PET data folder not found")
        self.bad_input = BadInputLog(skip_bad=skip_bad, name="PETEarlyDelayed")
        try:
            patients = sorted(p for p in root.iterdir() if p.is_dir() and p.name not in ("truth", ".medgan_cache")
                              and not p.name.startswith("."))
        except OSError as exc:
            raise DataAccessError(f"{root}: PET data folder unreadable ({type(exc).__name__}: {exc.strerror})") from exc
        if not patients:
            raise DataError(f"{root}: empty folder (no patient folders)")
        loaded = {}
        for folder in tqdm(patients, desc="PET", disable=not progress):
            missing = [phase for phase in PHASES if not (folder / phase).is_dir()]
            if missing:
                self.bad_input.problem(folder, f"unpaired PET patient: no {'/'.join(missing)} folder")
                continue
            try:
                frames = self._read_frames(root, folder, salt=salt, nifti_without_sidecar=nifti_without_sidecar,
                                           cache=cache)
                subject = self._check_pair(folder, frames, salt)
                mask = None
                if with_masks:
                    mask, _ = read_nifti(root / "truth" / folder.name / "tumour_mask.nii.gz")
                    if mask.shape != frames["early"][0].shape:
                        raise DataError(f"{root / 'truth' / folder.name}: mask shape {mask.shape} != PET {frames['early'][0].shape}")
            except DataError as exc:
                self.bad_input.reject(exc, folder)
                continue
            loaded[subject] = (frames, mask)
        if not loaded:
            raise DataError(f"{root}: no usable PET patients ({self.bad_input.count} skipped)")
        self.split_map = subject_split(sorted(loaded), fractions=_fractions(split_fractions), seed=split_seed,
                                       path=split_path(root, fractions=_fractions(split_fractions), seed=split_seed))
        keep = filter_by_split(sorted(loaded), self.split_map, split)
        records = []
        for subject in sorted(keep):
            frames, mask = loaded[subject]
            early, spacing, positions = frames["early"][:3]
            delayed = frames["delayed"][0]
            for k in range(early.shape[0]):
                if min_body_suv > 0 and early[k].max() < min_body_suv:
                    continue
                record = {"image": self._scale(early[k], suv_max, image_size)[None],
                          "target": self._scale(delayed[k], suv_max, image_size)[None],
                          "label": -1, "subject": subject,
                          "meta": {"slice_index": k, "z_mm": float(positions[k]), "spacing_z_mm": float(spacing[0]),
                                   "pixel_spacing_mm": float(spacing[1]), "suv_max": float(suv_max),
                                   "n_slices": int(early.shape[0])}}
                if mask is not None:
                    m = mask[k] if image_size is None else nearest_resize(mask[k], image_size)
                    record["mask"] = (m > 0.5).astype(np.float32)[None]
                records.append(record)
        if not records:
            raise DataError(f"{root}: no slices for split={split!r}")
        super().__init__(records)

    def _read_frames(self, root: Path, folder: Path, *, salt, nifti_without_sidecar: str, cache: bool) -> dict:
        cache_path = None
        if cache:  # keyed on content: the bytes of every file of both phases (os.walk: unreadable folders surface)
            files = [f for phase in PHASES for f in walk_files(folder / phase, log=self.bad_input)]
            # The salt in effect (through a probe key), so a changed salt never returns stale subject keys.
            key = files_digest(files, "pet-cache-v3", nifti_without_sidecar, subject_key("cache-salt-probe", salt=salt))
            cache_path = dataset_work_dir(root) / "cache" / f"pet-{key}.npz"
        if cache_path is not None and cache_path.is_file():
            try:
                with np.load(cache_path) as stored:
                    subject = str(stored["subject"]) or None
                    return {phase: (stored[f"{phase}_suv"], tuple(float(v) for v in stored[f"{phase}_spacing"]),
                                    stored[f"{phase}_positions"], subject, root / str(stored[f"{phase}_source"]))
                            for phase in PHASES}
            except Exception:  # a damaged cache entry is not the data's fault: decode again
                pass
        frames = {phase: read_phase(folder / phase, salt=salt, log=self.bad_input,
                                    nifti_without_sidecar=nifti_without_sidecar) for phase in PHASES}
        if cache_path is not None and frames["early"][3] == frames["delayed"][3]:
            arrays = {"subject": np.array(frames["early"][3] or "")}
            for phase, (suv, spacing, positions, _, source) in frames.items():
                arrays.update({f"{phase}_suv": suv, f"{phase}_spacing": np.array(spacing),
                               f"{phase}_positions": np.asarray(positions),
                               # relative to the root: no patient folder is written into the work dir
                               f"{phase}_source": np.array(str(Path(source).relative_to(root)))})
            ensure_free_space(cache_path.parent, sum(a.nbytes for a in arrays.values()) + 4096, "the PET decoded cache")
            with atomic.atomic_path(cache_path) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, **arrays)
        return frames

    @staticmethod
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

    @staticmethod
    def _scale(suv: np.ndarray, suv_max: float, image_size: int | None) -> np.ndarray:
        image = window(suv, low=0.0, high=suv_max)
        return image if image_size is None else resize(image, image_size)


def _fractions(fractions):
    if isinstance(fractions, dict):
        return fractions
    values = list(fractions)
    names = ["train", "val", "test"][: len(values)]
    return dict(zip(names, values))
