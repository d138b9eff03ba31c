"""JupyterLab users: the named kernel make setup registers, and notebooks committed without outputs."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import start_new_kernel

from medgan.reports.runner import KERNEL, default_kernel

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _makefile_kernel_command() -> list[str]:
    line = next(l for l in (ROOT / "Makefile").read_text().splitlines() if "ipykernel install" in l)
    line = line.split(">")[0].replace("$(PY)", shlex.quote(sys.executable))
    return shlex.split(line.strip())


@pytest.mark.slow
def test_make_setup_registers_a_kernel_that_imports_medgan(tmp_path, monkeypatch):
    """The Makefile's own registration command, into an empty Jupyter data folder."""
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    subprocess.run(_makefile_kernel_command(), check=True, capture_output=True)
    spec = KernelSpecManager().get_kernel_spec(KERNEL)
    assert spec.display_name == "Python (medgan)"
    assert Path(spec.argv[0]).resolve() == Path(sys.executable).resolve()
    assert default_kernel() == KERNEL  # the runner then uses it
    manager, client = start_new_kernel(kernel_name=KERNEL, cwd=str(tmp_path))
    try:
        reply = client.execute_interactive("import medgan; print(medgan.__file__)", timeout=120, store_history=False)
        assert reply["content"]["status"] == "ok"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_ask_for_the_medgan_kernel(path):
    assert json.loads(path.read_text())["metadata"]["kernelspec"]["name"] == KERNEL


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebooks_hold_no_outputs_and_no_data_path(path):
    """What is committed, not the working copy: a notebook saved from JupyterLab may hold outputs
    locally (nbstripout removes them when git stages it), and make test still passes."""
    shown = subprocess.run(["git", "show", f"HEAD:{path.relative_to(ROOT)}"], cwd=ROOT, capture_output=True, text=True)
    if shown.returncode:
        pytest.skip(f"{path.name} is not committed yet")
    cells = json.loads(shown.stdout)["cells"]
    assert all(not c.get("outputs") and not c.get("execution_count") for c in cells if c["cell_type"] == "code")
    parameters = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    assert re.search(r"^data_root\s*=\s*None\s*(#.*)?$", "".join(parameters["source"]), re.M), \
        f"{path.name}: a data path is committed in the parameters cell"
