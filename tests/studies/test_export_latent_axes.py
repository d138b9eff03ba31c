"""Study 5's chest PGGAN exported with its latent disease axes: the axes are the notebook's, and
``generate(label=, strength=)`` / ``medgan generate --label --strength`` move latents along them."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from medgan.cli import main
from medgan.config import load_params, runs_dir
from medgan.data.chest_xray import ChestXray
from medgan.data.png_folders import read_png
from medgan.models.portable import load_generator
from medgan.studies import build_job, run_job
from medgan.studies.cxr_pggan import latent_walks
from medgan.studies.cxr_pggan.data import multilabel_names
from medgan.studies.export import export_model
from medgan.train.engine import RunNotTrainedError

pytestmark = pytest.mark.slow
NB = "05_cxr_pggan"
# smoke classifiers are never confident: with these filter settings every generated image counts
# for its top class, so axes are fitted (the jobs' run keys do not depend on them)
LOOSE = {"axes.keep_above": 0.0, "axes.others_below": 1.0}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("axes")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDGAN_RUNS_DIR", str(root / "runs"))
        P = load_params(NB, "smoke", LOOSE)
        jobs = {name: build_job(NB, name, P) for name in ("pggan", "multilabel", "pggan_normal")}
        for name, job in jobs.items():
            run_job(job, runs_dir() / NB / "smoke" / name, progress=False)
        export_model(NB, "pggan", profile="smoke", overrides=LOOSE, out=root / "pggan")
        export_model(NB, "pggan_normal", profile="smoke", overrides=LOOSE, out=root / "normal")
        yield root, P, jobs


def test_exported_axes_are_the_studys_axes(trained):
    root, P, jobs = trained
    model = load_generator(root / "pggan", device="cpu")
    names = multilabel_names(P)
    # the notebook's own step, on the same finished runs
    study = latent_walks.discover(P, jobs["pggan"].step, jobs["multilabel"].step.model, names).axes
    fitted = [name for name in names if study.found[name]]
    assert len(fitted) >= 2 and model.labels == fitted
    for name in fitted:
        assert model.axes[name].dtype == torch.float64
        np.testing.assert_array_equal(model.axes[name].numpy(), study.axes[names.index(name)])
        assert model.axes[name].norm().item() == pytest.approx(1.0, abs=1e-12)
    record = model.spec["latent_axes"]
    assert record["counts"] == study.counts and record["fitted"] == study.found
    assert record["labeller"]["job"] == "multilabel" and record["labeller"]["outputs"] == names
    assert record["fit"]["n_generate"] == P.axes.n_generate and record["fit"]["keep_above"] == 0.0
    # strength is in the study's walk-step units: scale * axes.walk_steps are its latent steps
    np.testing.assert_allclose(np.asarray(P.axes.walk_steps) * record["scale"],
                               latent_walks.walk_steps(P, jobs["pggan"].step), rtol=1e-12)
    assert record["default_strength"] == max(P.axes.walk_steps)
    assert "Latent axes" in (root / "pggan" / "model_card.md").read_text()
    assert model.spec["layout"] == "chestxray14"


def test_strength_zero_is_plain_generation_and_s_moves_latents_by_s_axes(trained):
    root, _, jobs = trained
    model = load_generator(root / "pggan", device="cpu")
    label, s = model.labels[-1], 1.25
    assert torch.equal(model.generate(5, seed=2, label=label, strength=0.0), model.generate(5, seed=2))
    plain = model.latents(0, 5, seed=2)
    moved = model.latents(0, 5, seed=2, label=label, strength=s)
    scale = model.spec["latent_axes"]["scale"]
    expected = s * scale * model.axes[label].float()
    torch.testing.assert_close(moved - plain, expected.expand(5, -1), rtol=0, atol=2e-6)
    images = model.generate(5, seed=2, label=label, strength=s, batch_size=2)
    with torch.no_grad():  # the trained EMA generator at the moved latents
        torch.testing.assert_close(images, jobs["pggan"].step.generator()(moved).clamp(-1, 1).cpu())
    assert not torch.equal(images, model.generate(5, seed=2))
    walked = model.walk(label, [0.0, s], seed=2, index=3)  # one latent along the axis, as the study's figure
    torch.testing.assert_close(walked, torch.stack([model.generate(4, seed=2)[3], images[3]]))
    default = model.latents(0, 5, seed=2, label=label)  # default strength: the end of the study's walk
    torch.testing.assert_close(default - plain, (model.default_strength * scale * model.axes[label].float()).expand(5, -1),
                               rtol=0, atol=2e-6)


def test_generate_cli_writes_the_label_and_its_images(trained, capsys):
    root, P, _ = trained
    model = load_generator(root / "pggan", device="cpu")
    finding = next(name for name in model.labels if name in P.data.findings)
    out = root / "labelled"
    assert main(["generate", str(root / "pggan"), "--n", "6", "--seed", "1", "--label", finding, "--strength", "1.5",
                 "--out", str(out)]) == 0
    expected = model.generate(6, seed=1, label=finding, strength=1.5)
    files = sorted((out / "images").glob("*.png"))
    np.testing.assert_array_equal(np.stack([read_png(f) for f in files]), np.round((expected[:, 0].numpy() + 1) * 127.5))
    with open(out / "Data_Entry.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {r["Finding Labels"] for r in rows} == {finding}
    back = ChestXray(out, image_size=P.data.image_size, findings=P.data.findings, progress=False)
    assert (back.labels[:, P.data.findings.index(finding)] == 1).all() and back.labels.sum() == 6
    if "Normal" in model.labels:  # the normal axis is written in ChestX-ray14's spelling
        assert main(["generate", str(root / "pggan"), "--n", "2", "--label", "Normal", "--out", str(root / "n")]) == 0
        assert "No Finding" in (root / "n" / "Data_Entry.csv").read_text()


def test_a_label_without_an_axis_is_a_one_line_error(trained, capsys):
    root, _, _ = trained
    model = load_generator(root / "pggan", device="cpu")
    unfitted = [k for k, ok in model.spec["latent_axes"]["fitted"].items() if not ok]
    for label in ["Cardiomegaly", *unfitted]:
        assert main(["generate", str(root / "pggan"), "--n", "2", "--label", label, "--out", str(root / "x")]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"label {label!r} has no latent axis" in err[0]
        assert all(repr(name) in err[0] for name in model.labels)
    assert not (root / "x").exists()  # nothing is written
    with pytest.raises(ValueError, match="give label= as well"):
        model.latents(0, 2, seed=0, strength=1.0)
    assert main(["generate", str(root / "pggan"), "--n", "2", "--out", str(root / "x")]) == 1
    assert "give --label (labels with a latent axis: " in capsys.readouterr().err


def test_the_normal_only_pggan_is_labelled_normal_and_has_no_axes(trained, capsys):
    root, _, _ = trained
    model = load_generator(root / "normal", device="cpu")
    assert model.labels == [] and model.spec["label"] == "No Finding" and "latent_axes" not in model.spec
    assert main(["generate", str(root / "normal"), "--n", "3", "--out", str(root / "normal-set")]) == 0
    assert (root / "normal-set" / "Data_Entry.csv").read_text().count("No Finding") == 3
    assert main(["generate", str(root / "normal"), "--n", "3", "--label", "Nodule", "--out", str(root / "y")]) == 1
    assert "this model has no latent axes" in capsys.readouterr().err


def test_export_needs_the_finished_labeller(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGAN_RUNS_DIR", str(tmp_path / "runs"))
    P = load_params(NB, "smoke")
    run_job(build_job(NB, "pggan", P), runs_dir() / NB / "smoke" / "pggan", progress=False)
    with pytest.raises(RunNotTrainedError, match="multilabel"):
        export_model(NB, "pggan", profile="smoke", out=tmp_path / "m")
    assert not (tmp_path / "m" / "model.json").exists()
