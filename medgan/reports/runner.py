"""Execute study notebooks with papermill and render them into self-contained HTML reports.

A run that reaches the end writes, beside each other, ``reports/<notebook>.html`` (the report),
``reports/<notebook>.ipynb`` (the executed notebook, to open in JupyterLab) and
``reports/<notebook>.json`` (every table, claim and headline number, and the run card). A failing
notebook leaves all three untouched, is rendered to ``reports/<notebook>.failed.html`` for
debugging, and makes the runner exit non-zero naming the notebook, the cell and the error.
``reports/index.html`` lists every study with status, profile, data source, wall time, its
headline numbers beside the paper's and "claims supported k / n"; a notebook that keeps failing
keeps its last good row.

On a CPU the default and smoke profiles render one notebook per core at once (longest first, by
the last recorded times), each kernel with its share of the threads; see :func:`auto_jobs`.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import html
import json
import multiprocessing
import os
import re
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import nbformat
import papermill as pm
import torch
import yaml
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbconvert import HTMLExporter

from medgan import atomic
from medgan.config import REHEARSAL_PROFILE, environment_info, git_commit, load_params, repo_root
from medgan.data.base import ROOT_PLACEHOLDER, DataRoot
from medgan.reports.runcard import CARD_ENV, RESULTS_ENV, run_card_html

TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class ReportRecord:
    notebook: str
    status: str  # "ok" | "failed"
    profile: str
    date: str
    commit: str
    wall_time_s: float
    report: str | None = None  # file name inside reports/
    error: str | None = None
    data_source: str | None = None
    headlines: list[dict[str, Any]] | None = None  # from reports/<notebook>.json
    claims_supported: int | None = None
    claims_total: int | None = None
    peak_memory_mib: int | None = None  # the notebook kernel's peak RSS (or its largest child's)


def has_profile(notebook: str, profile: str) -> bool:
    return (repo_root() / "params" / notebook / f"{profile}.yaml").is_file()


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def find_notebooks(names: Sequence[str] | None = None) -> list[Path]:
    """Notebooks in ``notebooks/`` (sorted), or those whose stem equals or starts with each name."""
    all_nbs = sorted(p for p in notebooks_dir().glob("*.ipynb") if not p.name.startswith("."))
    if not names:
        return all_nbs
    chosen = []
    for name in names:
        stem = Path(name).stem
        match = [p for p in all_nbs if p.stem == stem] or [p for p in all_nbs if p.stem.startswith(stem)]
        if not match:
            known = ", ".join(p.stem for p in all_nbs)
            raise FileNotFoundError(f"no notebook named '{name}' in {notebooks_dir()} (have: {known})")
        chosen.extend(m for m in match if m not in chosen)
    return chosen


def parse_overrides(items: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    if not items:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override '{item}' must look like key.sub=value")
        key, raw = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(raw)
    return out


def _heading_toc(body: str) -> str:
    """A table of contents from the report's h1–h3 headings (ids that nbconvert gives them)."""
    items = []
    for level, anchor, inner in re.findall(r'<h([1-3]) id="([^"]+)"[^>]*>(.*?)</h\1>', body, flags=re.S):
        text = re.sub(r"<[^>]+>", "", inner).replace("¶", "").strip()
        if text:
            items.append(f'<li class="toc-h{level}"><a href="#{anchor}">{html.escape(text)}</a></li>')
    if not items:
        return ""
    return '<nav class="medgan-toc"><b>Contents</b><ul>' + "".join(items) + "</ul></nav>"


def export_html(nb: nbformat.NotebookNode) -> str:
    """Notebook -> self-contained HTML (figures embedded, code folded, no external scripts, TOC)."""
    exporter = HTMLExporter(template_name="medgan", extra_template_basedirs=[str(TEMPLATES)])
    exporter.embed_images = True
    body, _ = exporter.from_notebook_node(nb)
    toc = _heading_toc(body)
    return body.replace("<main>", "<main>\n" + toc, 1) if toc else body


