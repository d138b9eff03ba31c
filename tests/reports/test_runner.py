import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from medgan.reports.runner import render_notebook

ROOT = Path(__file__).resolve().parents[2]


def _notebook(path: Path, body: str) -> None:
    params = nbformat.v4.new_code_cell('profile = "default"\noverrides = {}\ndata_root = None')
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Tiny study\n\n## Method\nA test notebook."),
        params,
        nbformat.v4.new_code_cell(
            "import medgan\nfrom medgan import reports\n"
            f"run = medgan.config.start_run({path.stem!r}, profile, overrides, data_root=data_root)\n"
            "reports.show_run_card(run)"),
        nbformat.v4.new_markdown_cell("## Results"),
        nbformat.v4.new_code_cell(body),
        nbformat.v4.new_code_cell("reports.finish(run)"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "params" / "tiny").mkdir(parents=True)
    (tmp_path / "params" / "tiny" / "default.yaml").write_text("seed: 7\nvalue: 2\ndata:\n  root: null\n")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.setenv("MEDGAN_ROOT", str(tmp_path))
    monkeypatch.setenv("MEDGAN_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path


GOOD = ("import numpy as np, pandas as pd\n"
        "fig = reports.image_grid(np.random.rand(4, 1, 8, 8) * 2 - 1, nrow=4, title='grid')\n"
        "reports.show_figure(fig)\nprint('value is', run.params.value)\n"
        "reports.show_table(pd.DataFrame({'FID': [12.5, float('nan')]}, index=['GAN', 'baseline']), caption='Scores')\n"
        "reports.show_headlines([reports.Headline('GAN FID', 12.5, 30.0, note='domain features', low=10.0, high=15.0,\n"
        "                                         interval='95% CI')])\n"
        "reports.show_claims([reports.Claim('the GAN beats the baseline', 'FID 30', 'FID 12.5', True, 'FID lower'),\n"
        "                     reports.Claim('a second claim', 'shown', 'not seen', False, 'CI excludes 0')])")


@pytest.mark.slow
def test_good_run_writes_report_and_index_then_failure_keeps_it(project):
    nb = project / "notebooks" / "tiny.ipynb"
    _notebook(nb, GOOD)
    record = render_notebook(nb, profile="default", overrides={"value": 5}, progress=False)
    assert record.status == "ok", record.error
    html = (project / "reports" / "tiny.html").read_text()
    assert "Run card" in html and "wall time (s)" in html and "seed" in html
    assert "value is 5" in html
    assert 'class="medgan-toc"' in html and "Results" in html
    assert "<img" in html and "data:image/png;base64" in html
    assert "cdnjs" not in html and "require.js" not in html
    index = json.loads((project / "reports" / "index.json").read_text())
    assert index["tiny"]["status"] == "ok" and index["tiny"]["profile"] == "default"
    assert (index["tiny"]["claims_supported"], index["tiny"]["claims_total"]) == (1, 2)
    page = (project / "reports" / "index.html").read_text()
    assert "tiny.html" in page and "GAN FID" in page and "12.5" in page and "paper 30" in page and "1 / 2" in page

    # Results as data: every table, the claims and the headlines, beside the HTML; and the executed notebook.
    results = json.loads((project / "reports" / "tiny.json").read_text())
    scores = next(t for t in results["tables"] if t["caption"] == "Scores")
    assert scores["columns"] == ["FID"] and scores["rows"] == [["GAN", 12.5], ["baseline", None]]
    assert [c["supported"] for c in results["claims"]] == [True, False]
    assert results["headlines"][0] == {"label": "GAN FID", "ours": 12.5, "paper": 30.0, "note": "domain features",
                                       "low": 10.0, "high": 15.0, "interval": "95% CI"}
    assert "12.5 [10, 15]" in page
    assert results["run card"]["profile"] == "default" and "wall time (s)" in results["run card"]
    executed = nbformat.read(project / "reports" / "tiny.ipynb", as_version=4)
    assert any("value is 5" in o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    good_files = {name: (project / "reports" / name).read_bytes() for name in ("tiny.json", "tiny.ipynb")}

    # The notebook breaks: the report stays byte for byte, the CLI exits non-zero naming cell and error.
    _notebook(nb, "raise ValueError('phantom exploded')")
    proc = subprocess.run([sys.executable, "-m", "medgan.reports", "run", "--nb", "tiny", "--no-progress"],
                          env={**os.environ}, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "tiny" in proc.stderr and "ValueError: phantom exploded" in proc.stderr and "cell" in proc.stderr
    assert (project / "reports" / "tiny.html").read_text() == html
    assert (project / "reports" / "tiny.failed.html").exists()
    index = json.loads((project / "reports" / "index.json").read_text())
    assert index["tiny"]["status"].startswith("failed") and index["tiny"]["report"] == "tiny.html"
    assert not list((project / "reports").glob("_tmp-*"))
    assert {name: (project / "reports" / name).read_bytes() for name in good_files} == good_files

    # A second failure in a row still keeps the last good row (headlines and claims included).
    again = render_notebook(nb, profile="default", progress=False)
    assert again.status == "failed"
    index = json.loads((project / "reports" / "index.json").read_text())
    assert index["tiny"]["report"] == "tiny.html" and index["tiny"]["claims_total"] == 2
    assert "GAN FID" in (project / "reports" / "index.html").read_text()


def test_unknown_override_fails_before_running(project):
    nb = project / "notebooks" / "tiny.ipynb"
    _notebook(nb, GOOD)
    from medgan.config import ParamsError

    with pytest.raises(ParamsError, match="unknown parameter 'valu'"):
        render_notebook(nb, overrides={"valu": 1}, progress=False)
    assert not (project / "reports" / "tiny.html").exists()


def test_progress_widgets_are_dropped_from_reports():
    from medgan.reports.runner import _strip_progress_widgets

    widget = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2, "version_minor": 0},
        "text/plain": "HBox()"})
    text = nbformat.v4.new_output("stream", name="stdout", text="kept")
    cell = nbformat.v4.new_code_cell("pass")
    cell.outputs = [widget, text]
    nb = nbformat.v4.new_notebook(cells=[cell])
    nb.metadata["widgets"] = {"state": {}}
    _strip_progress_widgets(nb)
    assert cell.outputs == [text] and "widgets" not in nb.metadata


