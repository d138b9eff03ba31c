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
