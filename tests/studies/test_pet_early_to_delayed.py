"""Study 4 on the smoke phantom: patients never in two splits, aligned pairs, both jobs build; the
paper's claims and headlines follow the numbers."""

import math

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch

from medgan.analysis import pet_uptake, translation_scores
from medgan.config import load_params, rehearsal_cuts
from medgan.data import phantoms
from medgan.data.base import subjects_of
from medgan.data.pet_early_delayed import PETEarlyDelayed
from medgan.studies import build_job, run_job
from medgan.studies.pet_early_to_delayed import data, evaluation, figures, jobs, paper
from medgan.studies.pet_early_to_delayed.jobs import NOTEBOOK
from medgan.train import max_weight_difference
from medgan.train.cyclegan import translate


@pytest.fixture(scope="module")
def P():
    return load_params(NOTEBOOK, "smoke")


def test_split_by_patient_and_pairs_aligned(P):
    pet = data.load_data(P)
    assert not pet.shared_patients()
    assert set(pet.split_table().index) == {"train", "test"}
    assert pet.split_table()["slices"].tolist() == [len(pet.train), len(pet.test)]
    for ds in (pet.train, pet.test):
        item = ds[0]
        assert item["image"].shape == item["target"].shape == (1, P.data.image_size, P.data.image_size)
        assert "mask" in item  # the phantom's tumour masks
    view = data.extractor_training_set(pet)
    assert len(view) == len(view.labels) == 2 * len(pet.train) and view.labels.sum() == len(pet.train)
    assert torch.equal(view[len(pet.train)]["image"], pet.train[0]["target"])  # delayed half: the targets


def test_both_jobs_build_with_one_generator_definition_and_no_hand_made_fingerprint(P):
    pix = build_job(NOTEBOOK, "pix2pix", P)
    cyc = build_job(NOTEBOOK, "cyclegan", P)
    assert type(pix.step.nets["G"]) is type(cyc.step.nets["G_AB"])
    assert len(cyc.dataset) == len(pix.dataset) ** 2  # every (early, delayed) combination: pairing ignored
    for job in (pix, cyc):
        assert "fingerprint" not in job.options  # the engine derives it
        assert job.step.schedule_uses_total_steps  # linear decay: runs keyed by total steps


def _summary(values: dict[tuple[str, str], float]) -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "direction": evaluation.DIRECTION, "metric": k, "estimate": v,
                          "low": v, "high": v} for (m, k), v in values.items()])


GOOD = {("Pix2pix", "psnr_db"): 40.0, ("Pix2pix", "ssim"): 0.9, ("Pix2pix", "fid"): 5.0,
        ("CycleGAN", "psnr_db"): 30.0, ("CycleGAN", "ssim"): 0.7, ("CycleGAN", "fid"): 20.0,
        ("identity", "psnr_db"): 35.0, ("identity", "ssim"): 0.8, ("identity", "fid"): 30.0}


def test_claims_follow_the_numbers():
    claims = paper.claims(_summary(GOOD))
    assert len(claims) == 4 and all(c.supported for c in claims)
    # Flip one number at a time: exactly the claim that reads it flips.
    flipped = paper.claims(_summary({**GOOD, ("Pix2pix", "fid"): 25.0}))
    assert [c.supported for c in flipped] == [True, True, True, False]
    flipped = paper.claims(_summary({**GOOD, ("identity", "ssim"): 0.95}))
    assert [c.supported for c in flipped] == [True, False, True, True]
    flipped = paper.claims(_summary({**GOOD, ("CycleGAN", "psnr_db"): 45.0}))
    assert [c.supported for c in flipped] == [True, True, False, True]
    missing = paper.claims(_summary({k: v for k, v in GOOD.items() if k != ("CycleGAN", "fid")}))
    assert not missing[3].supported  # no number, no support


