"""Rehearsal profiles are the paper profiles with cuts only: counts, intervals and batch sizes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from medgan.config import REHEARSAL_PROFILE, _flatten, load_params, rehearsal_cuts, repo_root, resolve_profile
from medgan.data import phantoms

PARAMS = repo_root() / "params"
STUDIES = sorted(p.name for p in PARAMS.iterdir() if (p / "paper.yaml").is_file() and not p.name.startswith("00_"))
# leaf names a rehearsal may cut: iteration and sample counts, intervals, batch sizes
CUTTABLE = re.compile(r"^(n_\w+|\w*_count|\w*steps|\w*epochs|\w*_every|\w*batch_size\w*|restarts|max_\w+"
                      r"|num_workers|\w*subsets|\w*cases|\w*sources\w*|\w*points|thumbnails|\w*checkpoints|\w*boot\w*)$")
NEVER = re.compile(r"size$|width|z_dim|dim$|arch|channels|resolution|fmap")  # what a rehearsal keeps


def test_every_study_has_a_rehearsal():
    assert STUDIES and all((PARAMS / s / f"{REHEARSAL_PROFILE}.yaml").is_file() for s in STUDIES)


@pytest.mark.parametrize("notebook", STUDIES)
def test_a_rehearsal_only_cuts(notebook):
    raw = yaml.safe_load((PARAMS / notebook / f"{REHEARSAL_PROFILE}.yaml").read_text())
    assert raw.pop("base") == "paper"
    cuts = rehearsal_cuts(notebook)
    assert cuts, "a rehearsal that cuts nothing is the paper profile"
    for cut in cuts:
        key, paper, ours = cut["parameter"], cut["paper"], cut["rehearsal"]
        assert cut["why"], f"{notebook}: {key}: every cut says why (a YAML comment on its line)"
        if key.startswith("data.phantom."):
            continue
        leaf = key.split(".")[-1]
        assert CUTTABLE.match(leaf) and (not NEVER.search(leaf) or "batch_size" in leaf), \
            f"{notebook}: {key} is not a count, interval or batch size"
        pairs = list(zip(paper, ours)) if isinstance(paper, list) else [(paper, ours)]
        lowest = 0 if leaf.endswith("_every") else 1  # an interval of 0: only at the end of the run
        for before, after in pairs:
            assert isinstance(after, (int, float)) and lowest <= after <= before, f"{notebook}: {key}: {before} -> {after}"
    params = load_params(notebook, REHEARSAL_PROFILE)
    assert params.data.phantom.paper_size is True and not params.data.root


@pytest.mark.parametrize("notebook", STUDIES)
def test_the_paper_size_phantom_has_the_papers_geometry(notebook):
    """The phantom options come from the paper profile: sizes in it reappear in the phantom's."""
    name = next(n for n, nb in phantoms.NOTEBOOKS.items() if nb == notebook)
    options = phantoms.resolve_options(name, dict(load_params(notebook, REHEARSAL_PROFILE).data.phantom.to_dict()))
    paper = _flatten(resolve_profile(notebook, "paper"))
    for key in ("data.image_size", "data.crop_size"):
        if paper.get(key):
            assert max(v for k, v in options.items() if isinstance(v, int) and "size" in k) >= paper[key], (
                f"{notebook}: the paper-size phantom is smaller than the paper's {key} = {paper[key]}")


def test_cuts_and_their_reasons_are_read_from_the_yaml(tmp_path):
    study = tmp_path / "nb"
    study.mkdir()
    (study / "default.yaml").write_text("train: {steps: 100, lr: 0.1}\nsample: {n: 50}\ndata: {size: 64}\n")
    (study / "paper.yaml").write_text("base: default\ntrain: {steps: 9000}\ndata: {size: 256}\n")
    (study / "rehearse.yaml").write_text(
        "base: paper\ntrain:\n  steps: 10     # iterations: a CPU\nsample: {n: 5}   # samples\n")
    cuts = rehearsal_cuts("nb", params_dir=tmp_path)
    assert cuts == [{"parameter": "train.steps", "paper": 9000, "rehearsal": 10, "why": "iterations: a CPU"},
                    {"parameter": "sample.n", "paper": 50, "rehearsal": 5, "why": "samples"}]
