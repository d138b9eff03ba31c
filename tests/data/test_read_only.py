"""Nothing is ever written inside a data root (issue 14, part 2).

Every loader with a phantom reads a read-only copy of it as an unprivileged process, and one
study job trains on it; the data folder must come out byte for byte as it went in, with the
splits and decoded caches in the work folder instead. Also: the ``data.work_dir`` parameter and
the free-space check that runs before a split or cache is written.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from medgan.config import (NotEnoughSpaceError, ParamsError, dataset_work_dir, ensure_free_space, load_params,
                           repo_root, start_run, work_dir)
from medgan.data.splits import split_path, subject_split

NOBODY = 65534
# Each loader that has a phantom, built as a study would (small sizes: the wiring is what is tested).
LOADERS = {
    "chest_ct": "NSCLCRadiomics(root, crop_size=48, image_size=16, with_masks=True)",
    "cxr": "ChestXray(root, image_size=16, with_masks=True)",
    "pet": "PETEarlyDelayed(root, image_size=16)",
    "cells": "RxRx19a(root, crop_size=32, image_size=16)",
    "brain": "BrainCTMRI(root, domain='A', image_size=16)",
}
# Loaders that derive something (a split, a decoded cache) and must have put it in the work folder.
DERIVING = ("chest_ct", "cxr", "pet", "cells")

# Runs in the unprivileged child: load every read-only root twice (the second build reuses what
# the first derived), show that writing into a root is refused, then train a few DCGAN steps of
# study 2 with data.root on the read-only CT phantom.
WORKLOAD = r"""
import json, os, sys
from pathlib import Path
from torch.utils.data import DataLoader
from medgan.config import dataset_work_dir, load_params
from medgan.data.brain_ct_mri import BrainCTMRI
from medgan.data.chest_xray import ChestXray
from medgan.data.nsclc_radiomics import NSCLCRadiomics
from medgan.data.pet_early_delayed import PETEarlyDelayed
from medgan.data.rxrx19a import RxRx19a
from medgan.studies import build_job, run_job

roots, loaders = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = {"euid": os.geteuid(), "items": {}, "work_dir": {}, "derived": {}, "write_refused": {}}
for name, root in roots.items():
    root = Path(root)
    try:
        open(root / ".medgan-write-probe", "w").close()
        out["write_refused"][name] = False
    except OSError:
        out["write_refused"][name] = True
    for _ in range(2):
        dataset = eval(loaders[name])
        batch = next(iter(DataLoader(dataset, batch_size=2)))
    out["items"][name] = len(dataset)
    work = dataset_work_dir(root)
    out["work_dir"][name] = str(work)
    out["derived"][name] = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file())
P = load_params("02_ct_fidelity_diversity", "smoke", {"dcgan.steps": 3, "dcgan.log_every": 1},
                data_root=roots["chest_ct"])
result = run_job(build_job("02_ct_fidelity_diversity", "dcgan", P), Path(os.environ["MEDGAN_RUNS_DIR"]) / "dcgan")
out["trained_steps"] = result.step
print("RESULT " + json.dumps(out))
"""


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` (itself included): kind, mode, size, mtime and, for files, SHA-256."""
    entries = {}
    for folder, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            path = Path(folder) / name if name != "." else Path(folder)
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else None
            entries[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                                    st.st_size, st.st_mtime_ns, digest)
    return entries


def _chmod_tree(root: Path, *, writable: bool) -> None:
    """Read-only: folders r-x, files r-- for everyone; writable: give the owner write back."""
    for folder, dirs, files in os.walk(root):
        for name in files:
            os.chmod(Path(folder) / name, 0o644 if writable else 0o444)
        os.chmod(folder, 0o755 if writable else 0o555)


def _as_nobody():  # runs in the child between fork and exec
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


_libc = ctypes.CDLL(None, use_errno=True)
PR_CAPBSET_DROP = 24
# CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID: what lets root ignore modes
FILE_CAPABILITIES = (0, 1, 2, 3, 4)


def _root_without_file_capabilities():  # runs in the child between fork and exec
    # Dropped from the bounding set, the capabilities are gone after exec: uid 0 then obeys file
    # modes like any user (used when `nobody` cannot reach the interpreter, e.g. under /root).
    for cap in FILE_CAPABILITIES:
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _child_env(scratch: Path) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(scratch / "home"),
           "MEDGAN_WORKDIR": str(scratch / "work"), "MEDGAN_RUNS_DIR": str(scratch / "runs"),
           "MEDGAN_DATA_DIR": str(scratch / "generated"), "MEDGAN_ROOT": str(repo_root()),
           "MPLCONFIGDIR": str(scratch / "home" / "mpl"), "XDG_CACHE_HOME": str(scratch / "home" / "cache"),
           "TORCH_HOME": str(scratch / "home" / "torch"), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
    if "MEDGAN_SUBJECT_SALT" in os.environ:
        env["MEDGAN_SUBJECT_SALT"] = os.environ["MEDGAN_SUBJECT_SALT"]
    return env


