"""Packaging: every runtime import declared, a LICENSE matching the metadata, a citation per study."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import yaml

from medgan.studies.brain_ct_mri_cyclegan import paper as study3
from medgan.studies.ct_fidelity_diversity import paper as study2
from medgan.studies.cxr_pggan import paper as study5
from medgan.studies.pet_early_to_delayed import paper as study4
from medgan.studies.rxrx19a_stargan_v2 import paper as study1

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# import name -> distribution name, where they differ
DISTRIBUTION = {"sklearn": "scikit-learn", "skimage": "scikit-image", "yaml": "pyyaml", "PIL": "pillow",
                "pytorch_fid": "pytorch-fid", "umap": "umap-learn", "IPython": "ipykernel",
                "jupyter_client": "ipykernel", "nbformat": "nbformat"}


def _declared() -> set[str]:
    names = set()
    for requirement in PROJECT["dependencies"]:
        names.add(requirement.split("#")[0].split("=")[0].split(">")[0].split("<")[0].split("[")[0].strip().lower())
    return names


def test_every_runtime_import_is_declared():
    declared = _declared()
    missing = set()
    for path in (ROOT / "medgan").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                       [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for module in modules:
                top = module.split(".")[0]
                if top == "medgan" or top in sys.stdlib_module_names or top == "__future__":
                    continue
                if DISTRIBUTION.get(top, top).lower() not in declared:
                    missing.add(f"{top} ({path.relative_to(ROOT)})")
    assert not missing, f"imported but not in pyproject dependencies: {sorted(missing)}"


def test_license_file_matches_the_metadata():
    assert PROJECT["license"]["text"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_citation_file_cites_every_study():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    titles = {r["title"] for r in cff["references"]}
    for title in (study1.CITATION.title, study2.CITATION["title"], study3.TITLE, study4.TITLE,
                  study5.CITATION["title"]):
        assert title in titles, title
    assert cff["license"] == PROJECT["license"]["text"] and PROJECT["authors"]
