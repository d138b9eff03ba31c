"""Export -> load_generator -> generate/translate -> medgan's readers, for one model of each family,
trained on the smoke profile through the study's own job."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medgan.config import load_params, runs_dir
from medgan.data.dicom import load_series
from medgan.data.image_files import Intensity, read_image_file, write_image_file
from medgan.data.nifti import read_nifti
from medgan.data.synthetic import generate_dataset, translate_folder
from medgan.models.portable import load_generator
from medgan.studies import build_job, run_job
from medgan.studies.export import export_model

pytestmark = pytest.mark.slow


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGAN_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path


def _trained_export(notebook: str, model: str, out):
    job = build_job(notebook, model, load_params(notebook, "smoke"))
    run_job(job, runs_dir() / notebook / "smoke" / model, progress=False)
    export_model(notebook, model, profile="smoke", out=out)
    return job, load_generator(out, device="cpu")


def test_pggan_writes_ct_dicom_and_nifti_that_read_back(runs):
    job, model = _trained_export("02_ct_fidelity_diversity", "pggan", runs / "pggan")
    assert model.kind == "unconditional" and model.spec["intensity"]["from data parameters"]["window_width_hu"]
    intensity = Intensity.from_spec(model.spec)
    assert intensity.unit == "HU" and intensity.modality == "CT"
    images = model.generate(4, seed=1)
    with torch.no_grad():  # the exported weights are the trained EMA generator's
        torch.testing.assert_close(images, job.step.generator()(model.latents(0, 4, seed=1)).cpu())
    generate_dataset(model, runs / "dicom", n=4, seed=1, fmt="dicom", progress=False)
    volume = load_series(sorted((runs / "dicom").glob("*.dcm")))
    assert volume.modality == "CT" and volume.array.shape == (4, *images.shape[-2:])
    hu = intensity.to_physical(images[:, 0].numpy())
    np.testing.assert_allclose(volume.array, hu, atol=(intensity.high - intensity.low) / 4095)
    generate_dataset(model, runs / "nifti", n=2, seed=1, fmt="nifti", progress=False)
    array, _ = read_nifti(runs / "nifti" / "synthetic-000001.nii.gz")
    np.testing.assert_allclose(array[0], hu[1], atol=1e-2)


def test_cyclegan_translates_a_png_folder_both_ways(runs):
    job, model = _trained_export("03_brain_ct_mri_cyclegan", "resnet", runs / "cyclegan")
    assert model.kind == "translation" and set(model.nets) == {"A_to_B", "B_to_A"}
    ct = torch.stack([job.dataset[i]["A"] for i in range(3)])
    for i, image in enumerate(ct.numpy()):
        write_image_file(runs / "ct" / f"slice {i}.png", image, "png", Intensity())
    translate_folder(model, runs / "ct", runs / "mri", direction="A_to_B", progress=False)
    for i in range(3):
        source = torch.from_numpy(read_image_file(runs / "ct" / f"slice {i}.png", "png", Intensity()))[None]
        written = read_image_file(runs / "mri" / f"slice {i}.png", "png", Intensity())
        expected = model.translate(source, direction="A_to_B")[0].numpy()
        np.testing.assert_allclose(written, np.round((expected + 1) * 127.5) / 127.5 - 1, atol=1e-6)


def test_pix2pix_translates_pet_dicom_into_a_series(runs):
    job, model = _trained_export("04_pet_early_to_delayed", "pix2pix", runs / "pix2pix")
    intensity = Intensity.from_spec(model.spec)
    assert intensity.unit == "SUV"
    early = torch.stack([job.dataset[i]["image"] for i in range(3)])
    for i, image in enumerate(early.numpy()):
        write_image_file(runs / "early" / f"IM{i:04d}.dcm", image, "dicom", intensity, index=i,
                         series_uid="1.2.3.4", study_uid="1.2.3", description="test input")
    translate_folder(model, runs / "early", runs / "delayed", progress=False)
    volume = load_series(sorted((runs / "delayed").glob("*.dcm")), apply_suv=False)
    assert volume.array.shape == (3, *early.shape[-2:])
    expected = intensity.to_physical(model.translate(early)[:, 0].numpy())
    np.testing.assert_allclose(volume.array, expected, atol=2 * (intensity.high - intensity.low) / 4095)


def test_stargan_v2_translates_five_channel_sites_to_a_domain(runs):
    job, model = _trained_export("01_rxrx19a_stargan_v2", "stargan_v2", runs / "stargan")
    assert model.kind == "style_transfer" and model.spec["domains"]
    cells = torch.stack([job.dataset[i]["image"] for i in range(2)])
    for i, image in enumerate(cells.numpy()):
        write_image_file(runs / "sites" / f"B02_s{i + 1}.png", image, "png", Intensity())
    domain = model.spec["domains"][-1]
    translate_folder(model, runs / "sites", runs / "styled", domain=domain, seed=0, progress=False)
    written = sorted(p.name for p in (runs / "styled").iterdir())
    assert written == sorted(p.name for p in (runs / "sites").iterdir())  # B02_s1_w1.png ... kept
    back = read_image_file(runs / "styled" / "B02_s1_w1.png", "png", Intensity())
    assert back.shape == tuple(cells.shape[1:])
