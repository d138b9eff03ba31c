"""Parameters and run folders.

A study's parameters live in ``params/<notebook>/<profile>.yaml`` (profiles: ``smoke``,
``default``, ``paper``). A profile file may start with ``base: <other profile>`` and then
list only what differs. :func:`load_params` resolves that chain, applies overrides, checks
that every override names a key the base profile defines, and returns one :class:`Params`.

:func:`start_run` makes the run folder ``runs/<notebook>/<profile>/`` with the resolved
parameters and the environment written beside the results.
"""

from __future__ import annotations

import errno
import importlib.metadata as md
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

from medgan import atomic

PROFILES = ("smoke", "default", "paper")


class ParamsError(ValueError):
    """A parameter file or override is wrong; the message names the file and the key."""


def repo_root() -> Path:
    """The checkout holding ``params/``: ``$MEDGAN_ROOT``, else above the package, else cwd up."""
    env = os.environ.get("MEDGAN_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "params").is_dir():
        return here
    for parent in [Path.cwd(), *Path.cwd().parents]:
        if (parent / "params").is_dir():
            return parent
    raise ParamsError("cannot find the medgan checkout (no params/ folder); set MEDGAN_ROOT")


def data_dir() -> Path:
    """Where embedded phantom data is generated: ``$MEDGAN_DATA_DIR`` or ``<repo>/data``."""
    env = os.environ.get("MEDGAN_DATA_DIR")
    return Path(env).resolve() if env else repo_root() / "data"


def runs_dir() -> Path:
    env = os.environ.get("MEDGAN_RUNS_DIR")
    return Path(env).resolve() if env else repo_root() / "runs"


WORKDIR_ENV = "MEDGAN_WORKDIR"


class NotEnoughSpaceError(OSError):
    """The work directory's disk cannot hold what is about to be written; names the folder and bytes."""


def work_dir() -> Path:
    """Where medgan keeps what it derives from a dataset (splits, decoded caches, the site salt):
    ``$MEDGAN_WORKDIR``, else ``<repo>/work``. Nothing is ever written inside a data root.

    A study's ``data.work_dir`` parameter, when set, becomes ``$MEDGAN_WORKDIR`` of the process
    that loads it (:func:`use_work_dir`, called by :func:`load_params`).
    """
    env = os.environ.get(WORKDIR_ENV)
    return Path(env).expanduser().resolve() if env else repo_root() / "work"


def use_work_dir(params: Mapping[str, Any]) -> Path:
    """Apply a parameter set's ``data.work_dir`` and return the work directory in force.

    ``null`` (the default) keeps ``$MEDGAN_WORKDIR`` or ``<repo>/work``; a path replaces them for
    this process and everything it starts (DataLoader workers, notebook kernels inherit the
    environment; ``torchrun`` ranks load the same parameters and apply it themselves).
    """
    data = params.get("data") if isinstance(params, Mapping) else None
    chosen = data.get("work_dir") if isinstance(data, Mapping) else None
    if chosen:
        os.environ[WORKDIR_ENV] = str(Path(str(chosen)).expanduser().resolve())
    return work_dir()


def ensure_free_space(directory: str | os.PathLike, nbytes: int, what: str) -> None:
    """Raise :class:`NotEnoughSpaceError` unless the disk holding ``directory`` has ``nbytes`` free.

    Call it before writing a cache or a split into the work directory, so a full disk fails with
    the folder, the size needed and the way out, instead of a half-written temporary file.
    ``directory`` need not exist yet (its nearest existing parent is measured).

    Args:
        directory: where the file(s) will be written.
        nbytes: bytes about to be written (an estimate from above is fine).
        what: what is being written, for the message (e.g. ``"the NSCLC-Radiomics decoded cache"``).
    """
    directory = Path(directory)
    probe = directory
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        # say so here, not as a PermissionError on a hidden temporary file
        raise PermissionError(
            errno.EACCES, f"{directory}: cannot write {what}: {probe} is not writable. Point ${WORKDIR_ENV} "
                          f"(or the study's data.work_dir parameter) at a writable folder")
    free = shutil.disk_usage(probe).free
    if free < nbytes:
        raise NotEnoughSpaceError(
            errno.ENOSPC,
            f"{directory}: not enough free space for {what}: needs {int(nbytes):,} bytes "
            f"({_human_bytes(nbytes)}), {free:,} bytes ({_human_bytes(free)}) free. Free some space, or point "
            f"${WORKDIR_ENV} (or the study's data.work_dir parameter) at a larger disk")


def _human_bytes(n: float) -> str:
    unit = "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            break
        n /= 1024
    return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"


def dataset_work_dir(root: str | os.PathLike) -> Path:
    """The work folder of one dataset: ``<work_dir>/data-<16 hex of the resolved root path>``.

    Keyed by the path's hash, never its name (a folder name can be a patient ID), so two
    datasets never share files and nothing identifying reaches a file name.

    Raises:
        ParamsError: the work directory lies inside the data root (it would write into the data).
    """
    resolved = Path(root).resolve()
    work = work_dir()
    if work.resolve().is_relative_to(resolved):
        raise ParamsError(f"{work}: the work directory is inside the data root {resolved}; medgan never writes "
                          f"into a data root. Set ${WORKDIR_ENV} (or data.work_dir) to a folder outside it")
    key = hashlib.sha256(str(resolved).encode("utf-8")).hexdigest()[:16]
    return work / f"data-{key}"


class Params(Mapping[str, Any]):
    """Read-only nested parameters with attribute access (``P.train.steps``).

    A missing key raises ``KeyError`` naming the full dotted key and the source file.
    """

    def __init__(self, data: Mapping[str, Any], source: str = "<params>", prefix: str = ""):
        self._data = {k: (Params(v, source, f"{prefix}{k}.") if isinstance(v, Mapping) else v)
                      for k, v in data.items()}
        self._source = source
        self._prefix = prefix

    def __getitem__(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            raise KeyError(f"parameter '{self._prefix}{key}' is not defined in {self._source}") from None

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        return self[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.to_dict() if isinstance(v, Params) else v) for k, v in self._data.items()}

    def __repr__(self) -> str:
        return f"Params({self.to_dict()!r})"


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ParamsError(f"{path}: parameter file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping of parameter names to values")
    return data


def _merge(base: dict[str, Any], update: Mapping[str, Any], source: str, prefix: str = "",
           strict: bool = True) -> dict[str, Any]:
    """Recursive merge; with ``strict`` an unknown key is an error naming it and ``source``."""
    out = dict(base)
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if strict and key not in base:
            known = ", ".join(sorted(base)) or "(none)"
            raise ParamsError(f"{source}: unknown parameter '{dotted}' (known at this level: {known})")
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            out[key] = _merge(base[key], value, source, f"{dotted}.", strict)
        else:
            out[key] = value
    return out


# YAML 1.2 numbers that PyYAML's YAML 1.1 reads as strings ("1e-3", "2E5", "+1.5e-4")
_YAML12_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


def _parse_override(item: str) -> tuple[str, Any]:
    """``key.sub=value`` with the value read as a YAML 1.2 scalar (``1e-3`` is a number)."""
    if "=" not in item:
        raise ParamsError(f"override '{item}' must look like key.sub=value")
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw)
    if isinstance(value, str) and _YAML12_FLOAT.match(value.strip()):
        value = float(value)
    return key.strip(), value