@pytest.mark.slow
def test_a_rehearsal_says_so_and_lists_its_cuts(project):
    """--rehearse runs the ``rehearse`` profile: the report says it is a rehearsal and lists each cut."""
    from medgan.reports.runner import run_all

    study = project / "params" / "tiny"
    (study / "paper.yaml").write_text("base: default\nvalue: 900\n")
    (study / "rehearse.yaml").write_text("base: paper\nvalue: 3   # iterations: a CPU rehearsal\n")
    _notebook(project / "notebooks" / "tiny.ipynb", "print('value is', run.params.value)")
    with pytest.raises(ValueError, match="rehearses the paper profile"):
        run_all(["tiny"], profile="default", rehearse=True, progress=False)
    [record] = run_all(["tiny"], profile="paper", rehearse=True, progress=False)
    assert record.status == "ok", record.error
    assert record.profile == "rehearse"
    html = (project / "reports" / "tiny.html").read_text()
    assert "value is 3" in html and "Rehearsal" in html and "iterations: a CPU rehearsal" in html
    results = json.loads((project / "reports" / "tiny.json").read_text())
    assert results["rehearsal"] is True
    assert results["run card"]["rehearsal"] == [
        {"parameter": "value", "paper": 900, "rehearsal": 3, "why": "iterations: a CPU rehearsal"}]


THREADS = ("import os, torch\n"
           "print('threads', torch.get_num_threads(), os.environ.get('OMP_NUM_THREADS'))\n"
           "reports.show_headlines([reports.Headline('value', float(run.params.value))])")


@pytest.mark.slow
def test_several_jobs_render_every_notebook_with_its_share_of_the_cores(project):
    from medgan.reports.runner import run_all

    names = ["tiny_a", "tiny_b", "tiny_c"]
    for i, name in enumerate(names):
        (project / "params" / name).mkdir(parents=True)
        (project / "params" / name / "default.yaml").write_text(f"seed: 0\nvalue: {i}\ndata:\n  root: null\n")
        _notebook(project / "notebooks" / f"{name}.ipynb", THREADS)
    records = run_all(names, jobs=2, progress=False)
    assert [r.notebook for r in records] == names and all(r.status == "ok" for r in records), records
    threads = max(1, (os.cpu_count() or 1) // 2)
    index = json.loads((project / "reports" / "index.json").read_text())
    assert sorted(index) == names  # no row lost to the two writers
    for i, name in enumerate(names):
        assert index[name]["headlines"][0]["ours"] == float(i)
        text = "".join(o.get("text", "") for c in nbformat.read(project / "reports" / f"{name}.ipynb", as_version=4).cells
                       if c.cell_type == "code" for o in c.outputs)
        assert f"threads {threads} {threads}" in text


def test_longest_notebook_starts_first_and_the_paper_profile_runs_alone(tmp_path):
    from medgan.reports.runner import _longest_first, auto_jobs

    (tmp_path / "index.json").write_text(json.dumps({
        "a": {"status": "ok", "wall_time_s": 10}, "b": {"status": "ok", "wall_time_s": 300},
        "c": {"status": "failed (previous report kept)", "last_good": {"wall_time_s": 50}}}))
    order = _longest_first([Path("a.ipynb"), Path("b.ipynb"), Path("c.ipynb"), Path("new.ipynb")], tmp_path)
    assert [p.stem for p in order] == ["new", "b", "c", "a"]  # never run: its time is unknown, so first
    # A fresh clone has no index: the committed render times order it; a recorded time overrides them.
    book = tmp_path / "notebooks"
    book.mkdir()
    (book / "render_times.json").write_text(json.dumps({"wall_time_s": {"a": 1000, "new": 20, "x": 500}}))
    fresh = [book / f"{n}.ipynb" for n in ("a", "new", "x", "y")]
    assert [p.stem for p in _longest_first(fresh, tmp_path / "no-reports")] == ["y", "a", "x", "new"]
    assert [p.stem for p in _longest_first(fresh, tmp_path)] == ["y", "x", "new", "a"]  # a: recorded 10 s
    committed = json.loads((Path(__file__).parents[2] / "notebooks" / "render_times.json").read_text())["wall_time_s"]
    assert sorted(committed) == sorted(p.stem for p in (Path(__file__).parents[2] / "notebooks").glob("[0-9]*.ipynb"))
    assert auto_jobs("paper", 5) == 1 and auto_jobs("rehearse", 5) == 1
    if not __import__("torch").cuda.is_available():
        assert auto_jobs("default", 5) == min(5, os.cpu_count() or 1) and auto_jobs("smoke", 1) == 1
