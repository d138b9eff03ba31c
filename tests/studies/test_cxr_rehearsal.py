"""Study 5 rehearsed at the paper's sizes (issue 14, part 5): notebook 05 with the ``rehearse``
profile (the paper profile with counts cut: 2048-px DICOM phantom read to 1024 px, the thesis's
full-width PGGAN grown to 1024 px with z 512, ResNet-50 at 1024 px) renders end to end."""

import json
import os
from pathlib import Path

import pytest

from medgan.config import load_params, rehearsal_cuts
from medgan.reports.runner import render_notebook
from medgan.studies.cxr_pggan import jobs

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "05_cxr_pggan.ipynb"


def test_the_rehearsal_keeps_the_papers_sizes_and_cuts_only_counts():
    paper, rehearse = load_params(NOTEBOOK.stem, "paper"), load_params(NOTEBOOK.stem, "rehearse")
    for key in ("data.image_size", "data.num_workers", "pggan.z_dim", "pggan.width", "pggan.fmap_max",
                "pggan_normal.width", "classifier.arch", "fidelity.positive_above", "axes.keep_above",
                "anogan.score_kind", "anogan.sigma", "augment.pggan", "augment.classifier"):
        section, name = key.split(".")
        assert rehearse[section][name] == paper[section][name], key
    cuts = {c["parameter"]: c for c in rehearsal_cuts(NOTEBOOK.stem)}
    for normal_only in (False, True):  # the official growth plan, cut to images, still reaches 1024 px
        g = jobs.pggan_settings(rehearse, normal_only=normal_only)
        assert g.growth == "images" and g.reset_adam_at_growth and g.lr_per_resolution == paper.pggan.lr_per_resolution
        last = jobs.image_schedule(g, 14).table()[-1]
        assert last["resolution"] == 1024 and last["steps"] >= 1 and last["fade_in_steps"] >= 1
    for name, cut in cuts.items():
        assert cut["why"], f"{name}: every cut says why"
        if isinstance(cut["rehearsal"], (int, float)) and not isinstance(cut["rehearsal"], bool):
            assert cut["rehearsal"] <= cut["paper"], name
    assert rehearse.data.phantom.paper_size and rehearse.data.phantom.image_size >= 2000  # ~2,000-px radiographs


@pytest.mark.slow
@pytest.mark.whole_machine
def test_study_5_rehearses_the_paper_profile(tmp_path, monkeypatch):
    # Runs and the paper-size phantom in the test's folder; splits and item stores in the suite's MEDGAN_WORKDIR.
    monkeypatch.setenv("MEDGAN_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MEDGAN_DATA_DIR", str(tmp_path / "data"))
    # One job for the whole machine: the suite's OMP_NUM_THREADS=1 is meant for its many small tests.
    monkeypatch.setenv("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    reports = tmp_path / "reports"
    record = render_notebook(NOTEBOOK, profile="rehearse", reports_dir=reports, progress=False)
    assert record.status == "ok", record.error
    results = json.loads((reports / f"{NOTEBOOK.stem}.json").read_text())
    assert results["profile"] == "rehearse" and results["rehearsal"] is True
    assert results["claims"] and all({"claim", "supported", "evidence"} <= set(c) for c in results["claims"])
    assert [h["label"] for h in results["headlines"]][:2] == ["AUROC classifier(real), real test",
                                                              "AUROC classifier(synthetic), real test"]
    card = results["run card"]
    assert {c["parameter"] for c in card["rehearsal"]} >= {"pggan.n_images", "classifier.steps", "fidelity.n_generate"}
    params = card["parameters"]  # the models ran at the paper's sizes
    assert params["data"]["image_size"] == 1024 and params["pggan"]["z_dim"] == 512
    assert params["classifier"]["arch"] == "resnet50"
    html = (reports / f"{NOTEBOOK.stem}.html").read_text()
    assert "Rehearsal" in html and "data:image/png;base64" in html