def _kind(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "a mapping"
    return "a list" if isinstance(value, (list, tuple)) else type(value).__name__


def _check_override_types(base: Mapping[str, Any], update: Mapping[str, Any], source: str, prefix: str = "") -> None:
    """An override must have the profile value's kind (number, text, boolean, list, mapping), so a
    typo fails here, naming the key, not as a TypeError deep in a run."""
    for key, value in update.items():
        if key not in base:
            continue
        dotted, old = f"{prefix}{key}", base[key]
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            _check_override_types(old, value, source, f"{dotted}.")
        elif None not in (_kind(old), _kind(value)) and _kind(old) != _kind(value):
            raise ParamsError(f"{source}: {dotted}={value!r} is {_kind(value)}, the profile's value "
                              f"{old!r} is {_kind(old)}")


def _nest(dotted: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def resolve_profile(notebook: str, profile: str, params_dir: Path | None = None) -> dict[str, Any]:
    """The profile's parameters as a plain dict, following ``base:`` links."""
    params_dir = params_dir or repo_root() / "params"
    seen: list[str] = []
    chain: list[tuple[Path, dict[str, Any]]] = []
    name = profile
    while name:
        if name in seen:
            raise ParamsError(f"params/{notebook}: 'base' links form a loop: {' -> '.join(seen + [name])}")
        seen.append(name)
        path = params_dir / notebook / f"{name}.yaml"
        data = _read_yaml(path)
        name = data.pop("base", None)
        chain.append((path, data))
    path, merged = chain[-1]
    for path, data in reversed(chain[:-1]):
        merged = _merge(merged, data, str(path))
    return merged


REHEARSAL_PROFILE = "rehearse"  # params/<notebook>/rehearse.yaml: the paper profile with cuts only
_MISSING = object()


def _yaml_comments(path: Path) -> dict[str, str]:
    """Dotted key -> the ``# comment`` on the line that sets it (flow mappings share their line's)."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in path.read_text().splitlines():
        body, _, comment = line.partition(" #")
        key_match = re.match(r"^(\s*)([\w.-]+):", body)
        if not key_match:
            continue
        indent, key = len(key_match.group(1)), key_match.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([k for _, k in stack] + [key])
        stack.append((indent, key))
        if comment.strip():
            comments[dotted] = comment.strip()
    return comments


def rehearsal_cuts(notebook: str, params_dir: Path | None = None) -> list[dict[str, Any]]:
    """What the rehearsal profile changes from the paper profile, one row per parameter:
    ``{"parameter", "paper", "rehearsal", "why"}`` (``why``: the YAML comment on that line)."""
    params_dir = params_dir or repo_root() / "params"
    paper = _flatten(resolve_profile(notebook, "paper", params_dir))
    rehearse = _flatten(resolve_profile(notebook, REHEARSAL_PROFILE, params_dir))
    comments = _yaml_comments(params_dir / notebook / f"{REHEARSAL_PROFILE}.yaml")
    cuts = []
    for key, value in rehearse.items():
        before = paper.get(key, _MISSING)
        if before is _MISSING or before != value:
            parts = key.split(".")
            why = next((comments[".".join(parts[:i])] for i in range(len(parts), 0, -1)
                        if ".".join(parts[:i]) in comments), "")
            cuts.append({"parameter": key, "paper": None if before is _MISSING else before,
                         "rehearsal": value, "why": why})
    return cuts


def load_params(notebook: str, profile: str = "default", overrides: Mapping[str, Any] | list[str] | None = None,
                *, data_root: str | None = None, work_dir: str | os.PathLike | None = None,
                params_dir: Path | None = None) -> Params:
    """Load ``params/<notebook>/<profile>.yaml`` with overrides applied.

    Args:
        notebook: notebook stem, e.g. ``"02_ct_fidelity_diversity"``.
        profile: ``smoke``, ``default`` or ``paper`` (or any file in the folder).
        overrides: ``{"train.steps": 10}``, nested dicts, or ``["train.steps=10"]``.
        data_root: real dataset path; sets ``data.root`` (``None`` keeps the profile's).
        work_dir: where splits and decoded caches go; sets ``data.work_dir`` (``None`` keeps the
            profile's). A set ``data.work_dir`` becomes this process's ``$MEDGAN_WORKDIR``
            (:func:`use_work_dir`); nothing is ever written inside ``data.root``.
    """
    params_dir = params_dir or repo_root() / "params"
    merged = resolve_profile(notebook, profile, params_dir)
    source = str(params_dir / notebook / f"{profile}.yaml")
    if overrides:
        if isinstance(overrides, (list, tuple)):
            overrides = dict(_parse_override(o) for o in overrides)
        flat = {k: v for k, v in overrides.items()}
        nested = _nest(flat) if any("." in k for k in flat) else dict(flat)
        merged = _merge(merged, nested, f"overrides for {source}")
        _check_override_types(resolve_profile(notebook, profile, params_dir), nested, f"overrides for {source}")
    if data_root:
        merged = _merge(merged, {"data": {"root": str(data_root)}}, f"data_root for {source}")
    if work_dir:
        merged = _merge(merged, {"data": {"work_dir": str(work_dir)}}, f"work_dir for {source}")
    merged.setdefault("profile", profile)
    merged["profile"] = profile
    params = Params(merged, source)
    use_work_dir(params)
    return params


def git_commit(root: Path | None = None) -> str:
    root = root or repo_root()
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
        commit = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("+dirty" if dirty and commit != "unknown" else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment_info() -> dict[str, Any]:
    """Versions and device of this process, for run cards and run folders."""
    versions = {}
    for pkg in ("torch", "torchvision", "numpy", "pandas", "scikit-learn", "scipy", "pydicom",
                "nibabel", "lpips", "umap-learn", "papermill"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = "not installed"
    if torch.cuda.is_available():
        device = f"cuda: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        device = "mps"
    else:
        device = f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device,
        "medgan": __import__("medgan").__version__,
        "commit": git_commit(),
        "packages": versions,
    }


def shareable_params(params: Params) -> dict[str, Any]:
    """The parameters as written to run folders and reports: ``data.root`` is replaced by the
    dataset's work-folder key (the path, or a folder in it, may name a patient)."""
    out = params.to_dict()
    data = out.get("data")
    if isinstance(data, dict) and data.get("root"):
        data["root"] = f"<data root {dataset_work_dir(data['root']).name}>"
    return out


@dataclass
class Run:
    """One execution of a study notebook: its parameters, folder and clock."""

    notebook: str
    profile: str
    params: Params
    dir: Path
    started: float = field(default_factory=time.time)

    @property
    def data_source(self) -> str:
        """What the run read, without the path: a data folder's name can be a patient ID."""
        root = self.params.get("data", {}).get("root") if isinstance(self.params.get("data"), Mapping) else None
        if root:
            return f"real data ({dataset_work_dir(root).name}; the path is not recorded)"
        return "embedded phantom (generated by medgan.data.phantoms)"

    def card(self, wall_time_s: float | None = None) -> dict[str, Any]:
        env = environment_info()
        seeds = {k: v for k, v in _flatten(self.params.to_dict()).items() if "seed" in k.split(".")[-1]}
        return {
            "notebook": self.notebook,
            "profile": self.profile,
            "data source": self.data_source,
            "seeds": seeds,
            "device": env["device"],
            "commit": env["commit"],
            "python": env["python"],
            "packages": env["packages"],
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started)),
            "wall time (s)": round(wall_time_s if wall_time_s is not None else time.time() - self.started, 1),
            "peak memory (MiB)": peak_memory_mib(),
            "parameters": shareable_params(self.params),
            **({"rehearsal": rehearsal_cuts(self.notebook)} if self.profile == REHEARSAL_PROFILE else {}),
        }

    def elapsed(self) -> float:
        return time.time() - self.started


def peak_memory_mib() -> int:
    """This process's peak resident memory, or its largest child's (decoding workers, DataLoader
    workers) if larger: what the machine had to hold at once, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024)  # Linux reports KiB


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def start_run(notebook: str, profile: str = "default", overrides: Mapping[str, Any] | None = None,
              *, data_root: str | None = None, work_dir: str | os.PathLike | None = None,
              run_dir: str | os.PathLike | None = None) -> Run:
    """Load parameters, make the run folder and write ``params.yaml`` + ``environment.json`` there.

    ``data_root`` / ``work_dir`` set ``data.root`` / ``data.work_dir`` (see :func:`load_params`).
    """
    params = load_params(notebook, profile, overrides, data_root=data_root, work_dir=work_dir)
    folder = Path(run_dir) if run_dir else runs_dir() / notebook / profile
    folder.mkdir(parents=True, exist_ok=True)
    atomic.write_text(folder / "params.yaml", yaml.safe_dump(shareable_params(params), sort_keys=False))
    atomic.write_text(folder / "environment.json", json.dumps(environment_info(), indent=2))
    return Run(notebook=notebook, profile=profile, params=params, dir=folder)
