"""Results as data: every table a notebook shows, its claims and its headline numbers, as JSON.

A notebook shows its numbers through :func:`show_table`, :func:`show_claims` and
:func:`show_headlines`; each also records what it showed. :func:`medgan.reports.finish` writes
the record to ``<run folder>/results.json``, and the report runner copies it beside the HTML as
``reports/<notebook>.json``, where ``reports/index.html`` reads the headlines and the claims.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

try:  # IPython is there in every notebook kernel; plain Python prints instead
    from IPython.display import HTML, display
except ImportError:  # pragma: no cover - the environment installs ipykernel
    HTML = display = None


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, checked by this run.

    Args:
        claim: the claim in a sentence.
        paper: what the paper reported for it (a number, or how it was shown).
        ours: what this run measured.
        supported: whether this run supports the claim (computed, never typed).
        evidence: the rule that decided ``supported`` (e.g. "CI excludes 0", "DeLong p >= 0.05").
    """

    claim: str
    paper: str
    ours: str
    supported: bool
    evidence: str = ""


@dataclass(frozen=True)
class Headline:
    """One headline number of a study for the report index: ours beside the paper's, with our
    uncertainty where the study has one (``low``/``high``, and ``interval`` saying what they are)."""

    label: str  # e.g. "PGGAN FID"
    ours: float | str
    paper: float | str | None = None
    note: str = ""  # e.g. the feature extractor, the data source
    low: float | None = None
    high: float | None = None
    interval: str = ""  # e.g. "95% bootstrap CI over subjects", "range over target domains"

    def text(self, value: float | str | None) -> str:
        if value is None:
            return "—"
        if isinstance(value, float):
            return "—" if math.isnan(value) else f"{value:.3g}"
        return str(value)

    def ours_text(self) -> str:
        """Ours with its interval, e.g. ``12.3 [10.1, 14.5]``."""
        if self.low is None or self.high is None:
            return self.text(self.ours)
        return f"{self.text(self.ours)} [{self.text(float(self.low))}, {self.text(float(self.high))}]"


class ResultsRecord:
    """What one notebook run has shown so far (tables in order, claims, headlines)."""

    def __init__(self) -> None:
        self.tables: list[dict[str, Any]] = []
        self.claims: list[Claim] = []
        self.headlines: list[Headline] = []

    def add_table(self, df: pd.DataFrame, caption: str | None, key: str | None = None) -> str:
        base = key or _slug(caption or f"table {len(self.tables) + 1}")
        taken = {t["key"] for t in self.tables}
        key, i = base, 2
        while key in taken:
            key, i = f"{base}-{i}", i + 1
        self.tables.append({"key": key, "caption": caption or "", **table_data(df)})
        return key

    def to_dict(self) -> dict[str, Any]:
        return {"tables": self.tables, "claims": [asdict(c) for c in self.claims],
                "headlines": [asdict(h) for h in self.headlines],
                "claims_supported": sum(c.supported for c in self.claims), "claims_total": len(self.claims)}


_current = ResultsRecord()


def current() -> ResultsRecord:
    """The record of this process's notebook run."""
    return _current


def begin() -> ResultsRecord:
    """Start a fresh record (the run card does this at the top of a notebook)."""
    global _current
    _current = ResultsRecord()
    return _current


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "table"


def _json_value(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if value is None or isinstance(value, (int, str)):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def _label(value: Any) -> str:
    return " / ".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def table_data(df: pd.DataFrame) -> dict[str, Any]:
    """``{"index_name", "columns", "rows"}`` of a DataFrame, JSON-able (NaN as null, multi-level labels joined by " / ")."""
    rows = [[_label(index)] + [_json_value(v) for v in row] for index, row in zip(df.index, df.itertuples(index=False))]
    index_name = _label(tuple(n for n in df.index.names if n is not None)) if any(df.index.names) else ""
    return {"index_name": index_name, "columns": [_label(c) for c in df.columns], "rows": rows}


def _display(df: pd.DataFrame, caption: str | None, precision: int) -> None:
    if display is None:
        print(caption or "")
        print(df.to_string())
        return
    styler = df.style.format(precision=precision, na_rep="—")
    if caption:
        styler = styler.set_caption(html.escape(caption))
    display(HTML(styler.set_table_attributes('class="medgan-table"').to_html()))


def show_table(df: pd.DataFrame, caption: str | None = None, precision: int = 3, *, key: str | None = None) -> str:
    """Render a DataFrame with a caption (HTML in notebooks, text elsewhere) and record it.

    ``key`` names the table in ``reports/<notebook>.json`` (default: from the caption). Returns the key.
    """
    _display(df, caption, precision)
    return _current.add_table(df, caption, key)


def claims_frame(claims: Sequence[Claim]) -> pd.DataFrame:
    """The claims as a table, one row each (claim, paper, ours, supported, evidence)."""
    return pd.DataFrame([asdict(c) for c in claims], columns=["claim", "paper", "ours", "supported", "evidence"]
                        ).set_index("claim")


def show_claims(claims: Sequence[Claim], caption: str = "The paper's claims and whether this run supports them") -> None:
    """Show the claims table, with "supported k / n" in the caption, and record the claims."""
    claims = list(claims)
    k = sum(c.supported for c in claims)
    _current.claims.extend(claims)
    show_table(claims_frame(claims), caption=f"{caption} — supported {k} / {len(claims)}", key="claims")


def show_headlines(headlines: Sequence[Headline], caption: str = "Headline numbers: ours beside the paper's") -> None:
    """Show the study's headline numbers and record them for the report index."""
    headlines = list(headlines)
    _current.headlines.extend(headlines)
    frame = pd.DataFrame({"ours": [h.ours_text() for h in headlines], "paper": [h.text(h.paper) for h in headlines],
                          "note": ["; ".join(x for x in (h.interval, h.note) if x) for h in headlines]},
                         index=[h.label for h in headlines])
    show_table(frame, caption=caption, key="headlines")
