"""Run cards: what ran, where, with which parameters and versions, and for how long."""

from __future__ import annotations

import html
import json
import os
from typing import Any

from medgan import atomic
from medgan.config import Run

# The report runner sets this; finish() writes the card there so the runner can open the report with it.
CARD_ENV = "MEDGAN_REPORT_CARD"


def _rows(card: dict[str, Any]) -> str:
    out = []
    for key in ("notebook", "profile", "data source", "device", "commit", "python", "started", "wall time (s)"):
        if key in card:
            out.append(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(key)}</th>"
                       f"<td>{html.escape(str(card[key]))}</td></tr>")
    seeds = ", ".join(f"{k} = {v}" for k, v in card.get("seeds", {}).items()) or "—"
    out.append(f"<tr><th style='text-align:left'>seeds</th><td>{html.escape(seeds)}</td></tr>")
    pkgs = ", ".join(f"{k} {v}" for k, v in card.get("packages", {}).items())
    out.append(f"<tr><th style='text-align:left'>packages</th><td>{html.escape(pkgs)}</td></tr>")
    return "\n".join(out)


def run_card_html(card: dict[str, Any]) -> str:
    """The run card as an HTML block (parameters folded)."""
    params = html.escape(json.dumps(card.get("parameters", {}), indent=2, default=str))
    return (
        "<div class='medgan-card' style='border:1px solid #ccd;border-radius:6px;padding:0.6em 1em;"
        "background:#f7f9fc;font-family:sans-serif;font-size:0.9em'>"
        "<b>Run card</b><table>" + _rows(card) + "</table>"
        f"<details><summary>parameters</summary><pre>{params}</pre></details></div>"
    )


def show_run_card(run: Run) -> None:
    """Show the run card at the top of a notebook.

    Under the report runner the full card (with wall time) opens the report instead, so only a
    pointer is shown here.
    """
    from IPython.display import HTML, display

    if os.environ.get(CARD_ENV):
        display(HTML(f"<p><i>Profile <b>{html.escape(run.profile)}</b>; {html.escape(run.data_source)}. "
                     "The full run card opens this report.</i></p>"))
        return
    display(HTML(run_card_html(run.card())))


def finish(run: Run) -> None:
    """Close a run: write ``summary.json`` (the run card with wall time) to the run folder and show the time."""
    card = run.card()
    atomic.write_text(run.dir / "summary.json", json.dumps(card, indent=2, default=str))
    target = os.environ.get(CARD_ENV)
    if target:
        atomic.write_text(target, json.dumps(card, indent=2, default=str))
    try:
        from IPython.display import HTML, display

        display(HTML(f"<p><b>Done.</b> Wall time {card['wall time (s)']:.1f} s "
                     f"({card['wall time (s)'] / 60:.1f} min) on {html.escape(card['device'])}.</p>"))
    except ImportError:
        print(f"done in {card['wall time (s)']:.1f} s")
