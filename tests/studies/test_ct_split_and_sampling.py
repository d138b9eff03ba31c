"""Study 2, issue 16: the two split modes (the paper's by slice, ours by patient), the DCGAN's inference
mode (batch statistics as the PyTorch example samples, or running statistics), the PGGAN growth of the
paper profile, and the protocol the report states."""

import numpy as np
import pytest
import torch

from medgan.config import load_params
from medgan.studies import build_job
from medgan.studies.ct_fidelity_diversity import data, evaluation, jobs, paper
from medgan.train import dcgan as dcgan_training

NB = "02_ct_fidelity_diversity"
PROFILES = ["smoke", "default", "paper", "rehearse"]


# --- split modes ------------------------------------------------------------------------------------
def test_slice_halves_are_the_papers_counts():
    reference, real = data.slice_halves(12160, seed=0)  # Sec. 3.1: 12,160 slices -> 6,080 + 6,080
    assert len(reference) == len(real) == 6080
    assert not set(reference) & set(real) and len(set(reference) | set(real)) == 12160
    odd_ref, odd_real = data.slice_halves(7, seed=3)
    assert (len(odd_ref), len(odd_real)) == (3, 4)
    again, _ = data.slice_halves(12160, seed=0)
    other, _ = data.slice_halves(12160, seed=1)
    assert np.array_equal(again, reference) and not np.array_equal(other, reference)


