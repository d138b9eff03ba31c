"""Issue 15, items 1-2 end to end: a real-layout CT dataset whose patient folder is an MRN, with
name, ID and birth date in the DICOM headers and one broken file, rendered through the report
runner with ``skip_bad``. No written file (reports, index, run folders, work dir) holds any of
them, nor the absolute data root, nor the site salt."""

import shutil
from pathlib import Path

import pydicom
import pytest

from medgan.data.phantoms import ensure, profile_options
from medgan.reports.runner import find_notebooks, render_notebook

MRN_FOLDER = "MRN-0047112"
PATIENT_ID = "0047112"
PATIENT_NAME = "Doe^Jane^Secretperson"
BIRTH_DATE = "19470312"


def _hospital_export(tmp_path: Path) -> Path:
    """The smoke CT phantom as a site would export it: no phantom manifest, no truth, an MRN folder."""
    phantom = ensure("chest_ct", root=tmp_path / "gen", **profile_options("chest_ct", "smoke"))
    root = tmp_path / "hospital export"  # a space, as real paths have
    shutil.copytree(phantom, root)
    (root / "phantom.json").unlink()
    shutil.rmtree(root / "truth")
    patients = sorted((root / "NSCLC-Radiomics").iterdir())
    old_id = patients[0].name
    patient = patients[0].rename(patients[0].with_name(MRN_FOLDER))
    files = sorted(patient.rglob("*.dcm"))
    for f in files:
        ds = pydicom.dcmread(f)
        ds.PatientID, ds.PatientName, ds.PatientBirthDate = PATIENT_ID, PATIENT_NAME, BIRTH_DATE
        ds.save_as(f)
    files[len(files) // 2].write_bytes(files[len(files) // 2].read_bytes()[:-200])  # the broken file
    csv = next(root.glob("*.csv"))
    csv.write_text(csv.read_text().replace(old_id, PATIENT_ID))
    return root


@pytest.mark.slow
def test_no_identifier_or_data_path_in_anything_written(tmp_path, monkeypatch):
    root = _hospital_export(tmp_path)
    runs, work, reports = tmp_path / "runs", tmp_path / "work", tmp_path / "reports"
    monkeypatch.setenv("MEDGAN_RUNS_DIR", str(runs))
    monkeypatch.setenv("MEDGAN_WORKDIR", str(work))
    monkeypatch.delenv("MEDGAN_SUBJECT_SALT", raising=False)
    notebook = find_notebooks(["02_ct_fidelity_diversity"])[0]
    record = render_notebook(notebook, profile="smoke", overrides={"data.skip_bad": True},
                             data_root=str(root), reports_dir=reports, progress=False)
    assert record.status == "ok", record.error
    html = (reports / f"{notebook.stem}.html").read_text()
    assert "skipped" in html  # the broken file was skipped and said so, by key
    salt = (work / "subject-salt").read_text().strip()
    secrets = [MRN_FOLDER, PATIENT_ID, PATIENT_NAME, "Secretperson", BIRTH_DATE, str(root), str(root.resolve())]
    written = [p for d in (reports, runs, work) for p in d.rglob("*")]
    assert any(p.suffix == ".ipynb" for p in written) and any(p.name == "index.json" for p in written)
    for path in written:
        name = str(path.relative_to(tmp_path))
        for secret in secrets:
            assert secret not in name, f"{name}: file name holds {secret!r}"
        if path.is_file() and path.name != "subject-salt":
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, f"{name} holds {secret!r}"
            if not str(path).startswith(str(work)):
                assert salt.encode() not in data, f"{name} holds the site salt"
