"""Trained models outside the notebooks: export, load_generator, generate, translate and score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import medgan
from medgan.cli import main
from medgan.config import load_params, runs_dir
from medgan.data.base import DataError
from medgan.models.dcgan import DCGANGenerator
from medgan.models.image_to_image import define_generator
from medgan.models.portable import GeneratorModel
from medgan.train.cyclegan import translate as study_translate
from medgan.data.dicom import load_series
from medgan.data.image_files import Intensity, read_image_file
from medgan.data.nifti import read_nifti
from medgan.data.png_folders import read_png, write_png
from medgan.data.synthetic import generate_dataset, translate_folder
from medgan.metrics import frechet_distance, kernel_inception_distance
from medgan.metrics.features import DomainCNN, WeightsNotFoundError, extract_features
from medgan.metrics.folders import score_folders
from medgan.models.image_to_image import ResnetGenerator
from medgan.models.portable import load_generator, save_generator
from medgan.models.stargan_v2 import MappingNetwork, StarGANv2Config, build_stargan_v2
from medgan.studies import build_job, run_job
from medgan.train.engine import RunNotTrainedError


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGAN_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path


def _train_quickstart():
    params = load_params("00_quickstart", "smoke")
    job = build_job("00_quickstart", "dcgan", params)
    run_job(job, runs_dir() / "00_quickstart" / "smoke" / "dcgan", progress=False)
    return job.step


def test_export_needs_a_trained_model(runs, capsys):
    with pytest.raises(RunNotTrainedError, match="no finished run"):
        medgan.studies.export.export_model("00_quickstart", "dcgan", profile="smoke", out=runs / "m")
    assert main(["export", "00_quickstart", "dcgan", "--profile", "smoke", "--out", str(runs / "m")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medgan export: RunNotTrainedError")
    assert not (runs / "m" / "model.json").exists()


def test_export_load_generate_round_trip(runs, capsys):
    step = _train_quickstart()
    out = runs / "dcgan"
    assert main(["export", "00_quickstart", "dcgan", "--profile", "smoke", "--out", str(out)]) == 0
    spec = json.loads((out / "model.json").read_text())
    assert spec["kind"] == "unconditional" and spec["provenance"]["steps"] == 40
    assert spec["image"] == {"channels": 1, "size": 32} and spec["latent_dim"] == 32
    assert "research" in (out / "model_card.md").read_text().lower()
    model = medgan.load_generator(out, device="cpu")
    # the exported generator is the trained one: same latents, same images
    z = model.latents(0, 6, seed=3)
    with torch.no_grad():
        expected = step.generator().cpu()(z).clamp(-1, 1)
    torch.testing.assert_close(model.generate(6, seed=3), expected, rtol=0, atol=0)
    # image i of a seed does not depend on the batch size, and seeds differ
    torch.testing.assert_close(model.generate(7, seed=3, batch_size=2), model.generate(7, seed=3, batch_size=5))
    assert not torch.equal(model.generate(2, seed=3), model.generate(2, seed=4))
    with pytest.raises(TypeError, match="unconditional model; use generate"):
        model.translate(expected)

    images = model.generate(10, seed=0)
    for fmt in ("png", "dicom", "nifti"):
        folder = runs / f"synthetic-{fmt}"
        assert main(["generate", str(out), "--n", "10", "--seed", "0", "--format", fmt, "--out", str(folder)]) == 0
        files = sorted(p for p in folder.iterdir() if p.is_file())
        assert len(files) == 10 and files[0].name.startswith("synthetic-000000")
        if fmt == "png":
            back = np.stack([read_png(f) for f in files])
            np.testing.assert_array_equal(back, np.round((images[:, 0].numpy() + 1) * 127.5))
        elif fmt == "dicom":
            volume = load_series(files)  # medgan's series reader reads the set back as one series
            assert volume.array.shape == (10, 32, 32)
            np.testing.assert_allclose(volume.array, (images[:, 0].numpy() + 1) * 127.5, atol=255 / 4095)
            header = __import__("pydicom").dcmread(files[0])
            assert list(header.ImageType) == ["DERIVED", "SECONDARY"] and "SYNTHETIC" in header.SeriesDescription
            assert header.PatientID == "SYNTHETIC"
        else:
            array, _ = read_nifti(files[3])
            np.testing.assert_allclose(array[0], (images[3, 0].numpy() + 1) * 127.5, atol=1e-3)
    # resume: only the missing files are written, and they are the same images
    folder = runs / "synthetic-png"
    before = (folder / "synthetic-000004.png").read_bytes()
    for i in (4, 5, 9):
        (folder / f"synthetic-00000{i}.png").unlink()
    counts = generate_dataset(model, folder, n=10, seed=0, fmt="png", batch_size=3, progress=False)
    assert counts == {"written": 3, "skipped": 7, "folder": str(folder)}
    assert (folder / "synthetic-000004.png").read_bytes() == before


def test_translation_models_keep_names_and_formats(tmp_path):
    torch.manual_seed(0)
    net = ResnetGenerator(1, 1, width=4, n_blocks=1)
    save_generator(tmp_path / "m", {"A_to_B": net, "B_to_A": ResnetGenerator(1, 1, width=4, n_blocks=1)},
                   {"kind": "translation", "image": {"channels": 1, "size": 16},
                    "intensity": {"from data parameters": {"window_center_hu": 40, "window_width_hu": 400}}})
    model = load_generator(tmp_path / "m", device="cpu")
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model.translate(x), net.eval()(x).clamp(-1, 1))
    source = tmp_path / "in" / "sub"
    source.mkdir(parents=True)
    for i in range(3):
        write_png(source / f"odd name {i}.png", np.round((x[i, 0].numpy() + 1) * 127.5).astype(np.uint8))
    counts = translate_folder(model, tmp_path / "in", tmp_path / "out", progress=False)
    assert counts["written"] == 3 and counts["format"] == "png"
    result = read_image_file(tmp_path / "out" / "sub" / "odd name 1.png", "png", Intensity())
    levels_in = torch.from_numpy(read_image_file(source / "odd name 1.png", "png", Intensity()))[None]
    np.testing.assert_allclose(result[0], np.round((model.translate(levels_in)[0, 0].numpy() + 1) * 127.5) / 127.5 - 1,
                               atol=1e-6)
    with pytest.raises(ValueError, match="inside the input folder"):
        translate_folder(model, tmp_path / "in", tmp_path / "in" / "out", progress=False)


def test_style_transfer_model_uses_the_mapping_network(tmp_path):
    torch.manual_seed(0)
    config = StarGANv2Config(image_size=16, channels=1, num_domains=3, latent_dim=4, style_dim=8, mapping_hidden=16,
                             max_width=32)
    nets = build_stargan_v2(config)
    save_generator(tmp_path / "m", {"generator": nets["generator"], "mapping_network": nets["mapping_network"]},
                   {"kind": "style_transfer", "latent_dim": 4, "num_domains": 3, "domains": ["mock", "drug", "virus"],
                    "image": {"channels": 1, "size": 16}})
    model = load_generator(tmp_path / "m", device="cpu")
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    z = model.latents(0, 2, seed=5)
    with torch.no_grad():
        style = nets["mapping_network"].eval()(z, torch.tensor([2, 2]))
        expected = nets["generator"].eval()(x, style).clamp(-1, 1)
    torch.testing.assert_close(model.translate(x, domain="virus", seed=5), expected)
    with pytest.raises(ValueError, match="needs domain"):
        model.translate(x)


def _png_folder(folder: Path, images: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        write_png(folder / f"{i:03d}.png", image)


def test_score_equals_the_metric_functions_and_caches_the_real_set(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (40, 16, 16), dtype=np.uint8)
    fake = np.clip(real.astype(int) + rng.integers(-40, 40, real.shape), 0, 255).astype(np.uint8)[::-1]
    _png_folder(tmp_path / "real", real)
    _png_folder(tmp_path / "fake", fake)
    torch.manual_seed(0)
    cnn = DomainCNN(in_channels=1, num_classes=2, feature_dim=8, width=4)
    weights = cnn.save(tmp_path / "cnn.pt")
    scores = score_folders(tmp_path / "real", tmp_path / "fake", metrics=["fid", "kid", "pr", "dc"],
                           extractor="domain_cnn", weights=weights, cache_dir=tmp_path / "cache", n_boot=20)
    as_model = lambda a: torch.from_numpy(a[:, None].astype(np.float32) / 127.5 - 1)
    real_f, _ = extract_features(cnn, as_model(real))
    fake_f, _ = extract_features(cnn, as_model(fake))
    assert scores["metrics"]["fid"]["value"] == pytest.approx(frechet_distance(real_f, fake_f), rel=1e-6)
    assert scores["metrics"]["kid"]["value"] == pytest.approx(
        kernel_inception_distance(real_f, fake_f, subset_size=40)[0], rel=1e-6)
    assert scores["metrics"]["fid"]["ci_low"] <= scores["metrics"]["fid"]["ci_high"]
    assert set(scores["metrics"]["pr"]) == {"precision", "recall"}
    # a second synthetic set: the real features come from the cache, no real file is read
    reads = []
    real_read = medgan.metrics.folders.read_image_file
    monkeypatch.setattr(medgan.metrics.folders, "read_image_file", lambda p, *a: reads.append(p) or real_read(p, *a))
    score_folders(tmp_path / "real", tmp_path / "fake", metrics=["fid"], extractor="domain_cnn", weights=weights,
                  cache_dir=tmp_path / "cache")
    assert reads and all("fake" in str(p) for p in reads)


def test_score_bad_input_is_named(tmp_path):
    torch.manual_seed(0)
    weights = DomainCNN(in_channels=1, num_classes=2, feature_dim=8, width=4).save(tmp_path / "cnn.pt")
    _png_folder(tmp_path / "real", np.zeros((3, 8, 8), np.uint8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no PNG, DICOM or NIfTI images"):
        score_folders(tmp_path / "real", tmp_path / "empty", extractor="domain_cnn", weights=weights)
    _png_folder(tmp_path / "mixed", np.zeros((2, 8, 8), np.uint8))
    write_png(tmp_path / "mixed" / "zz.png", np.zeros((9, 9), np.uint8))
    with pytest.raises(DataError, match=r"zz\.png: image is \[1, 9, 9\]"):
        score_folders(tmp_path / "real", tmp_path / "mixed", extractor="domain_cnn", weights=weights)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match=r"a\.png"):
        score_folders(tmp_path / "real", tmp_path / "broken", extractor="domain_cnn", weights=weights)
    with pytest.raises(WeightsNotFoundError, match="inception_v3 needs --weights PATH: a local copy"):
        score_folders(tmp_path / "real", tmp_path / "real")


def test_a_train_mode_model_translates_like_the_study_at_any_batching():
    """An exported model in the reference's inference mode (batch statistics, seeded dropout) gives
    what the study's scorer gives, whatever batches the caller passes, and never changes its weights."""
    torch.manual_seed(0)
    net = define_generator("unet_64", 1, 1, width=4, norm="batch", dropout=True)
    net.train()
    net(torch.randn(8, 1, 64, 64))  # running statistics that differ from any test batch's
    reference = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(6, 1, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    expected = study_translate(net, x, batch_size=1, mode="train", seed=3).clamp(-1, 1)
    model = GeneratorModel({"A_to_B": net}, {"kind": "translation", "inference_mode": "train",
                                             "inference_batch_size": 1})
    whole = model.translate(x, seed=3)
    pieces = torch.cat([model.translate(x[i:i + 2], seed=3, start=i) for i in range(0, 6, 2)])
    assert torch.equal(whole, expected) and torch.equal(pieces, expected)
    assert all(torch.equal(v, reference[k]) for k, v in net.state_dict().items())
    evaluated = GeneratorModel({"A_to_B": net}, {"kind": "translation"}).translate(x)
    assert not torch.allclose(evaluated, expected, atol=1e-3)


def test_a_train_mode_dcgan_generates_the_same_images_at_any_batch_size():
    """Batch-statistics sampling (the DCGAN example's) in chunks of inference_batch_size: the images do not
    depend on the caller's batch size, and differ from running-statistics sampling."""
    torch.manual_seed(0)
    G = DCGANGenerator(z_dim=8, image_size=16, channels=1, width=8)
    G.train()
    G(torch.randn(16, 8))  # move the running statistics away from their initial values
    spec = {"kind": "unconditional", "latent_dim": 8, "inference_mode": "train", "inference_batch_size": 4}
    model = GeneratorModel({"generator": G}, spec)
    a = model.generate(10, seed=1, batch_size=3)
    b = model.generate(10, seed=1, batch_size=8)
    assert torch.equal(a, b)
    assert not torch.allclose(a, GeneratorModel({"generator": G}, {**spec, "inference_mode": "eval"})
                              .generate(10, seed=1), atol=1e-3)
