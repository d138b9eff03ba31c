"""Generic tables: the paper's numbers beside ours, parameter counts."""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from medgan.models.blocks import count_parameters


def paper_vs_ours(ours: pd.DataFrame, paper: pd.DataFrame, *, note: str = "") -> pd.DataFrame:
    """Our table and the paper's, side by side, with a column level saying which is which.

    Both frames share row labels (e.g. metrics) and columns (e.g. models); a missing cell shows
    as a dash. ``note`` (e.g. "ours: domain_cnn features on the CT phantom") is kept in the
    frame's ``attrs`` for the caption.
    """
    combined = pd.concat({"paper": paper, "ours": ours}, axis=1)
    columns = []
    for col in ours.columns.union(paper.columns, sort=False):
        for source in ("paper", "ours"):
            if (source, col) in combined.columns:
                columns.append((source, col))
    combined = combined[columns]
    combined.columns = pd.MultiIndex.from_tuples([(c, s) for s, c in columns])
    combined.attrs["note"] = note
    return combined


def parameter_table(nets) -> pd.DataFrame:
    """Trainable parameters per network, in millions (``nets``: name -> nn.Module)."""
    rows = {name: count_parameters(net) for name, net in nets.items()}
    return pd.DataFrame({"parameters": rows, "millions": {k: v / 1e6 for k, v in rows.items()}})


def bad_input_table(datasets: Mapping[str, object], *, examples: int = 3) -> pd.DataFrame:
    """What each loader skipped as bad input: a count and the first ``examples`` reasons.

    ``datasets``: name -> a loaded dataset (its ``bad_input`` log) or a ``BadInputLog``. The
    reasons name files relative to the data root, patient folders by their keys.
    """
    rows = {}
    for name, dataset in datasets.items():
        log = getattr(dataset, "bad_input", dataset)
        skipped = list(getattr(log, "skipped", []))
        rows[name] = {"skipped": len(skipped),
                      "first reasons": "; ".join(f"{where}: {why}" if why not in str(where) else str(where)
                                                 for where, why in skipped[:examples]) or "—"}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["skipped", "first reasons"])