def test_headlines_put_ours_beside_the_papers_table():
    heads = paper.headlines(_summary(GOOD), extractor="domain_cnn", psnr_range="2 on [-1, 1]")
    by_label = {h.label: h for h in heads}
    assert set(by_label) == {"Pix2pix PSNR", "CycleGAN PSNR", "Pix2pix FID", "CycleGAN FID"}
    assert by_label["Pix2pix PSNR"].ours == 40.0 and by_label["Pix2pix PSNR"].paper == 57.85
    assert by_label["CycleGAN FID"].ours == 20.0 and by_label["CycleGAN FID"].paper == 17.33
    assert "domain_cnn" in by_label["Pix2pix FID"].note
    table = paper.ours_table(_summary(GOOD), ["Pix2pix", "CycleGAN"])
    assert table.loc["CycleGAN", "PSNR (dB)"] == 30.0 and math.isnan(paper.ours_table(_summary(GOOD), ["x"]).iloc[0, 0])


def test_grid_rows_show_every_prediction_and_its_error():
    truth = torch.zeros(5, 1, 4, 4)
    out = evaluation.TestTranslations(sources=torch.full_like(truth, -1.0), truth=truth, subjects=["a"] * 5,
                                      masks=None, predictions={"M": torch.full_like(truth, 0.5)})
    rows = figures.grid_rows(out, n=3)
    assert list(rows) == ["early (input)", "delayed (truth)", "M", "|M − truth|"]
    assert all(len(v) == 3 for v in rows.values())
    assert torch.allclose(rows["|M − truth|"], torch.full((3, 1, 4, 4), -0.5))  # |0.5 - 0| shown as 0.5 - 1


def test_evaluation_scores_every_method_and_reuses_cached_features(P, tmp_path):
    jobs = {model: build_job(NOTEBOOK, model, P) for model in ("pix2pix", "cyclegan")}  # untrained is enough here
    pet = data.load_data(P)
    first = evaluation.evaluate(jobs, pet, P, cache_dir=tmp_path)
    assert set(first.samples.predictions) == {"Pix2pix", "CycleGAN"} and first.samples.masks is not None
    assert len(first.samples.sources) == min(P.eval.grid_n, len(pet.test))
    cached = sorted(tmp_path.rglob("*.npz"))
    assert cached  # the features went through the cache
    second = evaluation.evaluate(jobs, pet, P, cache_dir=tmp_path)
    assert sorted(tmp_path.rglob("*.npz")) == cached  # nothing new computed on the second run
    pd.testing.assert_frame_equal(first.evaluation.summary, second.evaluation.summary)
    assert set(first.evaluation.summary["method"]) == set(first.methods)
    per_method = first.evaluation.per_image.groupby("method").size()
    assert set(per_method) == {len(pet.test)}  # every test slice scored, batch by batch
    assert list(first.psnr_by_range.index) == first.methods[:-1]  # the models and the scaled identity
    summary, per_patient = first.tumours
    # one summary row per method with a tumour in the test patients (the smoke split may hold none)
    assert set(summary.index) == set(per_patient.get("method", [])) <= set(first.methods)
    assert len(figures.worst_case_grids(first)) == 2


def test_streamed_scores_equal_the_scores_of_the_whole_test_set_at_once(P):
    """Batch by batch (batch size 3) gives the numbers of the in-memory functions on all slices."""
    jobs = {model: build_job(NOTEBOOK, model, P) for model in ("pix2pix", "cyclegan")}
    pet = data.load_data(P)
    small = load_params(NOTEBOOK, "smoke", {"eval.batch_size": 3, "inference_mode": "train"})  # as the paper profile
    streamed = evaluation.evaluate(jobs, pet, small)
    early = data.read_images(pet.test, range(len(pet.test)))
    delayed = data.read_images(pet.test, range(len(pet.test)), "target")
    masks = data.read_images(pet.test, range(len(pet.test)), "mask")
    train = range(len(pet.train))
    ratio = pet_uptake.uptake_ratio(data.read_images(pet.train, train), data.read_images(pet.train, train, "target"),
                                    suv_max=P.data.suv_max)
    assert streamed.uptake_ratio == pytest.approx(ratio, rel=1e-5)
    assert small.inference_batch_size == 1  # the reference test.py's batch
    with torch.no_grad():  # all test slices in one call: slice i's dropout seed follows its index, not the batching
        predictions = {label: translate(jobs[model].step.nets[evaluation.GENERATOR_OF[model]], early, batch_size=1,
                                        mode="train", seed=small.seed)
                       for model, label in (("pix2pix", "Pix2pix"), ("cyclegan", "CycleGAN"))}
    predictions[evaluation.scaled_identity_label(ratio)] = pet_uptake.scaled_identity(early, ratio=ratio,
                                                                                      suv_max=P.data.suv_max)
    sweep = pet_uptake.psnr_range_sweep(predictions, delayed, suv_max=P.data.suv_max,
                                        ranges_suv=list(P.eval.psnr_ranges_suv))
    pd.testing.assert_frame_equal(streamed.psnr_by_range, sweep, rtol=1e-5)
    lesions = pet_uptake.lesion_uptake(predictions, delayed, masks, subjects_of(pet.test), suv_max=P.data.suv_max)
    pd.testing.assert_frame_equal(streamed.tumours[1], lesions, rtol=1e-4)
    scored = streamed.evaluation.per_image.query("method == 'Pix2pix'").reset_index(drop=True)
    whole = translation_scores.image_scores(predictions["Pix2pix"], delayed, subjects=subjects_of(pet.test),
                                            data_range=P.eval.data_range, method="Pix2pix",
                                            direction=evaluation.DIRECTION, ssim_win_size=P.eval.ssim_win_size)
    pd.testing.assert_frame_equal(scored, whole, rtol=1e-5)


