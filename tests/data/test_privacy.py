"""A DICOM with a fake name and ID: neither may appear in items, meta, logs or file names."""

import logging

import numpy as np

from medgan.data.dicom import write_slice
from medgan.data.nsclc_radiomics import CLINICAL_CSV, NSCLCRadiomics

FAKE_ID = "PID-SECRET-778899"
FAKE_NAME = "Doe^Jane^Secretperson"


def test_identifiers_never_leave_the_loader(tmp_path, caplog):
    root = tmp_path / "data"
    folder = root / "NSCLC-Radiomics" / "case-a" / "study" / "series"
    for k in range(3):
        write_slice(folder / f"{k}.dcm", np.full((16, 16), 1000 + k, np.uint16), modality="CT", patient_id=FAKE_ID,
                    patient_name=FAKE_NAME, series_uid="1.2.9", study_uid="1.2", instance_number=k + 1,
                    position_mm=(0, 0, 3.0 * k), rescale_slope=1.0, rescale_intercept=-1024.0,
                    extra={"PatientBirthDate": "19500101"})
    # a second patient with a broken file, so a skip gets logged
    other = root / "NSCLC-Radiomics" / "case-b" / "s" / "t"
    other.mkdir(parents=True)
    (other / "broken.dcm").write_bytes(b"DICM" * 3)
    (root / CLINICAL_CSV).write_text("PatientID,Histology,deadstatus.event\n"
                                     f"{FAKE_ID},adenocarcinoma,1\n")
    with caplog.at_level(logging.DEBUG):
        dataset = NSCLCRadiomics(root, crop_size=None, image_size=8, skip_bad=True)
    assert dataset.bad_input.count == 1
    texts = [caplog.text, repr(dataset.split_map), dataset.bad_input.summary(), repr(dataset.bad_input.skipped)]
    for item in dataset:
        texts.append(repr({k: v for k, v in item.items() if k not in ("image", "mask", "target")}))
    for path in root.rglob("*"):
        texts.append(str(path.relative_to(root)))
        if path.is_file() and path.suffix in (".json", ".csv", ".npz") and path.name != CLINICAL_CSV:
            texts.append(path.read_bytes().decode("latin-1"))
    blob = "\n".join(texts)
    for secret in (FAKE_ID, FAKE_NAME, "Secretperson", "19500101"):
        assert secret not in blob
    assert len(dataset) == 3 and dataset[0]["subject"].startswith("s-")


# --- item 1: paths relative to the data root, subject folders as keys -------------------------

import json
import os
import re
import stat

import pytest

from medgan.config import work_dir
from medgan.data import base
from medgan.data.base import (DEFAULT_SALT, ROOT_PLACEHOLDER, BadInputLog, DataAccessError, DataError,
                              data_problems, subject_key)
from medgan.data.pet_early_delayed import PETEarlyDelayed

MRN = "0047112"
KEY = re.compile(r"s-[0-9a-f]{16}")


@pytest.fixture
def salt_env(monkeypatch, tmp_path):
    """A fresh work dir and no site salt from the environment: the real-data path."""
    monkeypatch.delenv("MEDGAN_SUBJECT_SALT", raising=False)
    monkeypatch.setenv("MEDGAN_WORKDIR", str(tmp_path / "work"))
    return tmp_path / "work" / "subject-salt"


def _pacs_export(tmp_path):
    root = tmp_path / "export"
    (root / f"MRN-{MRN}" / "CT").mkdir(parents=True)
    (root / f"MRN-{MRN}" / "CT" / "1.dcm").write_bytes(b"x")
    (root / "0099881").mkdir()
    return root


def test_skips_and_errors_are_relative_with_subject_folders_as_keys(tmp_path, salt_env, caplog):
    root = _pacs_export(tmp_path)
    victim = root / f"MRN-{MRN}" / "CT" / "1.dcm"
    with caplog.at_level("WARNING", logger="medgan.data"):
        with data_problems(root, subject_dirs=("*",)) as data_root:
            log = BadInputLog(skip_bad=True, name="test")
            log.problem(victim, "PixelData truncated")
            log.reject(DataError(f"{victim}: Modality missing"), victim.parent)
            log.skipped.append((str(root / "0099881"), "second CT series ignored"))  # appended directly
            base.logger.warning("%s: odd file", victim)                              # a loader's own log line
            with pytest.raises(DataError) as info:
                BadInputLog(name="strict").problem(root / "0099881" / "a.dcm", "Rows missing")
            key = subject_key(f"MRN-{MRN}")
    blob = " ".join([caplog.text, repr(log.skipped), str(info.value)])
    assert MRN not in blob and "0099881" not in blob and str(root) not in blob
    assert log.skipped[0] == (f"{key}/CT/1.dcm", "PixelData truncated")
    assert log.skipped[1][0] == f"{key}/CT" and log.skipped[1][1] == f"{key}/CT/1.dcm: Modality missing"
    assert KEY.fullmatch(log.skipped[2][0])
    assert re.fullmatch(r"s-[0-9a-f]{16}/a\.dcm: Rows missing", str(info.value))
    assert data_root.salt_source == "site"


def test_boundary_scrubs_raised_errors_their_chain_and_the_root_itself(tmp_path, salt_env):
    root = _pacs_export(tmp_path)
    with pytest.raises(DataError) as info:
        with data_problems(root, subject_dirs=("*",)):
            try:
                open(root / f"MRN-{MRN}" / "nope.dcm", "rb")
            except OSError as exc:
                raise DataError(f"{root / f'MRN-{MRN}'}: unreadable ({exc})") from exc
    chain = [info.value, info.value.__cause__]
    text = " ".join(str(e) for e in chain if e is not None)
    assert MRN not in text and str(tmp_path) not in text and "nope.dcm" in text
    with pytest.raises(DataError, match=f"^{re.escape(ROOT_PLACEHOLDER)}: no CT series"):
        with data_problems(root):
            raise DataError(f"{root}: no CT series")


