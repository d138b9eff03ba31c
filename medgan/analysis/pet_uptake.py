"""PET-specific scores for early -> delayed translation: uptake in lesions, and how PSNR depends on range.

Images arrive in the loaders' [-1, 1] scale, which maps SUV 0 -> -1 and SUV ``suv_max`` -> +1.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

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


def uptake_ratio(early: Any, delayed: Any, *, suv_max: float, body_suv: float = 0.3) -> float:
    """Global delayed/early SUV ratio over body voxels (early SUV above ``body_suv``): one number per training set."""
    e, d = to_suv(early, suv_max=suv_max), to_suv(delayed, suv_max=suv_max)
    body = e > body_suv
    return float(d[body].sum() / e[body].sum().clamp_min(1e-12))


def scaled_identity(early: Any, *, ratio: float, suv_max: float) -> torch.Tensor:
    """The early image times a global uptake ratio, as the delayed prediction (a stronger identity baseline)."""
    return from_suv(to_suv(early, suv_max=suv_max) * ratio, suv_max=suv_max).clamp(-1.0, 1.0)


def psnr_range_sweep(predictions: Mapping[str, Any], truth: Any, *, suv_max: float,
                     ranges_suv: Sequence[float]) -> pd.DataFrame:
    """PSNR (dB, mean over slices) of each method for each declared data range (in SUV).

    The same images score 20·log10(r2/r1) dB higher when the declared range grows from r1 to r2, so
    a PSNR is only meaningful with its range.
    """
    t = to_suv(truth, suv_max=suv_max)
    rows = []
    for method, pred in predictions.items():
        p = to_suv(pred, suv_max=suv_max)
        for r in ranges_suv:
            rows.append({"method": method, "data range (SUV)": float(r),
                         "PSNR (dB)": float(psnr(p, t, data_range=float(r), reduction="mean"))})
    return pd.DataFrame(rows).pivot(index="method", columns="data range (SUV)", values="PSNR (dB)").reindex(
        list(predictions))


def lesion_uptake(predictions: Mapping[str, Any], truth: Any, masks: Any, subjects: Sequence[str], *,
                  suv_max: float) -> pd.DataFrame:
    """Per subject and method: SUVmax and SUVmean inside the tumour mask, true vs predicted.

    Args:
        predictions: method -> (N, 1, H, W) predicted delayed slices in [-1, 1].
        truth: (N, 1, H, W) true delayed slices. masks: (N, 1, H, W) {0, 1} tumour masks.
        subjects: N subject keys; slices of one subject form its volume.

    Returns:
        One row per (method, subject) with a tumour: true/predicted SUVmax and SUVmean and their
        relative errors (%).
    """
    t = to_suv(truth, suv_max=suv_max)
    m = torch.as_tensor(masks, dtype=torch.float32) > 0.5
    subjects = np.asarray(subjects)
    rows = []
    for method, pred in predictions.items():
        p = to_suv(pred, suv_max=suv_max)
        for subject in dict.fromkeys(subjects):
            idx = torch.as_tensor(np.flatnonzero(subjects == subject))
            mask = m[idx]
            if not mask.any():
                continue
            tv, pv = t[idx][mask], p[idx][mask]
            row = {"method": method, "subject": subject, "voxels": int(mask.sum()),
                   "true SUVmax": float(tv.max()), "pred SUVmax": float(pv.max()),
                   "true SUVmean": float(tv.mean()), "pred SUVmean": float(pv.mean())}
            row["SUVmax error %"] = 100 * (row["pred SUVmax"] - row["true SUVmax"]) / row["true SUVmax"]
            row["SUVmean error %"] = 100 * (row["pred SUVmean"] - row["true SUVmean"]) / row["true SUVmean"]
            rows.append(row)
    return pd.DataFrame(rows)


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
