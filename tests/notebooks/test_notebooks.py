"""Every notebook: thin, parameterised, three profiles that load, and a smoke run end to end."""

import json
import re
from pathlib import Path

import pytest

from medgan.config import PROFILES, load_params
from medgan.reports.runner import render_notebook

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]


def _cells(path):
    return json.loads(path.read_text())["cells"]


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ is empty"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_thin_and_parameterised(path):
    cells = _cells(path)
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    defining = [src for src in code if re.search(r"^\s*(def|class)\s", src, re.M)]
    assert not defining, f"{path.name}: functions/classes belong in medgan/, not the notebook"
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    source = "".join(tagged[0]["source"])
    for name in ("profile", "overrides", "data_root"):
        assert re.search(rf"^{name}\s*=", source, re.M), f"{path.name}: parameters cell lacks '{name}'"
    # outputs of a notebook saved locally are fine: tests/test_jupyter.py checks what is committed


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_code_cells_are_short_and_text_names_no_project_internals(path):
    cells = _cells(path)
    for i, cell in enumerate(cells):
        source = "".join(cell["source"])
        if cell["cell_type"] == "code":
            lines = [line for line in source.splitlines() if line.strip()]
            assert len(lines) <= 15, f"{path.name} cell {i}: {len(lines)} lines; move the work into the study package"
        else:
            # Papers are cited by authors, title, venue and year; their local text files are not in the repository.
            assert not re.search(r"papers/\d{3}_", source), f"{path.name} cell {i}: cites a local paper file"
            assert not re.search(r"\b(issue|issues|CEO|session)\b", source, re.I), \
                f"{path.name} cell {i}: report text about how the project is managed"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_profile_loads(path):
    for profile in PROFILES:
        params = load_params(path.stem, profile)
        assert params.profile == profile


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_smoke_profile_runs_end_to_end(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGAN_RUNS_DIR", str(tmp_path / "runs"))
    record = render_notebook(path, profile="smoke", reports_dir=tmp_path / "reports", progress=False)
    assert record.status == "ok", record.error
    html = (tmp_path / "reports" / f"{path.stem}.html").read_text()
    assert "Run card" in html and "data:image/png;base64" in html
