"""Each phantom renders in its real format and loads back through the real loader."""

import json
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from medgan.data.brain_ct_mri import BrainCTMRI
from medgan.data.chest_xray import ChestXray
from medgan.data.nsclc_radiomics import NSCLCRadiomics
from medgan.data.pet_early_delayed import PETEarlyDelayed
from medgan.data.phantoms import MANIFEST, NAMES, ensure
from medgan.data.rxrx19a import RxRx19a


def _check_items(dataset, channels):
    batch = next(iter(DataLoader(dataset, batch_size=4, shuffle=False)))  # default collate must work
    image = batch["image"]
    assert image.dtype == torch.float32 and image.shape[1] == channels
    assert float(image.min()) >= -1.0 and float(image.max()) <= 1.0
    assert all(s.startswith("s-") for s in batch["subject"])
    keys = {frozenset(dataset[i]["meta"]) for i in range(len(dataset))}
    assert len(keys) == 1
    return batch


def test_chest_ct_phantom_loads(make_phantom):
    root = make_phantom("chest_ct")
    assert sorted(p.name for p in (root / "NSCLC-Radiomics").iterdir())[0] == "LUNG1-001"
    dataset = NSCLCRadiomics(root, crop_size=48, image_size=32, with_masks=True)
    batch = _check_items(dataset, 1)
    assert batch["mask"].shape[1:] == (1, 32, 32)
    assert {r["label"] for r in dataset.records} <= {0, 1}
    assert sum(r["mask"].max() > 0 for r in dataset.records) > 0  # tumours visible in the crop
    # lungs are dark and the body wall brighter in the lung window
    assert dataset.records[0]["image"].min() < -0.5 < dataset.records[0]["image"].max()


def test_brain_phantom_unpaired_train_and_truth(make_phantom):
    root = make_phantom("brain")
    a, b = BrainCTMRI(root, domain="A", image_size=32), BrainCTMRI(root, domain="B", image_size=32)
    _check_items(a, 1)
    assert not set(a.subjects) & set(b.subjects)  # different subjects in trainA and trainB
    test_a = BrainCTMRI(root, domain="A", part="test", image_size=32, with_truth=True)
    test_b = BrainCTMRI(root, domain="B", part="test", image_size=32)
    assert test_a.subjects == test_b.subjects
    # the truth of test CT image i is exactly test MRI image i (same file name)
    for i in range(len(test_a)):
        assert torch.equal(test_a[i]["target"], test_b[i]["image"])
    assert {r["label"] for r in a.records} == {0} and {r["label"] for r in b.records} == {1}


def test_pet_phantom_pairs_are_aligned(make_phantom):
    root = make_phantom("pet")
    dataset = PETEarlyDelayed(root, suv_max=10.0)
    batch = _check_items(dataset, 1)
    assert batch["target"].shape == batch["image"].shape
    for i in range(len(dataset) - 1):
        item = dataset[i]
        if item["subject"] == dataset[i + 1]["subject"]:
            assert dataset[i + 1]["meta"]["z_mm"] > item["meta"]["z_mm"]
    # bladder fills: the hottest voxel rises from early to delayed
    early = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    delayed = torch.stack([dataset[i]["target"] for i in range(len(dataset))])
    assert float((delayed > 0.9).float().mean()) > float((early > 0.9).float().mean())


def test_pet_phantom_nifti_format_loads_same_suv(make_phantom):
    dicom = PETEarlyDelayed(make_phantom("pet"))
    nifti = PETEarlyDelayed(make_phantom("pet", file_format="nifti"))
    assert len(dicom) == len(nifti)
    # same seed -> same activity; DICOM stores it quantised per slice, so allow 1e-3 of range
    diff = (dicom[5]["target"] - nifti[5]["target"]).abs().max()
    assert float(diff) < 2e-3


def test_cells_phantom_truth_matches_rendered_domain(make_phantom):
    root = make_phantom("cells")
    dataset = RxRx19a(root, crop_size=32, image_size=32, with_truth=True)
    batch = _check_items(dataset, 5)
    assert batch["truth"].shape[1:] == (4, 5, 32, 32)
    assert sorted({r["label"] for r in dataset.records}) == [0, 1, 2, 3]
    # the phantom writes untreated and 10 uM wells; truth is rendered at 10 uM, so the truth for
    # an item's own domain is the item itself
    for record in dataset.records:
        np.testing.assert_allclose(record["truth"][record["label"]], record["image"], atol=1e-6)
    # and infection changes the field: Active differs from Active+Remdesivir
    r = dataset.records[0]
    assert np.abs(r["truth"][0] - r["truth"][3]).mean() > 0.01


