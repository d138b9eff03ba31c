"""Every bad-input case of issue 3: a clear error naming the file and the field, or a logged,
counted skip when ``skip_bad=True`` asks for it. Never a silently smaller dataset."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from medgan.data.base import DataError, subject_key
from medgan.data.brain_ct_mri import BrainCTMRI
from medgan.data.chest_xray import ChestXray
from medgan.data.nifti import read_nifti, write_nifti
from medgan.data.nsclc_radiomics import CLINICAL_CSV, NSCLCRadiomics
from medgan.data.pet_early_delayed import PETEarlyDelayed
from medgan.data.rxrx19a import RxRx19a


# ---------------------------------------------------------------- RxRx19a
def test_rxrx_missing_file_named_in_metadata(phantom_copy):
    root = phantom_copy("cells")
    victim = sorted((root / "images").rglob("*_w3.png"))[0]
    victim.unlink()
    with pytest.raises(DataError, match=rf"{victim.name}: file named in metadata.csv is missing \(channel w3\)"):
        RxRx19a(root, crop_size=32, image_size=32)
    dataset = RxRx19a(root, crop_size=32, image_size=32, skip_bad=True)
    assert dataset.bad_input.count == 1 and victim.stem.rsplit("_w", 1)[0] in dataset.bad_input.skipped[0][0]


def test_rxrx_wrong_channel_count(phantom_copy):
    root = phantom_copy("cells")
    victim = sorted((root / "images").rglob("*_w1.png"))[0]
    gray = np.array(Image.open(victim))
    Image.fromarray(np.stack([gray] * 3, -1)).save(victim)  # an RGB file where one stain is expected
    with pytest.raises(DataError, match=rf"{victim.name}: wrong channel count"):
        RxRx19a(root, crop_size=32, image_size=32)


def test_rxrx_truncated_png_and_bad_metadata(phantom_copy):
    root = phantom_copy("cells")
    victim = sorted((root / "images").rglob("*_w2.png"))[0]
    victim.write_bytes(victim.read_bytes()[:60])
    with pytest.raises(DataError, match=rf"{victim.name}: unreadable or truncated image"):
        RxRx19a(root, crop_size=32, image_size=32)
    text = (root / "metadata.csv").read_text().replace("Mock", "Mocked")
    (root / "metadata.csv").write_text(text)
    with pytest.raises(DataError, match=r"metadata.csv: disease_condition has unknown value"):
        RxRx19a(root)


def test_rxrx_treatment_matching_is_explicit_and_reported(make_phantom):
    root = make_phantom("cells")
    # without the phantom's spelling "pacritinib"? matching ignores case, so it matches; drop the
    # alias list for Remdesivir to its bare name and the "(GS-5734)" spelling becomes a near miss
    aliases = {"Remdesivir": ["Remdesivir"], "Aloxistatin": ["Aloxistatin (E-64d)"], "Pacritinib": ["Pacritinib"]}
    with pytest.raises(DataError, match="no sites for domain 'Active\\+Remdesivir'"):
        RxRx19a(root, treatment_aliases=aliases)
    from medgan.data.rxrx19a import match_treatments
    report = match_treatments(["Remdesivir (GS-5734)", "pacritinib", "GSK-000123", ""], aliases)
    assert report["near_misses"] == {"Remdesivir": ["Remdesivir (GS-5734)"]}
    assert report["matched"]["Pacritinib"] == ["pacritinib"] and "GSK-000123" not in report["mapping"]


# ---------------------------------------------------------------- NSCLC-Radiomics
def test_nsclc_missing_clinical_csv_and_empty_folder(phantom_copy, tmp_path):
    root = phantom_copy("chest_ct")
    (root / CLINICAL_CSV).unlink()
    with pytest.raises(DataError, match=rf"{CLINICAL_CSV}: clinical CSV not found"):
        NSCLCRadiomics(root)
    empty = tmp_path / "empty"
    (empty / "NSCLC-Radiomics").mkdir(parents=True)
    shutil.copy(phantom_copy("chest_ct") / CLINICAL_CSV, empty / CLINICAL_CSV)
    with pytest.raises(DataError, match="no CT series"):
        NSCLCRadiomics(empty)


def test_nsclc_truncated_slice_error_and_skip(phantom_copy):
    root = phantom_copy("chest_ct")
    victim = sorted((root / "NSCLC-Radiomics" / "LUNG1-002").rglob("*.dcm"))[2]
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(DataError, match=rf"{victim.name}: PixelData (unreadable or )?truncated"):
        NSCLCRadiomics(root, crop_size=None, image_size=32)
    # skipping the slice leaves a gap in the positions -> the series is inconsistent -> patient skipped,
    # counted once, its message naming the truncated slice
    dataset = NSCLCRadiomics(root, crop_size=None, image_size=32, skip_bad=True)
    full = NSCLCRadiomics(phantom_copy("chest_ct"), crop_size=None, image_size=32)
    reasons = " ".join(r for _, r in dataset.bad_input.skipped)
    assert dataset.bad_input.count == 1 and "inconsistent slice spacing" in reasons and victim.name in reasons
    assert len(full) - len(dataset) == 6  # exactly one smoke patient (6 slices) gone, and counted


def test_nsclc_bad_clinical_field(phantom_copy):
    root = phantom_copy("chest_ct")
    text = (root / CLINICAL_CSV).read_text().splitlines()
    header = text[0].split(",")
    row = text[1].split(",")
    row[header.index("deadstatus.event")] = "maybe"
    (root / CLINICAL_CSV).write_text("\n".join([text[0], ",".join(row), *text[2:]]) + "\n")
    with pytest.raises(DataError, match=r"deadstatus.event must be 0/1"):
        NSCLCRadiomics(root)


# ---------------------------------------------------------------- PET
def test_pet_unpaired_patient(phantom_copy):
    root = phantom_copy("pet")
    patient = sorted(p for p in root.iterdir() if p.name.startswith("PET"))[1]
    shutil.rmtree(patient / "delayed")
    with pytest.raises(DataError, match=rf"{subject_key(patient.name)}: unpaired PET patient: no delayed folder"):
        PETEarlyDelayed(root)
    dataset = PETEarlyDelayed(root, skip_bad=True)
    assert dataset.bad_input.count == 1 and len(dataset.subjects) == 3


def test_pet_misaligned_frames(phantom_copy):
    root = phantom_copy("pet", file_format="nifti")
    patient = sorted(p for p in root.iterdir() if p.name.startswith("PET"))[0]
    values, spacing = read_nifti(patient / "delayed" / "PET.nii.gz")
    write_nifti(patient / "delayed" / "PET.nii.gz", values[1:], spacing)
    with pytest.raises(DataError, match=rf"{subject_key(patient.name)}: early .* and delayed .* differ in shape"):
        PETEarlyDelayed(root)


def test_pet_nan_voxels_and_sidecar_fields(phantom_copy):
    root = phantom_copy("pet", file_format="nifti")
    patients = sorted(p for p in root.iterdir() if p.name.startswith("PET"))
    values, spacing = read_nifti(patients[0] / "early" / "PET.nii.gz")
    values[2, 3, 4] = np.nan
    write_nifti(patients[0] / "early" / "PET.nii.gz", values, spacing)
    with pytest.raises(DataError, match=r"PET.nii.gz: voxel data has 1 NaN/Inf"):
        PETEarlyDelayed(root)
    shutil.rmtree(patients[0])
    sidecar = patients[1] / "delayed" / "PET.json"
    meta = json.loads(sidecar.read_text())
    del meta["BodyWeight"]
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"PET.json: BodyWeight missing"):
        PETEarlyDelayed(root)


def test_pet_nifti_sidecar_suv_matches_hand(phantom_copy):
    root = phantom_copy("pet", file_format="nifti")
    patient = sorted(p for p in root.iterdir() if p.name.startswith("PET"))[0]
    meta = json.loads((patient / "early" / "PET.json").read_text())
    bq, _ = read_nifti(patient / "early" / "PET.nii.gz")
    hand = bq * meta["BodyWeight"] * 1000 / (meta["InjectedRadioactivity"] * 1e6 * 2 ** (-meta["ScanStart"] / 6586.2))
    dataset = PETEarlyDelayed(root, suv_max=20.0)
    item = next(r for r in dataset.records if r["meta"]["slice_index"] == 5 and r["subject"] == dataset.records[0]["subject"])
    np.testing.assert_allclose((item["image"][0] + 1) / 2 * 20.0, np.clip(hand[5], 0, 20), rtol=1e-4, atol=1e-4)


def test_pet_empty_folder(tmp_path):
    with pytest.raises(DataError, match="empty folder"):
        PETEarlyDelayed(tmp_path)
    (tmp_path / "P1" / "early").mkdir(parents=True)
    (tmp_path / "P1" / "delayed").mkdir(parents=True)
    with pytest.raises(DataError, match=r"early: no PET.nii.gz and no DICOM series"):
        PETEarlyDelayed(tmp_path)


# ---------------------------------------------------------------- brain
def test_brain_empty_folder_and_truncated_png(phantom_copy):
    root = phantom_copy("brain")
    train_b = root / "Dataset" / "images" / "trainB"
    victim = sorted(train_b.iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:50])
    with pytest.raises(DataError, match=rf"{victim.name}: unreadable or truncated image"):
        BrainCTMRI(root, domain="B")
    dataset = BrainCTMRI(root, domain="B", skip_bad=True)
    assert dataset.bad_input.count == 1 and len(dataset) == len(list(train_b.iterdir())) - 1
    for f in (root / "Dataset" / "images" / "trainA").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"trainA: empty folder"):
        BrainCTMRI(root, domain="A")


# ---------------------------------------------------------------- chest X-ray
def test_cxr_missing_image_and_missing_column(phantom_copy):
    root = phantom_copy("cxr")
    victim = sorted((root / "images").iterdir())[3]
    victim.unlink()
    with pytest.raises(DataError, match=rf"{victim.name}: file named in Data_Entry.csv \(Image Index\) is missing"):
        ChestXray(root)
    assert ChestXray(root, skip_bad=True).bad_input.count == 1
    text = (root / "Data_Entry.csv").read_text().replace("Finding Labels", "Findings")
    (root / "Data_Entry.csv").write_text(text)
    with pytest.raises(DataError, match=r"Data_Entry.csv: missing column\(s\) \['Finding Labels'\]"):
        ChestXray(root)


def test_nifti_roundtrip_and_truncation(tmp_path):
    volume = np.random.default_rng(0).random((3, 5, 7)).astype(np.float32)
    path = write_nifti(tmp_path / "v.nii.gz", volume, (5.0, 2.0, 1.5))
    back, spacing = read_nifti(path)
    np.testing.assert_allclose(back, volume)
    assert spacing == (5.0, 2.0, 1.5)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=r"v.nii.gz: unreadable or truncated NIfTI"):
        read_nifti(path)


def test_pet_dicom_pairs_must_share_patient_and_positions(phantom_copy):
    import pydicom
    root = phantom_copy("pet")
    patients = sorted(p for p in root.iterdir() if p.name.startswith("PET"))
    for path in (patients[0] / "delayed").glob("*.dcm"):  # delayed frame shifted by 10 mm
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) + 10.0]
        ds.save_as(path)
    with pytest.raises(DataError, match=rf"{subject_key(patients[0].name)}: early and delayed slice positions"):
        PETEarlyDelayed(root)
    shutil.rmtree(patients[0])
    for path in (patients[1] / "delayed").glob("*.dcm"):  # delayed frame of someone else
        ds = pydicom.dcmread(path)
        ds.PatientID = "SOMEONE-ELSE"
        ds.save_as(path)
    with pytest.raises(DataError, match=rf"{subject_key(patients[1].name)}: early and delayed series belong to different patients"):
        PETEarlyDelayed(root)


# ---------------------------------------------------------------- brain: PNG modes (issue 15, item 8)
def test_brain_palette_png_is_decoded_and_transparent_png_refused(phantom_copy):
    root = phantom_copy("brain")
    train_a = root / "Dataset" / "images" / "trainA"
    full = BrainCTMRI(root, domain="A")
    victim = sorted(train_a.iterdir())[1]
    levels = np.array(Image.open(victim).convert("L"))
    image = Image.fromarray(255 - levels).convert("P")  # indices = 255 - level, decoded back by the palette
    image.putpalette(np.repeat(np.arange(256)[::-1], 3).astype(np.uint8).tolist())
    image.save(victim)
    assert Image.open(victim).mode == "P"
    assert BrainCTMRI(root, domain="A").fingerprint() == full.fingerprint()
    alpha = np.full(levels.shape, 255, np.uint8)
    alpha[:2] = 0
    Image.fromarray(np.stack([levels] * 3 + [alpha], -1), "RGBA").save(victim)
    with pytest.raises(DataError, match=rf"{victim.name}: image mode 'RGBA' has {2 * levels.shape[1]} transparent"):
        BrainCTMRI(root, domain="A")
    skipped = BrainCTMRI(root, domain="A", skip_bad=True)
    assert skipped.bad_input.count == 1 and len(skipped) == len(full) - 1