def test_rehearsal_runs_the_paper_geometry_and_cuts_only_counts(tmp_path):
    paper_params, rehearse = load_params(NOTEBOOK, "paper"), load_params(NOTEBOOK, "rehearse")
    for section in ("generator", "discriminator"):
        assert paper_params[section] == rehearse[section]
    assert rehearse.train.batch_size == paper_params.train.batch_size == 1
    assert rehearse.data.image_size == paper_params.data.image_size == 128
    assert rehearse.data.num_workers == paper_params.data.num_workers
    cuts = {c["parameter"] for c in rehearsal_cuts(NOTEBOOK)}
    assert cuts <= {"data.phantom.paper_size", "data.phantom.n_subjects", "data.phantom.n_slices", "train.steps",
                    "eval.domain_cnn.epochs"}
    # the paper-size phantom: 128 x 128 DICOM slices of 5.3456 x 5.3456 x 5.0 mm
    root = phantoms.ensure("pet", root=tmp_path, **rehearse.data.phantom.to_dict())
    first = sorted((root / sorted(p.name for p in root.iterdir() if p.name.startswith("PET"))[0] / "early").iterdir())[0]
    ds = pydicom.dcmread(first)
    assert (ds.Rows, ds.Columns) == (128, 128) and ds.Modality == "PT"
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx([5.3456, 5.3456]) and float(ds.SliceThickness) == 5.0
    pet = PETEarlyDelayed(root, image_size=128, with_masks=True, progress=False)
    meta = pet.rows[0]["meta"]
    assert meta["pixel_spacing_mm"] == pytest.approx(5.3456) and meta["spacing_z_mm"] == pytest.approx(5.0)
    assert pet[0]["image"].shape == pet[0]["mask"].shape == (1, 128, 128)


def test_augmentation_of_each_profile_and_model():
    default, paper_params = load_params(NOTEBOOK, "default"), load_params(NOTEBOOK, "paper")
    assert jobs.augmentation(default, "pix2pix") is None and jobs.augmentation(default, "cyclegan") is None
    pix, cyc = jobs.augmentation(paper_params, "pix2pix"), jobs.augmentation(paper_params, "cyclegan")
    assert pix.paired and pix.keys == ("image", "target") and not cyc.paired and cyc.keys == ("A", "B")
    for aug in (pix, cyc):  # the reference's 286 -> 256 at the native 128 px; no left-right flip of a body
        assert aug.resize_crop == (143, 128) and aug.hflip == 0.0 and aug.vflip == 0.0
    assert paper.protocol_table(paper_params).loc["augmentation", "this run"].count("143 px") == 2


