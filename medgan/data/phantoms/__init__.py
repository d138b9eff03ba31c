"""Phantom datasets written in the real datasets' on-disk layouts.

``ensure(name, *, root=None, **options) -> Path`` generates the phantom ``name`` (one of
:data:`NAMES`) into ``(root or data_dir()/"phantoms") / f"{name}-{hash of options}"`` if it is
not there yet and returns that folder, which the real loader reads. Generation happens in a
temporary sibling folder that is renamed into place only when complete, so a crash never leaves
a half dataset that looks complete. Options (``n_subjects``, ``image_size``, ``seed``, ...) are
checked against each generator's ``DEFAULTS``; an unknown option is an error.

``paper_size: true`` asks for a paper-size set: the generator's ``paper_size(paper)`` computes
image size and geometry from the study's resolved ``paper`` profile, and the other options given
(small counts) go on top. The rehearsal profiles (``params/<notebook>/rehearse.yaml``) use it.

Ground truth the real data lacks lives in a ``truth/`` folder beside the real layout.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from medgan import atomic
from medgan.config import ParamsError, data_dir, resolve_profile

NAMES = ("cells", "chest_ct", "brain", "pet", "cxr")
# Bump when a generator's output changes, so cached folders are regenerated.
FORMAT_VERSION = 5
MANIFEST = "phantom.json"
# the study notebook whose params/<notebook>/<profile>.yaml ``data.phantom`` configures each phantom
NOTEBOOKS = {"cells": "01_rxrx19a_stargan_v2", "chest_ct": "02_ct_fidelity_diversity",
             "brain": "03_brain_ct_mri_cyclegan", "pet": "04_pet_early_to_delayed", "cxr": "05_cxr_pggan"}


def generator(name: str):
    """The generator module for ``name`` (has ``DEFAULTS``, ``SMOKE`` and ``generate(folder, **options)``)."""
    if name not in NAMES:
        raise ValueError(f"unknown phantom {name!r}; choose from {', '.join(NAMES)}")
    return importlib.import_module(f"medgan.data.phantoms.{name}")


def profile_options(name: str, profile: str = "default") -> dict[str, Any]:
    """``data.phantom`` of the study notebook's params profile (``{}`` when it has none yet).

    ``make data`` generates exactly what the notebooks' default profiles ask for, so their
    first run finds the folder ready (same options -> same hash -> same folder).
    """
    try:
        params = resolve_profile(NOTEBOOKS[name], profile)
    except (ParamsError, KeyError):
        return {}
    phantom = (params.get("data") or {}).get("phantom") or {}
    return dict(phantom)


def paper_size_options(name: str) -> dict[str, Any]:
    """The options of phantom ``name``'s paper-size set, from its study's ``paper`` profile."""
    return dict(generator(name).paper_size(resolve_profile(NOTEBOOKS[name], "paper")))


def resolve_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Generator defaults updated by ``options``; unknown option names raise ValueError."""
    module = generator(name)
    options = dict(options)
    if options.pop("paper_size", False):
        options = {**paper_size_options(name), **options}
    unknown = sorted(set(options) - set(module.DEFAULTS))
    if unknown:
        raise ValueError(f"phantom {name!r}: unknown option(s) {unknown}; known: {sorted(module.DEFAULTS)}")
    resolved = dict(module.DEFAULTS)
    resolved.update(options)
    return resolved


def options_hash(name: str, options: dict[str, Any]) -> str:
    payload = json.dumps({"name": name, "version": FORMAT_VERSION, "options": options}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


def ensure(name: str, *, root: str | os.PathLike | None = None, **options: Any) -> Path:
    """Generate phantom ``name`` if missing and return its folder (see module docstring)."""
    resolved = resolve_options(name, options)
    if root is None:
        root = data_dir() / "phantoms"
    folder = Path(root) / f"{name}-{options_hash(name, resolved)}"
    if (folder / MANIFEST).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    try:
        start = time.perf_counter()
        generator(name).generate(tmp, **resolved)
        atomic.write_text(tmp / MANIFEST, json.dumps(
            {"name": name, "version": FORMAT_VERSION, "options": resolved,
             "seconds": round(time.perf_counter() - start, 3)}, indent=1, sort_keys=True, default=str))
        if folder.exists():  # an incomplete folder without manifest, from an older crash
            if (folder / MANIFEST).is_file():  # another process finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return folder
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def dataset_root(data_params: Any, phantom: str) -> Path:
    """Where a study reads its data: ``data.root`` when set, else phantom ``phantom`` made from ``data.phantom``.

    ``data_params`` is a notebook's ``data`` parameter section (a mapping with ``root`` and ``phantom``).
    """
    root = data_params.get("root")
    if root:
        return Path(root)
    options = data_params.get("phantom") or {}
    return ensure(phantom, **(options.to_dict() if hasattr(options, "to_dict") else dict(options)))
