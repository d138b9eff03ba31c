"""The PET recipe on the smoke phantom: patients never in two splits, aligned pairs, both jobs build."""

from medgan.config import load_params
from medgan.train.recipes import build_job
from medgan.train.recipes import pet_early_to_delayed as study


def test_split_by_patient_and_pairs_aligned():
    P = load_params(study.NOTEBOOK, "smoke")
    data = study.load_data(P)
    assert not data.shared_patients()
    assert set(data.split_table().index) == {"train", "test"}
    for ds in (data.train, data.test):
        item = ds[0]
        assert item["image"].shape == item["target"].shape == (1, P.data.image_size, P.data.image_size)
        assert "mask" in item  # the phantom's tumour masks


def test_both_jobs_build_with_one_generator_definition():
    P = load_params(study.NOTEBOOK, "smoke")
    pix = build_job(study.NOTEBOOK, "pix2pix", P)
    cyc = build_job(study.NOTEBOOK, "cyclegan", P)
    assert type(pix.step.nets["G"]) is type(cyc.step.nets["G_AB"])
    assert len(cyc.dataset) == len(pix.dataset) ** 2  # every (early, delayed) combination: pairing ignored