def _refuses_write(preexec, folder: Path, env: dict[str, str], cwd: Path) -> tuple[bool, str]:
    """Whether a child started with ``preexec`` imports medgan and is refused a write into ``folder``."""
    code = ("import sys, medgan.studies\n"
            "try:\n    open(sys.argv[1] + '/probe', 'w').close()\nexcept PermissionError:\n    sys.exit(0)\n"
            "sys.exit(3)")
    try:
        probe = subprocess.run([sys.executable, "-c", code, str(folder)], preexec_fn=preexec, env=env, cwd=cwd,
                               capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:  # e.g. the interpreter is not executable for it
        return False, f"{type(exc).__name__}: {exc}"
    if probe.returncode == 0:
        return True, ""
    if probe.returncode == 3:
        return False, f"a write into a {oct(stat.S_IMODE(folder.stat().st_mode))} folder succeeded"
    return False, (probe.stderr.strip().splitlines() or ["(no output)"])[-1]


def _unprivileged_reader(scratch: Path, data: Path, env: dict[str, str]):
    """``(preexec_fn, who)`` for a child process that cannot write into the read-only ``data``; else skip.

    Not root: this user (file modes apply). Root: the user ``nobody`` when it can run this
    interpreter, else root with the file capabilities dropped and the data owned by ``nobody``.
    """
    if os.geteuid() != 0:
        ok, why = _refuses_write(None, data, env, scratch)
        if not ok:
            pytest.skip(f"cannot make a folder read-only for this user ({why})")
        return None, f"uid {os.geteuid()} (not root)"
    ok, why_nobody = _refuses_write(_as_nobody, data, env, scratch)
    if ok:
        return _as_nobody, "nobody (uid 65534)"
    os.chown(data, NOBODY, NOBODY)  # root without file capabilities is then "other": r-x only
    for folder, dirs, files in os.walk(data):
        for name in [*dirs, *files]:
            os.chown(Path(folder) / name, NOBODY, NOBODY, follow_symlinks=False)
    ok, why_caps = _refuses_write(_root_without_file_capabilities, data, env, scratch)
    if ok:
        return _root_without_file_capabilities, "uid 0 without CAP_DAC_OVERRIDE/DAC_READ_SEARCH/FOWNER/CHOWN/FSETID"
    pytest.skip(f"no unprivileged reader available: as nobody: {why_nobody}; as root without file "
                f"capabilities: {why_caps}")


@pytest.fixture
def scratch():
    """A world-traversable temporary folder (pytest's tmp_path is private to its user)."""
    folder = Path(tempfile.mkdtemp(prefix="medgan-read-only-"))
    os.chmod(folder, 0o755)
    yield folder
    for path in folder.rglob("*"):  # give write back so the folder can be removed by its owner
        if path.is_dir() and not path.is_symlink():
            os.chmod(path, 0o755)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_read_only_phantoms_load_and_train_unprivileged(make_phantom, scratch):
    data = scratch / "data"
    data.mkdir()
    roots = {}
    for name in LOADERS:
        roots[name] = data / name
        shutil.copytree(make_phantom(name), roots[name])
    for folder in ("home", "work", "runs", "generated"):
        (scratch / folder).mkdir()
        os.chmod(scratch / folder, 0o777)  # the unprivileged child writes only here
    _chmod_tree(data, writable=False)
    env = _child_env(scratch)
    preexec, who = _unprivileged_reader(scratch, data, env)
    before = _snapshot(data)

    child = subprocess.run([sys.executable, "-c", WORKLOAD, json.dumps({k: str(v) for k, v in roots.items()}),
                            json.dumps(LOADERS)], preexec_fn=preexec, env=env, cwd=scratch,
                           capture_output=True, text=True, timeout=900)
    after = _snapshot(data)
    assert child.returncode == 0, f"as {who}:\n{child.stderr[-4000:]}"
    result = json.loads(next(line for line in child.stdout.splitlines() if line.startswith("RESULT "))[7:])

    new = sorted(set(after) - set(before))
    assert not new, f"files appeared under the data root: {new}"
    changed = sorted(k for k in before if before[k] != after.get(k))
    assert not changed, f"the data root changed at: {changed}"
    assert all(result["write_refused"].values()), f"as {who}, the data root was writable: {result['write_refused']}"
    if preexec is _as_nobody:
        assert result["euid"] == NOBODY
    assert set(result["items"]) == set(LOADERS) and all(n > 0 for n in result["items"].values())
    for name in DERIVING:  # splits and caches went to the dataset's own work folder
        assert result["derived"][name], f"{name}: nothing in its work folder ({who})"
    folders = [Path(result["work_dir"][name]) for name in LOADERS]
    assert len(set(folders)) == len(LOADERS) and all(f.parent == scratch / "work" for f in folders)
    assert result["trained_steps"] == 3


def test_work_dirs_are_per_dataset_and_never_inside_the_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGAN_WORKDIR", str(tmp_path / "work"))
    a, b = tmp_path / "site" / "LUNG1-001", tmp_path / "site" / "LUNG1-002"
    assert dataset_work_dir(a) != dataset_work_dir(b)
    (tmp_path / "site" / "x").mkdir(parents=True)
    assert dataset_work_dir(a) == dataset_work_dir(tmp_path / "site" / "x" / ".." / "LUNG1-001")  # resolved
    for root in (a, b):
        path = split_path(root, fractions=(0.8, 0.1, 0.1), seed=0)
        assert path.parent == dataset_work_dir(root) and path.is_relative_to(tmp_path / "work")
        assert not path.is_relative_to(root)
        # keyed by a hash: the folder name (here a patient ID) reaches no file name
        assert "LUNG1" not in str(path.relative_to(tmp_path / "work"))
    # a work directory inside a data root would write into the data: refused, naming both
    monkeypatch.setenv("MEDGAN_WORKDIR", str(a / "work"))
    with pytest.raises(ParamsError, match=r"work directory is inside the data root .*LUNG1-001"):
        split_path(a, fractions=(0.8, 0.1, 0.1), seed=0)
    assert dataset_work_dir(b).is_relative_to(a / "work")  # another dataset's root is fine


def test_work_dir_parameter_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGAN_WORKDIR", str(tmp_path / "from-env"))  # restored after the test
    notebook = "02_ct_fidelity_diversity"
    assert load_params(notebook, "smoke").data.work_dir is None
    assert work_dir() == tmp_path / "from-env"  # null keeps $MEDGAN_WORKDIR
    P = load_params(notebook, "smoke", work_dir=tmp_path / "chosen")
    assert P.data.work_dir == str(tmp_path / "chosen") and work_dir() == tmp_path / "chosen"
    # the override form, as `medgan train ... --set data.work_dir=...` and notebooks pass it
    load_params(notebook, "smoke", ["data.work_dir=" + str(tmp_path / "override")])
    assert work_dir() == tmp_path / "override"
    run = start_run(notebook, "smoke", work_dir=tmp_path / "run-work", run_dir=tmp_path / "run")
    assert run.params.data.work_dir == str(tmp_path / "run-work") and work_dir() == tmp_path / "run-work"
    path = split_path(tmp_path / "data", fractions=(0.5, 0.5), seed=0)
    assert path.is_relative_to(tmp_path / "run-work")
    for profile in ("smoke", "default", "paper"):  # every study declares it, null by default
        for nb in ("00_quickstart", "01_rxrx19a_stargan_v2", notebook, "03_brain_ct_mri_cyclegan",
                   "04_pet_early_to_delayed", "05_cxr_pggan"):
            assert load_params(nb, profile).data.work_dir is None


def test_free_space_check_names_the_folder_and_the_bytes(tmp_path):
    target = tmp_path / "work" / "data-0123456789abcdef" / "cache"  # need not exist yet
    ensure_free_space(target, 1024, "a small cache")
    needed = shutil.disk_usage(tmp_path).free + 10 ** 15
    with pytest.raises(NotEnoughSpaceError, match=r"not enough free space for the decoded cache") as info:
        ensure_free_space(target, needed, "the decoded cache")
    message = str(info.value)
    assert str(target) in message and f"{needed:,} bytes" in message and "MEDGAN_WORKDIR" in message
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert not target.exists()


def test_split_is_not_written_when_the_disk_is_full(tmp_path, monkeypatch):
    free = {"bytes": 10}

    def disk_usage(path):
        return shutil._ntuple_diskusage(10 ** 12, 10 ** 12 - free["bytes"], free["bytes"])

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    path = tmp_path / "work" / "splits.json"
    with pytest.raises(NotEnoughSpaceError, match=rf"{tmp_path / 'work'}: not enough free space for the subject split"):
        subject_split([f"s-{i}" for i in range(10)], fractions=(0.8, 0.1, 0.1), seed=0, path=path)
    assert not path.exists() and not list(tmp_path.rglob("*.tmp"))
    free["bytes"] = 10 ** 9
    assert len(subject_split([f"s-{i}" for i in range(10)], fractions=(0.8, 0.1, 0.1), seed=0, path=path)) == 10


def test_unwritable_work_dir_is_a_clear_error(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    # os.access stands in for a read-only work folder (root may write anywhere)
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked)
    with pytest.raises(PermissionError, match=r"cannot write the subject split: .*locked is not writable"):
        ensure_free_space(locked / "data-x", 10, "the subject split")
    ensure_free_space(tmp_path / "elsewhere", 10, "the subject split")