def test_slice_mode_puts_one_patients_slices_on_both_sides_and_patient_mode_never_does():
    P = load_params(NB, "smoke")
    by_patient = data.load_data(evaluation.with_split(P, "patient"))
    by_slice = data.load_data(evaluation.with_split(P, "slice"))
    n_all = len(by_patient.train) + len(by_patient.test)  # val fraction 0: train + test = every slice

    # patient mode: disjoint patients; the Real row is the training patients' slices
    assert by_patient.split == "patient" and by_patient.real is by_patient.train
    assert not set(by_patient.train.subjects) & set(by_patient.test.subjects)
    assert by_patient.shared_patients() == 0 and by_patient.held_out is by_patient.test

    # slice mode: the GANs train on every slice; reference and Real are the two random halves of them
    assert by_slice.split == "slice" and len(by_slice.train) == n_all
    assert (len(by_slice.test), len(by_slice.real)) == (n_all // 2, n_all - n_all // 2)
    keys = lambda ds: {(r["subject"], r["meta"]["slice_index"]) for r in ds.rows}  # noqa: E731
    assert not keys(by_slice.test) & keys(by_slice.real)
    assert keys(by_slice.test) | keys(by_slice.real) == keys(by_slice.train)
    assert by_slice.shared_patients() > 0 and by_slice.held_out is None
    # the same patient's slices on both sides, and the reference slices inside the GANs' training set
    shared = set(by_slice.test.subjects) & set(by_slice.real.subjects)
    assert shared and keys(by_slice.test) <= keys(by_slice.train)
    # a view's item is the stored slice
    j = 3
    row = by_slice.test.rows[j]
    source = by_patient.train if row["subject"] in by_patient.train.subjects else by_patient.test
    i = next(k for k, r in enumerate(source.rows) if (r["subject"], r["meta"]["slice_index"]) ==
             (row["subject"], row["meta"]["slice_index"]))
    torch.testing.assert_close(by_slice.test[j]["image"], source[i]["image"])
    torch.testing.assert_close(torch.from_numpy(by_slice.test.image_array(j)), source[i]["image"])

    # the counts table names each set's role and the patients it shares with the reference
    counts = by_slice.counts()
    assert list(counts.index) == ["train", "test", "real"]
    assert counts.loc["real", "patients also in the reference set"] == len(shared)
    assert by_patient.counts().loc["train", "patients also in the reference set"] == 0


def test_the_split_mode_picks_the_training_slices_and_is_checked():
    P = load_params(NB, "smoke")
    patient = build_job(NB, "dcgan", evaluation.with_split(P, "patient"))
    slice_ = build_job(NB, "dcgan", evaluation.with_split(P, "slice"))
    assert len(slice_.dataset) == 2 * len(patient.dataset)  # half the phantom's patients train in patient mode
    assert slice_.dataset.fingerprint() != patient.dataset.fingerprint()
    assert slice_.info["split"] == "slice" and evaluation.other_split(evaluation.with_split(P, "slice")) == "patient"
    item = slice_.dataset[5]
    assert item["image"].shape == (1, 16, 16) and item["label"] in (0, 1)
    with pytest.raises(ValueError, match="data.split"):
        data.load_data(load_params(NB, "smoke", {"data.split": "random"}))


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_names_split_augmentation_and_inference_mode(profile):
    P = load_params(NB, profile)
    assert P.data.split in data.SPLIT_MODES and P.inference_mode in dcgan_training.INFERENCE_MODES
    assert isinstance(P.eval.both_splits, bool)
    # no mirroring: axial chest CT is not left-right symmetric; so no augmentation joins any run key
    assert P.augment.hflip == 0 and jobs.augmentation(P) is None


def test_paper_profile_is_the_papers_protocol_and_default_is_ours():
    paper_p, default = load_params(NB, "paper"), load_params(NB, "default")
    assert paper_p.data.split == "slice" and paper_p.eval.both_splits  # Table 1 by slice, the patient split beside
    assert paper_p.inference_mode == "train" and paper_p.inference_batch_size == 64  # pytorch/examples dcgan
    assert default.data.split == "patient" and default.inference_mode == "eval"
    assert default.pggan.growth == "steps" and not default.pggan.reset_adam_at_growth


def test_paper_pggan_grows_as_karras_appendix_a1():
    P = load_params(NB, "paper")
    schedule = jobs.image_schedule(P, n_images=12160)
    rows = schedule.table()
    assert [r["resolution"] for r in rows] == [4, 8, 16, 32, 64, 128]
    assert rows[0]["images"] == 800_000 and rows[0]["fade_in_steps"] == 0
    for r in rows[1:]:  # 800k images fading in, 800k stable, at batch 16 (Sec. 3.1)
        assert r["batch_size"] == 16 and r["fade_in_steps"] * 16 == 800_000 and r["images"] == 1_600_000
    assert schedule.total_steps == P.pggan.steps == 550_000
    assert P.pggan.reset_adam_at_growth is True


# --- inference mode (the switch itself: tests/train/test_dcgan_step.py) ------------------------------
def test_scoring_honours_the_inference_mode():
    P = load_params(NB, "smoke", {"inference_mode": "eval"})
    job_dc, job_pg = build_job(NB, "dcgan", P), build_job(NB, "pggan", P)
    gens = evaluation.generators(job_dc.step, job_pg.step, P)
    assert not isinstance(gens["DCGAN"]["fn"], dcgan_training.BatchStatisticsGenerator)
    assert isinstance(gens["DCGAN (train mode)"]["fn"], dcgan_training.BatchStatisticsGenerator)
    train = evaluation.generators(job_dc.step, job_pg.step, load_params(NB, "smoke"))  # smoke: train mode
    assert isinstance(train["DCGAN"]["fn"], dcgan_training.BatchStatisticsGenerator)
    assert train["DCGAN"]["fn"].statistics_batch_size == 4 and "DCGAN (eval mode)" in train
    assert isinstance(train["DCGAN (untrained)"]["fn"], dcgan_training.BatchStatisticsGenerator)
    off = load_params(NB, "smoke", {"eval.also_other_inference_mode": False})
    assert set(evaluation.generators(job_dc.step, job_pg.step, off)) == {"DCGAN", "PGGAN", *evaluation.UNTRAINED.values()}
    with pytest.raises(ValueError, match="inference_mode"):
        evaluation.inference_mode(load_params(NB, "smoke", {"inference_mode": "test"}))


# --- the protocol the report states -------------------------------------------------------------------
def test_protocol_table_states_what_the_jobs_run():
    P = load_params(NB, "smoke")
    for split, words in (("slice", "by slice"), ("patient", "by patient")):
        Q = evaluation.with_split(P, split)
        table = jobs.protocol_table(Q, build_job(NB, "dcgan", Q), build_job(NB, "pggan", Q))
        assert table.loc["split mode (data.split)", "DCGAN"].startswith(words)
        assert table.loc["augmentation (augment)", "PGGAN"] == "none"
        assert table.loc["inference mode (inference_mode)", "DCGAN"].startswith("train")
        assert table.loc["schedule", "DCGAN"].startswith(f"{P.dcgan.steps} iterations")
        assert table.loc["Adam state at growth", "PGGAN"] == "kept"
    images = load_params(NB, "smoke", {"pggan.growth": "images", "pggan.n_images_stable": 16, "pggan.n_images_fade": 16,
                                       "pggan.n_images": 96, "pggan.batch_size_per_resolution": [8, 8, 8],
                                       "pggan.reset_adam_at_growth": True})
    job = build_job(NB, "pggan", images)
    table = jobs.protocol_table(images, build_job(NB, "dcgan", images), job)
    assert job.options["total_steps"] == job.step.schedule.total_steps == 12  # 2 + (2 + 2) + (2 + 4)
    # a fade-in starts and ends at 8 and at 16 px: four resets
    assert table.loc["Adam state at growth", "PGGAN"] == "reset at each fade-in start and end (4 times)"
    assert "8 px: 16 fade-in + 16 stable" in table.loc["schedule", "PGGAN"]


def test_setup_table_names_the_split():
    P = load_params(NB, "smoke")
    for split in ("slice", "patient"):
        ct = data.load_data(evaluation.with_split(P, split))
        table = paper.setup_table(evaluation.with_split(P, split), ct, extractor="toy")
        assert f"({split} split)" in table.loc["GAN training slices", "this run"]
        assert int(table.loc["slices", "this run"]) == len(ct.loaded["train"]) + len(ct.loaded["test"])
    assert "random halves" in table.loc["reference and Real sets", "paper"]
