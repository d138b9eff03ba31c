"""Every command in the README works: make lines name real targets and valid parameters, medgan
lines parse and reach their command with valid parameters, and the Python runs."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

import medgan.cli
import medgan.reports.__main__ as reports_cli
from medgan.config import REHEARSAL_PROFILE, load_params, runs_dir
from medgan.reports.runner import find_notebooks, has_profile
from medgan.studies import build_job, run_job

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, re.S)
SHELL = [line.split(" #")[0].strip() for lang, body in BLOCKS if lang == "bash" for line in body.splitlines()
         if line.strip() and not line.strip().startswith("#")]
MAKE = [line for line in SHELL if line.startswith("make ")]
MEDGAN = [line for line in SHELL if re.search(r"(^|\s)(-m )?medgan\s", line) and not line.startswith("make ")]


def test_the_readme_has_commands():
    assert MAKE and MEDGAN and any(lang == "python" for lang, _ in BLOCKS)


def _check_params(profile: str, notebooks: list[str], sets: list[str], data: str | None) -> None:
    every = [p.stem for p in find_notebooks()]
    if profile == REHEARSAL_PROFILE:  # as the runner: a rehearsal of every study skips the quickstart
        every = [nb for nb in every if has_profile(nb, profile)]
    for notebook in notebooks or every:
        load_params(notebook, profile, sets, data_root=data)


@pytest.mark.parametrize("line", MAKE)
def test_make_lines_name_targets_and_valid_parameters(line):
    words = shlex.split(line)[1:]
    targets = [w for w in words if "=" not in w]
    variables = dict(w.split("=", 1) for w in words if "=" in w)
    dry = subprocess.run(["make", "-n", *targets, *[f"{k}={v}" for k, v in variables.items()]], cwd=ROOT,
                         capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    if "reproduce" in targets:
        profile = REHEARSAL_PROFILE if variables.get("REHEARSE") else variables.get("PROFILE", "default")
        names = [n for n in variables.get("NB", "").split(",") if n]
        notebooks = [p.stem for p in find_notebooks(names)] if names else []
        _check_params(profile, notebooks, shlex.split(variables.get("SET", "")), variables.get("DATA"))


@pytest.mark.parametrize("line", MEDGAN)
def test_medgan_lines_parse_and_reach_their_command(line, monkeypatch):
    words = shlex.split(line)
    args = words[words.index("medgan") + 1:]
    seen = []

    def record(name):
        return lambda *a, **k: seen.append((name, a, k)) or SimpleNamespace(
            step=0, wall_time_s=0.0, run_dir=Path("."), **{"written": 0, "skipped": 0, "folder": ".", "format": "png"})

    def reproduce(names, *, profile, overrides, data_root, rehearse=False, **_):
        _check_params(REHEARSAL_PROFILE if rehearse else profile, [p.stem for p in find_notebooks(names)],
                      overrides, data_root)
        seen.append(("reproduce", names, profile))
        return []

    def export(notebook, model, *, out, profile, overrides, data_root):
        load_params(notebook, profile, overrides, data_root=data_root)
        seen.append(("export", notebook, model))
        return Path(out)

    monkeypatch.setattr(reports_cli, "run_all", reproduce)
    monkeypatch.setattr(medgan.cli, "export_model", export)
    monkeypatch.setattr(medgan.cli, "build_job", lambda nb, model, params: seen.append(("job", nb, model)))
    monkeypatch.setattr(medgan.cli, "run_job", record("run_job"))
    monkeypatch.setattr(medgan.cli, "load_generator", record("load_generator"))
    monkeypatch.setattr(medgan.cli, "generate_dataset", lambda *a, **k: record("generate")() and
                        {"written": 0, "skipped": 0, "folder": "."})
    monkeypatch.setattr(medgan.cli, "translate_folder", lambda *a, **k: record("translate")() and
                        {"written": 0, "skipped": 0, "folder": ".", "format": "png"})
    monkeypatch.setattr(medgan.cli, "score_folders", lambda *a, **k: record("score")() and
                        {"metrics": {}, "n_real": 0, "n_fake": 0, "extractor": "x"})
    monkeypatch.setitem(medgan.cli.COMMANDS, "data", (lambda argv: seen.append(("data", argv)) or 0, ""))
    monkeypatch.setattr(medgan.cli.distributed, "init", lambda: SimpleNamespace(is_main=True))
    monkeypatch.setattr(medgan.cli.distributed, "cleanup", lambda: None)
    assert medgan.cli.main(args + ["--debug"]) == 0
    assert seen or "--list" in args, f"{line}: reached no command"


@pytest.mark.slow
def test_the_readme_python_runs_on_an_exported_model(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGAN_RUNS_DIR", str(tmp_path / "runs"))
    job = build_job("00_quickstart", "dcgan", load_params("00_quickstart", "smoke"))
    run_job(job, runs_dir() / "00_quickstart" / "smoke" / "dcgan", progress=False)
    monkeypatch.chdir(tmp_path)
    assert medgan.cli.main(["export", "00_quickstart", "dcgan", "--profile", "smoke", "--out", "exported/dcgan"]) == 0
    for lang, body in BLOCKS:
        if lang == "python":
            namespace: dict = {}
            exec(compile(body, "README.md", "exec"), namespace)
    assert tuple(namespace["images"].shape) == (16, 1, 32, 32)
