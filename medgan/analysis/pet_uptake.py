"""PET-specific scores for early -> delayed translation: uptake in lesions, and how PSNR depends on range.

Images arrive in the loaders' [-1, 1] scale, which maps SUV 0 -> -1 and SUV ``suv_max`` -> +1.
Each score also has a streaming form fed one batch of slices at a time (:func:`uptake_ratio_of_batches`,
:class:`PSNRRangeSweep`, :class:`LesionUptake`), keeping sums per method and subject, never the images;
the array functions are those fed a single batch.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from medgan.metrics import psnr


def to_suv(images: Any, *, suv_max: float) -> torch.Tensor:
    """[-1, 1] images -> SUV (0 .. suv_max)."""
    x = torch.as_tensor(images, dtype=torch.float32)
    return (x + 1.0) / 2.0 * float(suv_max)


def from_suv(suv: Any, *, suv_max: float) -> torch.Tensor:
    return torch.as_tensor(suv, dtype=torch.float32) / float(suv_max) * 2.0 - 1.0


def uptake_sums(early: Any, delayed: Any, *, suv_max: float, body_suv: float = 0.3) -> tuple[float, float]:
    """(delayed SUV sum, early SUV sum) over the body voxels (early SUV above ``body_suv``) of a batch."""
    e, d = to_suv(early, suv_max=suv_max), to_suv(delayed, suv_max=suv_max)
    body = e > body_suv
    return float(d[body].double().sum()), float(e[body].double().sum())


def uptake_ratio(early: Any, delayed: Any, *, suv_max: float, body_suv: float = 0.3) -> float:
    """Global delayed/early SUV ratio over body voxels (early SUV above ``body_suv``): one number per training set."""
    return uptake_ratio_of_batches([(early, delayed)], suv_max=suv_max, body_suv=body_suv)


def uptake_ratio_of_batches(batches: Iterable[tuple[Any, Any]], *, suv_max: float, body_suv: float = 0.3) -> float:
    """:func:`uptake_ratio` of a stream of (early, delayed) batches: only the two sums are kept."""
    delayed_sum = early_sum = 0.0
    for early, delayed in batches:
        d, e = uptake_sums(early, delayed, suv_max=suv_max, body_suv=body_suv)
        delayed_sum, early_sum = delayed_sum + d, early_sum + e
    return float(delayed_sum / max(early_sum, 1e-12))


def scaled_identity(early: Any, *, ratio: float, suv_max: float) -> torch.Tensor:
    """The early image times a global uptake ratio, as the delayed prediction (a stronger identity baseline)."""
    return from_suv(to_suv(early, suv_max=suv_max) * ratio, suv_max=suv_max).clamp(-1.0, 1.0)


class PSNRRangeSweep:
    """PSNR (dB) of each method for several declared data ranges (SUV), fed batch by batch.

    The same images score 20·log10(r2/r1) dB higher when the declared range grows from r1 to r2, so
    a PSNR is only meaningful with its range. Keeps one PSNR per slice, method and range.
    """

    def __init__(self, *, suv_max: float, ranges_suv: Sequence[float]):
        self.suv_max, self.ranges = float(suv_max), [float(r) for r in ranges_suv]
        self._values: dict[str, list[np.ndarray]] = {}

    def add(self, method: str, prediction: Any, truth: Any) -> None:
        """One batch of ``method``'s predicted slices (n, 1, H, W) and the true ones, in [-1, 1]."""
        p, t = to_suv(prediction, suv_max=self.suv_max), to_suv(truth, suv_max=self.suv_max)
        per_range = [np.atleast_1d(psnr(p, t, data_range=r, reduction="none")) for r in self.ranges]
        self._values.setdefault(method, []).append(np.stack(per_range, axis=1))

    def table(self) -> pd.DataFrame:
        """Method x declared range (SUV): the mean PSNR over all slices added."""
        rows = [{"method": method, "data range (SUV)": r, "PSNR (dB)": float(np.concatenate(chunks)[:, j].mean())}
                for method, chunks in self._values.items() for j, r in enumerate(self.ranges)]
        return pd.DataFrame(rows).pivot(index="method", columns="data range (SUV)", values="PSNR (dB)").reindex(
            list(self._values))


