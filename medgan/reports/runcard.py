"""Run cards: what ran, where, with which parameters and versions, and for how long."""

from __future__ import annotations

import html
import json
import os
from typing import Any

from IPython.display import HTML, display

from medgan import atomic
from medgan.config import REHEARSAL_PROFILE, Run
from medgan.reports import results

# The report runner sets these; finish() writes the card and the results there, so the runner can
# open the report with the card and write reports/<notebook>.json.
CARD_ENV = "MEDGAN_REPORT_CARD"
RESULTS_ENV = "MEDGAN_REPORT_RESULTS"


def _rows(card: dict[str, Any]) -> str:
    out = []
    for key in ("notebook", "profile", "data source", "device", "commit", "python", "started", "wall time (s)",
                "peak memory (MiB)"):
        if key in card:
            out.append(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(key)}</th>"
                       f"<td>{html.escape(str(card[key]))}</td></tr>")
    seeds = ", ".join(f"{k} = {v}" for k, v in card.get("seeds", {}).items()) or "—"
    out.append(f"<tr><th style='text-align:left'>seeds</th><td>{html.escape(seeds)}</td></tr>")
    pkgs = ", ".join(f"{k} {v}" for k, v in card.get("packages", {}).items())
    out.append(f"<tr><th style='text-align:left'>packages</th><td>{html.escape(pkgs)}</td></tr>")
    return "\n".join(out)


REHEARSAL_NOTE = ("This is a rehearsal of the paper profile, on paper-size phantom data: the paper's image sizes, "
                  "architectures, widths and data pipeline, with only the cuts listed in the run card (iteration "
                  "counts, sample counts and, where this machine's memory requires it, batch sizes). Its numbers "
                  "show that the pipeline runs end to end; they are not the paper's results.")


def _cuts_html(cuts: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td><code>{html.escape(c['parameter'])}</code></td><td>{html.escape(str(c['paper']))}</td>"
        f"<td>{html.escape(str(c['rehearsal']))}</td><td>{html.escape(c.get('why', ''))}</td></tr>" for c in cuts)
    return ("<p><b>Rehearsal</b>: the paper profile with these cuts only.</p><table><tr><th>parameter</th>"
            f"<th>paper</th><th>rehearsal</th><th>why</th></tr>{rows}</table>")


def run_card_html(card: dict[str, Any]) -> str:
    """The run card as an HTML block (parameters folded; a rehearsal's cuts listed)."""
    params = html.escape(json.dumps(card.get("parameters", {}), indent=2, default=str))
    cuts = _cuts_html(card["rehearsal"]) if card.get("rehearsal") is not None else ""
    return (
        "<div class='medgan-card' style='border:1px solid #ccd;border-radius:6px;padding:0.6em 1em;"
        "background:#f7f9fc;font-family:sans-serif;font-size:0.9em'>"
        "<b>Run card</b><table>" + _rows(card) + "</table>" + cuts +
        f"<details><summary>parameters</summary><pre>{params}</pre></details></div>"
    )


def show_run_card(run: Run) -> None:
    """Show the run card at the top of a notebook.

    Under the report runner the full card (with wall time) opens the report instead, so only a
    pointer is shown here. It also starts the run's results record (:mod:`medgan.reports.results`).
    """
    results.begin()
    if run.profile == REHEARSAL_PROFILE:
        display(HTML(f"<p><b>Rehearsal.</b> {html.escape(REHEARSAL_NOTE)}</p>"))
    if os.environ.get(CARD_ENV):
        display(HTML(f"<p><i>Profile <b>{html.escape(run.profile)}</b>; {html.escape(run.data_source)}. "
                     "The full run card opens this report.</i></p>"))
        return
    display(HTML(run_card_html(run.card())))


def finish(run: Run) -> None:
    """Close a run: write ``summary.json`` (the run card with wall time) and ``results.json`` (every
    table, claim and headline shown) to the run folder, and show the time."""
    card = run.card()
    record = {"notebook": run.notebook, "profile": run.profile, "data source": run.data_source,
              **results.current().to_dict(), "run card": card}
    card_json = json.dumps(card, indent=2, default=str)
    record_json = json.dumps(record, indent=1, default=str, allow_nan=False)
    atomic.write_text(run.dir / "summary.json", card_json)
    atomic.write_text(run.dir / "results.json", record_json)
    for env, text in ((CARD_ENV, card_json), (RESULTS_ENV, record_json)):
        if os.environ.get(env):
            atomic.write_text(os.environ[env], text)
    display(HTML(f"<p><b>Done.</b> Wall time {card['wall time (s)']:.1f} s "
                 f"({card['wall time (s)'] / 60:.1f} min) on {html.escape(card['device'])}.</p>"))