def test_cxr_phantom_loads_with_masks(make_phantom):
    root = make_phantom("cxr")
    dataset = ChestXray(root, image_size=32, with_masks=True)
    batch = _check_items(dataset, 1)
    assert batch["label"].shape[1:] == (5,) and batch["mask"].shape[1:] == (10, 32, 32)
    for record in dataset.records:  # labelled trained findings have a non-empty mask
        for k in np.flatnonzero(record["label"]):
            assert record["mask"][k].sum() > 0


def test_ensure_caches_and_is_atomic(phantom_parent, monkeypatch, tmp_path):
    first = ensure("brain", root=tmp_path, n_train_subjects=2, n_test_subjects=1, slices_per_subject=1, image_size=16)
    manifest = json.loads((first / MANIFEST).read_text())
    assert manifest["options"]["image_size"] == 16
    stamp = os.stat(first / MANIFEST).st_mtime_ns
    again = ensure("brain", root=tmp_path, n_train_subjects=2, n_test_subjects=1, slices_per_subject=1, image_size=16)
    assert again == first and os.stat(first / MANIFEST).st_mtime_ns == stamp

    import medgan.data.phantoms.brain as brain_module

    def crash(folder, **options):
        (folder / "Dataset").mkdir(parents=True)
        raise RuntimeError("disk full")

    monkeypatch.setattr(brain_module, "generate", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure("brain", root=tmp_path, image_size=24)
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # nothing half-written left
    with pytest.raises(ValueError, match="unknown option"):
        ensure("brain", root=tmp_path, n_subjectz=3)
    with pytest.raises(ValueError, match="unknown phantom"):
        ensure("liver", root=tmp_path)


def test_every_phantom_is_covered():
    assert set(NAMES) == {"cells", "chest_ct", "brain", "pet", "cxr"}


def test_pet_phantom_suv_chain_conserves_activity(make_phantom):
    """Loaded SUV (tags -> decay -> dose -> weight) sums to the truth's noise-free SUV.

    Blur and Poisson noise keep the expected total, so a wrong decay time, dose or weight
    (each changes SUV by 10-100 %) would fail this 3 % check.
    """
    from medgan.data.base import subject_key
    from medgan.data.nifti import read_nifti
    root = make_phantom("pet")
    dataset = PETEarlyDelayed(root, suv_max=1000.0)  # a wide window so nothing clips
    for patient in sorted(p for p in root.iterdir() if p.name.startswith("PET")):
        slices = [r for r in dataset.records if r["subject"] == subject_key(patient.name)]  # phantom PatientID = folder
        assert slices
        for key, phase in (("image", "early"), ("target", "delayed")):
            truth, _ = read_nifti(root / "truth" / patient.name / f"{phase}_true_suv.nii.gz")
            loaded = sum(float(((r[key] + 1) / 2 * 1000.0).sum()) for r in slices)
            assert abs(truth.sum() - loaded) / truth.sum() < 0.03


def test_cells_crops_centred_on_nuclei(make_phantom):
    root = make_phantom("cells", field_size=96)
    tiles = RxRx19a(root, crop_size=32, image_size=32)
    cells = RxRx19a(root, crop_size=32, image_size=32, crop_mode="cells", max_cells_per_site=20)
    assert len(cells) >= 4 and len(tiles) == 4 * 9  # every site gives cell crops; 3x3 tiles per site
    centre = np.stack([r["image"][0, 14:18, 14:18].mean() for r in cells.records])
    corner = np.stack([r["image"][0, :4, :4].mean() for r in cells.records])
    assert np.mean(centre > corner) > 0.9  # Hoechst bright at the crop centre: a nucleus


def test_preview_figures_draw(make_phantom):
    import matplotlib
    matplotlib.use("Agg")
    from medgan.data.phantoms.preview import preview_figure
    for name in ("cells", "chest_ct", "brain", "pet", "cxr"):
        figure = preview_figure(name, make_phantom(name), n_samples=2)
        assert len(figure.axes) >= 2
        matplotlib.pyplot.close(figure)


@pytest.mark.parametrize("name", ["chest_ct", "cells"])
def test_phantoms_are_reproducible_byte_for_byte(name, tmp_path):
    import hashlib

    from medgan.data.phantoms import generator

    def digest(folder):
        return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}

    first = ensure(name, root=tmp_path / "a", **generator(name).SMOKE)
    second = ensure(name, root=tmp_path / "b", **generator(name).SMOKE)
    assert first.name == second.name and digest(first) == digest(second)