def psnr_range_sweep(predictions: Mapping[str, Any], truth: Any, *, suv_max: float,
                     ranges_suv: Sequence[float]) -> pd.DataFrame:
    """PSNR (dB, mean over slices) of each method for each declared data range (in SUV), as a
    method x range table (:class:`PSNRRangeSweep` fed one batch per method)."""
    sweep = PSNRRangeSweep(suv_max=suv_max, ranges_suv=ranges_suv)
    for method, pred in predictions.items():
        sweep.add(method, pred, truth)
    return sweep.table()


class LesionUptake:
    """Per subject and method: SUVmax and SUVmean inside the tumour mask, true vs predicted, fed batch by batch.

    Keeps, per (method, subject), the voxel count, the SUV sums and maxima in the mask; slices of
    one subject may arrive in any batches.
    """

    def __init__(self, *, suv_max: float):
        self.suv_max = float(suv_max)
        self._stats: dict[tuple[str, str], dict[str, float]] = {}

    def add(self, method: str, prediction: Any, truth: Any, masks: Any, subjects: Sequence[str]) -> None:
        """One batch: (n, 1, H, W) predicted and true delayed slices in [-1, 1], {0, 1} masks, n subject keys."""
        p, t = to_suv(prediction, suv_max=self.suv_max), to_suv(truth, suv_max=self.suv_max)
        m = torch.as_tensor(masks, dtype=torch.float32) > 0.5
        subjects = np.asarray(list(subjects))
        for subject in dict.fromkeys(subjects):
            idx = torch.as_tensor(np.flatnonzero(subjects == subject))
            mask = m[idx]
            stats = self._stats.setdefault((method, str(subject)), {"voxels": 0, "true_sum": 0.0, "pred_sum": 0.0,
                                                                    "true_max": -np.inf, "pred_max": -np.inf})
            if not mask.any():
                continue
            tv, pv = t[idx][mask], p[idx][mask]
            stats["voxels"] += int(mask.sum())
            stats["true_sum"] += float(tv.double().sum())
            stats["pred_sum"] += float(pv.double().sum())
            stats["true_max"] = max(stats["true_max"], float(tv.max()))
            stats["pred_max"] = max(stats["pred_max"], float(pv.max()))

    def table(self) -> pd.DataFrame:
        """One row per (method, subject) with a tumour: true/predicted SUVmax and SUVmean and their
        relative errors (%)."""
        rows = []
        for (method, subject), s in self._stats.items():
            if not s["voxels"]:
                continue
            row = {"method": method, "subject": subject, "voxels": int(s["voxels"]),
                   "true SUVmax": s["true_max"], "pred SUVmax": s["pred_max"],
                   "true SUVmean": s["true_sum"] / s["voxels"], "pred SUVmean": s["pred_sum"] / s["voxels"]}
            row["SUVmax error %"] = 100 * (row["pred SUVmax"] - row["true SUVmax"]) / row["true SUVmax"]
            row["SUVmean error %"] = 100 * (row["pred SUVmean"] - row["true SUVmean"]) / row["true SUVmean"]
            rows.append(row)
        return pd.DataFrame(rows)


def lesion_uptake(predictions: Mapping[str, Any], truth: Any, masks: Any, subjects: Sequence[str], *,
                  suv_max: float) -> pd.DataFrame:
    """Per subject and method: SUVmax and SUVmean inside the tumour mask, true vs predicted.

    Args:
        predictions: method -> (N, 1, H, W) predicted delayed slices in [-1, 1].
        truth: (N, 1, H, W) true delayed slices. masks: (N, 1, H, W) {0, 1} tumour masks.
        subjects: N subject keys; slices of one subject form its volume.

    Returns:
        One row per (method, subject) with a tumour (:meth:`LesionUptake.table`).
    """
    lesions = LesionUptake(suv_max=suv_max)
    for method, pred in predictions.items():
        lesions.add(method, pred, truth, masks, subjects)
    return lesions.table()


def lesion_summary(per_subject: pd.DataFrame) -> pd.DataFrame:
    """Mean absolute and mean signed relative errors of SUVmax / SUVmean per method."""
    if per_subject.empty:
        return pd.DataFrame()
    g = per_subject.groupby("method", sort=False)
    return pd.DataFrame({
        "lesions (subjects)": g.size(),
        "|SUVmax error| %": g["SUVmax error %"].apply(lambda s: s.abs().mean()),
        "SUVmax bias %": g["SUVmax error %"].mean(),
        "|SUVmean error| %": g["SUVmean error %"].apply(lambda s: s.abs().mean()),
        "SUVmean bias %": g["SUVmean error %"].mean(),
    })