def _strip_progress_widgets(nb: nbformat.NotebookNode) -> None:
    """Drop widget outputs (tqdm.auto's notebook progress bars): live state a static report cannot show."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", [])
                            if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})]


def _card_cell(card: Mapping[str, Any]) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_markdown_cell(run_card_html(dict(card)))
    cell.metadata["medgan_run_card"] = True
    return cell


def data_path_scrubber(data_root: str | os.PathLike | None, notebook: Path | None = None):
    """A function ``(text, html=False) -> text`` that removes the data root from what the runner writes.

    The root (as given, absolute and resolved; a relative root also as the kernel resolves it,
    from the notebook's folder) becomes ``<data root>``, and a path under it
    ``<data root>/…/<file name>``: the runner does not know the layout, so it drops the folders
    between, where a patient folder would be. Loaders already say relative, key-scrubbed paths;
    this is the second line, for text nothing else scrubbed (the injected ``data_root``
    parameter, the run card, a traceback).
    """
    if not data_root:
        return lambda text, html=False: text
    roots = [DataRoot(data_root)]
    if notebook is not None and not Path(data_root).is_absolute():
        roots.append(DataRoot(Path(notebook).parent / data_root))

    def scrub(text: str, html: bool = False) -> str:
        placeholder = "&lt;data root&gt;" if html else ROOT_PLACEHOLDER
        for root in roots:
            text = root.scrub(text, paths="basename", placeholder=placeholder)
        return text
    return scrub


def _scrub_tree(obj: Any, scrub, html: bool = False) -> Any:
    """Scrub every string in a JSON-like tree (a notebook, results), in place where it can.

    HTML outputs and markdown cells get the placeholder HTML-escaped, so it shows as text.
    """
    if isinstance(obj, str):
        return scrub(obj, html=html)
    if isinstance(obj, dict):
        markdown = obj.get("cell_type") == "markdown"
        for key in list(obj):
            as_html = html or key == "text/html" or (markdown and key == "source")
            obj[key] = _scrub_tree(obj[key], scrub, as_html)
    elif isinstance(obj, list):
        obj[:] = [_scrub_tree(v, scrub, html) for v in obj]
    return obj


KERNEL = "medgan"  # the kernel `make setup` registers ("Python (medgan)"); the notebooks ask for it


def default_kernel() -> str:
    """``medgan`` when that kernel runs this Python (another checkout may have registered its own),
    else ``python3``: ipykernel's kernel of this environment."""
    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        return "python3"
    executable = Path(spec.argv[0]) if spec.argv else None
    here = Path(sys.executable)
    # a venv's python links to its base interpreter: the same binary in another bin/ is another environment
    same = (executable is not None and executable.exists() and executable.resolve() == here.resolve()
            and executable.absolute().parent.resolve() == here.absolute().parent.resolve())
    return KERNEL if same else "python3"


def render_notebook(notebook: Path, *, profile: str = "default", overrides: Mapping[str, Any] | None = None,
                    data_root: str | None = None, reports_dir: Path | None = None,
                    progress: bool = True, cell_timeout_s: int | None = None,
                    kernel: str | None = None) -> ReportRecord:
    """Execute one notebook with ``params/<notebook>/<profile>.yaml`` and render its report."""
    reports_dir = Path(reports_dir or repo_root() / "reports")
    reports_dir.mkdir(parents=True, exist_ok=True)
    name = notebook.stem
    overrides = dict(overrides or {})
    load_params(name, profile, overrides, data_root=data_root)  # fail fast on a bad profile or override
    tmp = reports_dir / f"_tmp-{name}-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    card_path = tmp / "card.json"
    results_path = tmp / "results.json"
    executed = tmp / f"{name}.ipynb"
    scrub = data_path_scrubber(data_root, notebook)  # no absolute data path in anything written below
    started = time.time()
    date = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    commit = git_commit()
    # Progress bars are for people at a notebook; in a rendered report they are pages of noise.
    settings = {CARD_ENV: str(card_path), RESULTS_ENV: str(results_path), "TQDM_DISABLE": "1"}
    previous = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    error = None
    try:
        pm.execute_notebook(str(notebook), str(executed), parameters={
            "profile": profile, "overrides": overrides, "data_root": data_root},
            cwd=str(notebook.parent), kernel_name=kernel or default_kernel(), progress_bar=progress,
            execution_timeout=cell_timeout_s, report_mode=False)
    except pm.PapermillExecutionError as exc:
        error = (f"{name}: cell {exc.exec_count} (index {exc.cell_index}) raised "
                 f"{exc.ename}: {exc.evalue}")
    except Exception as exc:  # kernel died, timeout, missing kernel: still a failed notebook
        error = f"{name}: {type(exc).__name__}: {exc}"
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    wall = time.time() - started
    if error is not None:
        error = scrub(error)
    try:
        if error is None:
            nb = nbformat.read(executed, as_version=4)
            _strip_progress_widgets(nb)
            card = json.loads(card_path.read_text()) if card_path.exists() else {
                "notebook": name, "profile": profile, **environment_info()}
            card["wall time (s)"] = round(wall, 1)
            card = _scrub_tree(card, scrub)
            # The card opens the report, right under the title cell.
            first = nb.cells[0] if nb.cells else None
            titled = first is not None and first.cell_type == "markdown" and first.source.lstrip().startswith("# ")
            nb.cells.insert(1 if titled else 0, _card_cell(card))
            results = json.loads(results_path.read_text()) if results_path.exists() else {}
            results["run card"] = card
            results["rehearsal"] = card.get("rehearsal") is not None
            # HTML and JSON render before anything is replaced, so a failure here keeps the old report.
            _scrub_tree(nb, scrub)
            results = _scrub_tree(json.loads(json.dumps(results, default=str)), scrub)
            page = scrub(export_html(nb), html=True)
            atomic.write_text(reports_dir / f"{name}.json", json.dumps(results, indent=1, default=str))
            atomic.write_text(reports_dir / f"{name}.ipynb", nbformat.writes(nb))
            atomic.write_text(reports_dir / f"{name}.html", page)
            (reports_dir / f"{name}.failed.html").unlink(missing_ok=True)
            record = ReportRecord(name, "ok", profile, date, commit, round(wall, 1), report=f"{name}.html",
                                  data_source=results.get("data source"), headlines=results.get("headlines", []),
                                  claims_supported=results.get("claims_supported"),
                                  claims_total=results.get("claims_total"),
                                  peak_memory_mib=card.get("peak memory (MiB)"))
        else:
            if executed.exists():  # the partly executed notebook, to see where it broke
                nb = nbformat.read(executed, as_version=4)
                _strip_progress_widgets(nb)
                _scrub_tree(nb, scrub)
                atomic.write_text(reports_dir / f"{name}.failed.html", scrub(export_html(nb), html=True))
            record = ReportRecord(name, "failed", profile, date, commit, round(wall, 1),
                                  report=f"{name}.failed.html" if executed.exists() else None, error=error)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    update_index(record, reports_dir)
    return record


def _load_index(reports_dir: Path) -> dict[str, dict[str, Any]]:
    path = reports_dir / "index.json"
    if path.exists():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return {}
    return {}


def update_index(record: ReportRecord, reports_dir: Path) -> None:
    """Record one run in ``index.json`` and rewrite ``index.html``; notebooks rendered at once take
    turns (a lock), so none of their rows is lost."""
    with open(reports_dir / ".index.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _update_index(record, reports_dir)


def _update_index(record: ReportRecord, reports_dir: Path) -> None:
    index = _load_index(reports_dir)
    entry = asdict(record)
    previous = index.get(record.notebook) or {}
    good = previous if previous.get("status") == "ok" else previous.get("last_good")
    if record.status == "failed" and good:
        # Keep pointing at the last good report (however many failures follow), and say the latest failed.
        entry = {**good, "status": "failed (previous report kept)", "error": record.error,
                 "failed_report": record.report, "failed_date": record.date, "last_good": good}
    index[record.notebook] = entry
    atomic.write_text(reports_dir / "index.json", json.dumps(index, indent=2))
    atomic.write_text(reports_dir / "index.html", index_html(index))


def _headlines_html(entry: Mapping[str, Any]) -> str:
    items = []
    for h in entry.get("headlines") or []:
        ours, paper = _number(h.get("ours")), _number(h.get("paper"))
        if h.get("low") is not None and h.get("high") is not None:
            ours += f" [{_number(float(h['low']))}, {_number(float(h['high']))}]"
        note = f" <span class='note'>({html.escape(h['note'])})</span>" if h.get("note") else ""
        items.append(f"<li>{html.escape(str(h.get('label')))}: <b>{ours}</b>"
                     f"{f' · paper {paper}' if h.get('paper') is not None else ''}{note}</li>")
    return f"<ul>{''.join(items)}</ul>" if items else "—"


def _number(value: Any) -> str:
    if isinstance(value, float):
        return html.escape(f"{value:.3g}")
    return html.escape("—" if value is None else str(value))


def index_html(index: Mapping[str, Mapping[str, Any]]) -> str:
    names = sorted(set(index) | {p.stem for p in find_notebooks()})
    rows = []
    for name in names:
        e = index.get(name, {})
        status = e.get("status", "not run")
        colour = "#1a7f37" if status == "ok" else ("#888" if status == "not run" else "#c62828")
        link = (f'<a href="{html.escape(e["report"])}">{html.escape(name)}</a>' if e.get("report")
                else html.escape(name))
        extra = "".join(f' · <a href="{html.escape(e[k])}">{label}</a>' for k, label in
                        (("failed_report", "failed run"),) if e.get(k))
        if e.get("status") and e.get("report", "").endswith(".html") and not e["report"].endswith(".failed.html"):
            stem = e["report"][:-len(".html")]
            extra += f' · <a href="{html.escape(stem)}.json">json</a> · <a href="{html.escape(stem)}.ipynb">notebook</a>'
        err = f'<div class="err">{html.escape(e["error"])}</div>' if e.get("error") else ""
        wall = f'{e["wall_time_s"]:.0f} s' if isinstance(e.get("wall_time_s"), (int, float)) else "—"
        if isinstance(e.get("peak_memory_mib"), int):
            wall += f'<br><span class="note">peak {e["peak_memory_mib"]:,} MiB</span>'
        claims = (f'{e["claims_supported"]} / {e["claims_total"]}' if e.get("claims_total") else "—")
        rows.append(
            f"<tr><td>{link}{extra}{err}</td><td style='color:{colour}'><b>{html.escape(status)}</b></td>"
            f"<td>{html.escape(str(e.get('profile', '—')))}</td><td>{html.escape(str(e.get('data_source') or '—'))}</td>"
            f"<td>{wall}</td><td>{_headlines_html(e)}</td><td>{claims}</td>"
            f"<td>{html.escape(str(e.get('date', '—')))}<br><code>{html.escape(str(e.get('commit', '—')))}</code></td></tr>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>medgan reports</title>
<style>
 body {{ font-family: sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }}
 table {{ border-collapse: collapse; width: 100%; }}
 th, td {{ text-align: left; padding: 6px 10px; border-bottom: 1px solid #e3e3e3; vertical-align: top; }}
 td ul {{ margin: 0; padding-left: 1.1em; }}
 .note {{ color: #666; font-size: 0.85em; }}
 .err {{ color: #c62828; font-size: 0.85em; font-family: monospace; white-space: pre-wrap; }}
</style></head>
<body>
<h1>medgan reports</h1>
<p>Each report is one study notebook executed end to end by <code>make reproduce</code>. Headline numbers
are this run's beside the paper's (from the study's <code>paper.py</code>); the claims column counts the
paper's claims this run supports. Each report's tables are also in <code>reports/&lt;notebook&gt;.json</code>.</p>
<table>
<tr><th>study</th><th>status</th><th>profile</th><th>data</th><th>wall time</th><th>headline numbers (ours · paper)</th>
<th>claims supported</th><th>date, commit</th></tr>
{''.join(rows)}
</table>
</body></html>
"""


def auto_jobs(profile: str, n_notebooks: int) -> int:
    """How many notebooks to render at once when ``--jobs`` is not given.

    On a CPU the small default and smoke models leave a second core mostly idle (one notebook's
    ops are too small to split well across threads), so one notebook per core renders the set
    fastest. The paper profile and its rehearsal need the whole machine (or the GPU) each: one
    at a time.
    """
    if profile in ("paper", REHEARSAL_PROFILE) or torch.cuda.is_available():
        return 1
    return max(1, min(n_notebooks, os.cpu_count() or 1))


RENDER_TIMES = "render_times.json"  # beside the notebooks: default-profile wall times, for a first run's order


def _longest_first(notebooks: list[Path], reports_dir: Path) -> list[Path]:
    """Notebooks ordered by their last recorded wall time, longest first, so that with several jobs
    the longest never starts last. A notebook never rendered here takes its time from
    ``notebooks/render_times.json`` (measured once, committed: a fresh clone's first ``make reproduce``
    then starts the longest too); one with neither goes first of all."""
    index = _load_index(reports_dir)
    hints: dict[str, float] = {}
    for folder in {nb.parent for nb in notebooks}:
        try:
            hints.update(json.loads((folder / RENDER_TIMES).read_text())["wall_time_s"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no hints: recorded times only
    def last(nb: Path) -> float:
        entry = index.get(nb.stem) or {}
        entry = entry if entry.get("status") == "ok" else (entry.get("last_good") or {})
        return float(entry.get("wall_time_s") or hints.get(nb.stem) or float("inf"))
    return sorted(notebooks, key=last, reverse=True)


def _limit_threads(threads: int) -> None:
    # Inherited by the notebook kernel this worker starts: torch, numpy and OpenMP read it at import.
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[key] = str(threads)


def _report_line(record: ReportRecord) -> None:
    if record.status == "ok":
        print(f"    {record.notebook}: ok in {record.wall_time_s:.0f} s, peak memory {record.peak_memory_mib} MiB "
              f"-> reports/{record.report}", flush=True)
    else:
        print(f"    {record.notebook}: FAILED {record.error}", file=sys.stderr, flush=True)


def run_all(names: Sequence[str] | None = None, *, profile: str = "default",
            overrides: Sequence[str] | Mapping[str, Any] | None = None, data_root: str | None = None,
            reports_dir: Path | None = None, progress: bool = True, rehearse: bool = False,
            kernel: str | None = None, jobs: int | None = None) -> list[ReportRecord]:
    """Render each notebook. ``rehearse`` (with the paper profile) runs the ``rehearse``
    profile: the paper profile with only the cuts in ``params/<notebook>/rehearse.yaml``, on
    paper-size phantoms.

    ``jobs``: notebooks rendered at once, each kernel with ``cores // jobs`` threads; ``None``
    chooses with :func:`auto_jobs`. Records come back in the notebooks' order either way.
    """
    if rehearse:
        if profile not in ("paper", REHEARSAL_PROFILE):
            raise ValueError(f"a rehearsal rehearses the paper profile; got --profile {profile}")
        profile = REHEARSAL_PROFILE
    notebooks = find_notebooks(names)
    if rehearse and not names:  # the quickstart has no paper profile to rehearse
        notebooks = [nb for nb in notebooks if has_profile(nb.stem, REHEARSAL_PROFILE)]
    for notebook in notebooks:  # every profile and override is checked before the first notebook runs
        load_params(notebook.stem, profile, parse_overrides(overrides), data_root=data_root)
    jobs = auto_jobs(profile, len(notebooks)) if jobs is None else max(1, min(jobs, len(notebooks) or 1))
    options = dict(profile=profile, overrides=parse_overrides(overrides), data_root=data_root,
                   reports_dir=reports_dir, kernel=kernel)
    if jobs == 1:
        records = []
        for notebook in notebooks:
            print(f"==> {notebook.stem} (profile {profile})", flush=True)
            record = render_notebook(notebook, progress=progress, **options)
            _report_line(record)
            records.append(record)
        return records
    threads = max(1, (os.cpu_count() or 1) // jobs)
    order = _longest_first(notebooks, Path(reports_dir or repo_root() / "reports"))
    print(f"==> {len(order)} notebooks, {jobs} at a time, {threads} thread(s) each (profile {profile}): "
          + ", ".join(nb.stem for nb in order), flush=True)
    done: dict[str, ReportRecord] = {}
    # Spawned workers: each has its own environment (render_notebook sets variables for its kernel).
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_limit_threads, initargs=(threads,)) as pool:
        futures = [pool.submit(render_notebook, nb, progress=False, **options) for nb in order]
        for future in as_completed(futures):
            record = future.result()
            _report_line(record)
            done[record.notebook] = record
    return [done[nb.stem] for nb in notebooks]