def test_pix2pix_pairs_stay_aligned_and_cyclegan_domains_do_not(P):
    pix, cyc = build_job(NOTEBOOK, "pix2pix", P), build_job(NOTEBOOK, "cyclegan", P)
    x = torch.rand(6, 1, P.data.image_size, P.data.image_size) * 2 - 1
    for step in range(3):
        out = pix.options["augment"]({"image": x, "target": x.clone()}, seed=P.seed, step=step)
        assert torch.equal(out["image"], out["target"]) and not torch.equal(out["image"], x)
    unpaired = [cyc.options["augment"]({"A": x, "B": x.clone()}, seed=P.seed, step=step) for step in range(3)]
    assert any(not torch.equal(out["A"], out["B"]) for out in unpaired)


def test_a_study_job_with_augmentation_resumes_bit_exact(P, tmp_path):
    """The smoke Pix2pix job (augmented as the paper profile, scaled), stopped at step 7 after the checkpoint
    at 5, resumed: the same weights as a run straight through."""
    straight = build_job(NOTEBOOK, "pix2pix", P)
    assert straight.options["augment"] is not None
    run_job(straight, tmp_path / "a", checkpoint_every=5, progress=False)
    interrupted = build_job(NOTEBOOK, "pix2pix", P)
    original = interrupted.step.train_step

    def stop_at_7(batch, ctx):
        if ctx.step == 7:
            raise RuntimeError("power cut")
        return original(batch, ctx)

    interrupted.step.train_step = stop_at_7
    with pytest.raises(RuntimeError, match="power cut"):
        run_job(interrupted, tmp_path / "b", checkpoint_every=5, progress=False)
    resumed = build_job(NOTEBOOK, "pix2pix", P)
    result = run_job(resumed, tmp_path / "b", checkpoint_every=5, progress=False)
    assert result.trained_steps == P.train.steps - 5
    assert max_weight_difference(straight.step, resumed.step) == 0.0


def test_scores_follow_the_inference_mode_and_both_modes_are_reported(P):
    jobs_ = {model: build_job(NOTEBOOK, model, P) for model in ("pix2pix", "cyclegan")}
    pet = data.load_data(P)
    as_train = load_params(NOTEBOOK, "smoke", {"inference_mode": "train"})
    assert P.inference_mode == "eval"  # the smoke profile's, as the default's
    scores = {mode: evaluation.evaluate(jobs_, pet, params) for mode, params in (("train", as_train), ("eval", P))}
    early = data.read_images(pet.test, range(len(pet.test)))
    delayed = data.read_images(pet.test, range(len(pet.test)), "target")
    for mode, s in scores.items():
        assert s.inference_mode == mode and s.by_inference_mode[mode] is s.evaluation
        assert set(s.by_inference_mode) == {"train", "eval"}
        g = jobs_["pix2pix"].step.nets["G"]
        pred = translate(g, early, batch_size=1 if mode == "train" else 64, mode=mode, seed=P.seed)
        whole = translation_scores.image_scores(pred, delayed, subjects=subjects_of(pet.test), data_range=P.eval.data_range,
                                                method="Pix2pix", direction=evaluation.DIRECTION,
                                                ssim_win_size=P.eval.ssim_win_size)
        scored = s.evaluation.per_image.query("method == 'Pix2pix'").reset_index(drop=True)
        pd.testing.assert_frame_equal(scored, whole, rtol=1e-5)
    # the other mode's table holds the main mode's numbers of the other run: the same scores, side by side
    def models(summary):
        return summary.query("method in ['Pix2pix', 'CycleGAN']").reset_index(drop=True)

    for mode in ("train", "eval"):
        pd.testing.assert_frame_equal(models(scores["train"].by_inference_mode[mode].summary),
                                      models(scores["eval"].by_inference_mode[mode].summary))
    train_psnr = scores["train"].evaluation.per_image.query("method == 'Pix2pix'")["psnr_db"]
    eval_psnr = scores["eval"].evaluation.per_image.query("method == 'Pix2pix'")["psnr_db"]
    assert not np.allclose(train_psnr, eval_psnr)  # batch norm: the two modes give other images
    table = evaluation.inference_mode_table(scores["train"])
    assert list(table.index) == ["Pix2pix", "CycleGAN"]
    assert list(table.columns) == [(m, mode) for m in ("PSNR (dB)", "SSIM", "FID") for mode in ("train", "eval")]