def test_os_errors_under_the_root_become_data_errors_others_pass(tmp_path, salt_env):
    root = _pacs_export(tmp_path)
    with pytest.raises(DataAccessError, match=r"^s-[0-9a-f]{16}/missing\.csv: cannot read \(FileNotFoundError"):
        with data_problems(root, subject_dirs=("*",)):
            (root / f"MRN-{MRN}" / "missing.csv").read_text()
    with pytest.raises(PermissionError):  # about the work dir, not the data: unchanged
        with data_problems(root):
            raise PermissionError(13, "work dir not writable", str(tmp_path / "elsewhere"))


def test_raw_patient_ids_read_inside_the_boundary_are_scrubbed_from_messages(tmp_path, salt_env):
    root = _pacs_export(tmp_path)
    with pytest.raises(DataError) as info:
        with data_problems(root):
            key = subject_key("cxr:PAT77123")
            raise DataError(f"Data_Entry.csv: patient PAT77123 listed twice")
    assert str(info.value) == f"Data_Entry.csv: patient {key} listed twice"


def test_a_loader_error_names_the_pet_patient_folder_by_key(tmp_path, salt_env):
    root = tmp_path / "pet"
    (root / f"MRN-{MRN}" / "early").mkdir(parents=True)
    with pytest.raises(DataError) as info:
        PETEarlyDelayed(root)
    assert MRN not in str(info.value) and str(root) not in str(info.value)
    assert re.match(r"^s-[0-9a-f]{16}: unpaired PET patient", str(info.value))


# --- item 2: a per-site salt for real data; 64-bit keys ---------------------------------------

def test_keys_have_16_hex_digits():
    assert KEY.fullmatch(subject_key("anything")) and KEY.fullmatch(subject_key("x", salt="y"))


def test_real_data_gets_a_private_salt_created_once_owner_only(tmp_path, salt_env, caplog):
    root = _pacs_export(tmp_path)
    with caplog.at_level("WARNING", logger="medgan.data"):
        with data_problems(root) as first:
            key = subject_key(MRN)
        with data_problems(root) as second:
            again = subject_key(MRN)
    assert salt_env.is_file() and stat.S_IMODE(salt_env.stat().st_mode) == 0o600
    salt = salt_env.read_text().strip()
    assert len(salt) == 64 and first.salt == second.salt == salt and key == again
    assert caplog.text.count("created a random per-site subject salt") == 1 and str(salt_env) in caplog.text
    assert salt not in caplog.text
    # a 7-digit MRN cannot be recovered without the salt: the key is not the public-salt key
    public = {base._digest_key(f"{n:07d}", DEFAULT_SALT) for n in range(47100, 47120)}
    assert key not in public and base._digest_key(MRN, DEFAULT_SALT) in public


def test_salt_sources_given_env_phantom(tmp_path, salt_env, monkeypatch):
    root = _pacs_export(tmp_path)
    with data_problems(root, salt="mine") as given:
        assert subject_key(MRN) == base._digest_key(MRN, "mine")
    phantom = tmp_path / "phantom"
    phantom.mkdir()
    (phantom / base.PHANTOM_MANIFEST).write_text(json.dumps({"name": "chest_ct", "version": 5, "options": {}}))
    with data_problems(phantom) as ph:
        assert subject_key(MRN) == base._digest_key(MRN, DEFAULT_SALT)
    assert given.salt_source == "given" and ph.salt_source == "phantom" and not salt_env.exists()
    monkeypatch.setenv("MEDGAN_SUBJECT_SALT", "site-secret")
    with data_problems(root) as env:
        assert subject_key(MRN) == base._digest_key(MRN, "site-secret")
    assert env.salt_source == "MEDGAN_SUBJECT_SALT" and not salt_env.exists()


def test_phantom_marker_is_what_the_generator_writes():
    from medgan.data import phantoms
    assert phantoms.MANIFEST == base.PHANTOM_MANIFEST


def test_a_group_readable_salt_file_is_made_owner_only(salt_env):
    salt_env.parent.mkdir(parents=True)
    salt_env.write_text("a" * 64)
    os.chmod(salt_env, 0o644)
    assert base.site_salt() == "a" * 64
    assert stat.S_IMODE(salt_env.stat().st_mode) == 0o600 and work_dir() == salt_env.parent


def test_an_empty_salt_file_is_an_error_not_a_new_salt(salt_env):
    salt_env.parent.mkdir(parents=True)
    salt_env.write_text("")
    with pytest.raises(DataError, match="subject-salt: site subject salt is empty"):
        base.site_salt()


# --- the report runner: no absolute data path in what it writes -------------------------------

def test_runner_scrubber_removes_the_data_root(tmp_path):
    from medgan.reports.runner import data_path_scrubber
    root = tmp_path / "hospital"
    scrub = data_path_scrubber(str(root))
    text = f"data_root = '{root}'\nFileNotFoundError: {root}/MRN-{MRN}/CT/1.dcm\nreal data at {root}"
    out = scrub(text)
    assert str(root) not in out and MRN not in out
    assert "data_root = '<data root>'" in out and "<data root>/…/1.dcm" in out
    assert "&lt;data root&gt;" in scrub(str(root), html=True)
