"""JupyterLab users: the named kernel make setup registers, and notebooks committed without outputs."""

from __future__ import annotations

import json
import re
import shlex
import site
import subprocess
import sys
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import start_new_kernel

from medgan.reports.runner import KERNEL, default_kernel

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _makefile_kernel_command(python: str = sys.executable) -> list[str]:
    """The Makefile's own kernel-registration line, run with ``python`` as ``$(PY)``."""
    line = next(l for l in (ROOT / "Makefile").read_text().splitlines() if "ipykernel install" in l)
    line = line.split(">")[0].replace("$(PY)", shlex.quote(python))
    return shlex.split(line.strip())


def _run_in_kernel(code: str, cwd: Path) -> str:
    """Start the ``medgan`` kernel, run ``code`` and return what it printed."""
    printed: list[str] = []
    manager, client = start_new_kernel(kernel_name=KERNEL, cwd=str(cwd), startup_timeout=60)
    try:
        reply = client.execute_interactive(code, timeout=120, store_history=False, output_hook=lambda msg: printed.append(
            msg["content"].get("text", "")) if msg["msg_type"] == "stream" else None)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return "".join(printed)


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
    printed = _run_in_kernel("import medgan; print(medgan.__file__)", tmp_path)
    assert Path(printed.strip()).resolve() == ROOT / "medgan" / "__init__.py"


@pytest.mark.slow
def test_the_kernel_registers_from_a_fresh_environment(tmp_path, monkeypatch):
    """A new virtual environment (``python -m venv``) registers the kernel with the Makefile's line,
    and the kernel runs that environment's Python with medgan importable.

    Nothing is downloaded: the new environment sees the project environment's packages through a
    ``.pth`` file (torch and the rest; plain path lines, so the project's editable-install hook for
    medgan is not run) and medgan through a second line naming this checkout."""
    env = tmp_path / "fresh-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, capture_output=True)
    python = env / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    assert Path(purelib).is_relative_to(env)
    (Path(purelib) / "medgan-checkout.pth").write_text("\n".join([*site.getsitepackages(), str(ROOT)]) + "\n")
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    subprocess.run(_makefile_kernel_command(str(python)), check=True, capture_output=True, cwd=tmp_path)
    spec = KernelSpecManager().get_kernel_spec(KERNEL)
    assert spec.display_name == "Python (medgan)"
    assert Path(spec.argv[0]) == python  # the fresh environment's python, not the one running the tests
    # the runner of the project environment does not take another environment's kernel ...
    assert default_kernel() == "python3"
    # ... and the fresh environment's runner does
    chosen = subprocess.run([str(python), "-c", "from medgan.reports.runner import default_kernel; print(default_kernel())"],
                            check=True, capture_output=True, text=True, cwd=tmp_path).stdout.split()
    assert chosen[-1:] == [KERNEL]
    printed = _run_in_kernel("import sys, medgan; print(sys.prefix); print(medgan.__file__)", tmp_path).split()
    assert Path(printed[0]) == env  # the kernel runs in the fresh environment
    assert Path(printed[1]).resolve() == ROOT / "medgan" / "__init__.py"


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
