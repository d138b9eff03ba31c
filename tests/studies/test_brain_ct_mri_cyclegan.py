"""Study 3 on the smoke phantom: unpaired folders, both CycleGAN jobs train, translate and score;
the claims and headlines follow the numbers."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import medgan
from medgan.analysis import translation_scores
from medgan.data import phantoms
from medgan.data.base import subjects_of
from medgan.data.brain_ct_mri import BrainCTMRI
from medgan.models.image_to_image import count_parameters
from medgan.studies import available, build_job, run_job
from medgan.studies.brain_ct_mri_cyclegan import data as study_data
from medgan.studies.brain_ct_mri_cyclegan import evaluation, figures, jobs, paper
from medgan.train.cyclegan import translate

NB = study_data.NOTEBOOK


@pytest.fixture(scope="module")
def params():
    return medgan.config.load_params(NB, "smoke", {"train.steps": 2})


def test_profiles_load_and_paper_profile_is_the_paper_setup():
    P = medgan.config.load_params(NB, "paper")
    assert P.data.image_size == paper.SETUP["image size (px)"] and P.train.epochs == paper.SETUP["epochs"]
    assert P.train.batch_size == 1
    assert P.models.resnet.generator == "resnet_9blocks" and P.models.unet.generator == "unet_256"
    assert P.models.resnet.width == P.models.unet.width == P.discriminator.width == paper.SETUP["generator width"]
    assert jobs.total_steps(P, 1756, 1756) == 200 * 1756
    arch = paper.architecture_table(P)
    assert arch.loc["resnet", "reference code, 3ch w64 (M)"] == pytest.approx(11.378179)
    assert arch.loc["unet", "reference code, 3ch w64 (M)"] == pytest.approx(54.409603)
    # the paper's rounded counts are the reference code's
    for model in ("resnet", "unet"):
        assert round(arch.loc[model, "reference code, 3ch w64 (M)"], 1) == arch.loc[model, "paper reports (M)"]
    for profile in ("smoke", "default", "rehearse"):
        medgan.config.load_params(NB, profile)


def test_rehearsal_keeps_the_papers_images_and_networks_and_cuts_only_counts(tmp_path):
    paper_params, rehearse = medgan.config.load_params(NB, "paper"), medgan.config.load_params(NB, "rehearse")
    for key in ("data.image_size", "models", "discriminator", "train.batch_size", "train.lr", "data.num_workers"):
        section_p, section_r = paper_params, rehearse
        for part in key.split("."):
            section_p, section_r = section_p[part], section_r[part]
        assert section_p == section_r, key
    cuts = {c["parameter"] for c in medgan.config.rehearsal_cuts(NB)}
    assert cuts <= {"data.phantom.paper_size", "data.phantom.n_train_subjects", "data.phantom.n_test_subjects",
                    "data.phantom.slices_per_subject", "train.epochs", "eval.domain_cnn.epochs"}
    # the paper-size phantom: 256-px PNGs in the Kaggle layout, the truth beside them
    options = phantoms.resolve_options("brain", rehearse.data.phantom.to_dict())
    assert options["image_size"] == paper_params.data.image_size == 256
    root = phantoms.ensure("brain", root=tmp_path, **rehearse.data.phantom.to_dict())
    image = np.array(Image.open(next((root / "Dataset" / "images" / "trainA").iterdir())))
    assert image.shape == (256, 256) and image.dtype == np.uint8
    test_a = BrainCTMRI(root, domain="A", part="test", image_size=256, with_truth=True, progress=False)
    assert test_a[0]["image"].shape == test_a[0]["target"].shape == (1, 256, 256)
    assert jobs.total_steps(rehearse, len(test_a), len(test_a)) == rehearse.train.epochs * len(test_a)


def test_jobs_have_no_hand_built_fingerprint_and_are_keyed_by_total_steps(tmp_path, params):
    job = build_job(NB, "resnet", params)
    assert "fingerprint" not in job.options
    assert job.step.schedule_uses_total_steps  # the lr decays linearly over the whole run
    short = run_job(job, tmp_path / "resnet", progress=False)
    longer = run_job(build_job(NB, "resnet", params), tmp_path / "resnet", total_steps=3, progress=False)
    assert longer.run_dir != short.run_dir and longer.trained_steps == 3  # not continued: the schedule differs
    again = run_job(build_job(NB, "resnet", params), tmp_path / "resnet", progress=False)
    assert again.run_dir == short.run_dir and again.trained_steps == 0  # reloaded


def test_study_trains_translates_and_scores(tmp_path, params):
    assert (NB, "resnet") in available() and (NB, "unet") in available()
    data = study_data.load_data(params)
    assert data.has_truth and data.directions == ["CT→MRI", "MRI→CT"]
    overlap = data.subject_overlap()
    assert overlap.loc["train A", "train B"] == 0 and overlap.loc["train A", "test A"] == 0
    built = {m: build_job(NB, m, params) for m in ("resnet", "unet")}
    results = {m: run_job(built[m], tmp_path / m, progress=False) for m in built}
    assert all(r.step == 2 and r.run_dir.parent == tmp_path / m for m, r in results.items())
    assert list(jobs.training_summary(built, results).index) == ["resnet", "unet"]
    extractor = evaluation.feature_extractor(data, params)
    cache = tmp_path / "feature-cache"
    steps = {m: j.step for m, j in built.items()}
    out, ev = evaluation.translate_and_score(steps, data, extractor, params, cache_dir=cache)
    n = min(params.eval.grid_n, len(data.test_a))
    assert set(out.predictions) == set(evaluation.trained_labels(params))  # the untrained baseline is scored, not shown
    for by_direction in out.predictions.values():
        assert by_direction["CT→MRI"].shape == (n, 1, params.data.image_size, params.data.image_size)
    rows = figures.translation_rows(out, "MRI→CT", n=2)
    assert list(rows)[0] == "MRI (input)" and list(rows)[-1] == "true CT"
    # every test image was scored, batch by batch, though only the grid's images were kept
    per_image = ev.per_image.groupby(["method", "direction"]).size()
    assert set(per_image.loc[(slice(None), "CT→MRI")]) == {len(data.test_a)}
    assert evaluation.UNTRAINED in set(ev.per_image["method"])
    cached = sorted(cache.rglob("*"))
    assert cached, "the feature cache was not written"
    _, again = evaluation.translate_and_score(steps, data, extractor, params, cache_dir=cache)
    assert sorted(cache.rglob("*")) == cached  # the real sets' features were read back
    pd.testing.assert_frame_equal(ev.summary, again.summary)
    worst = ev.worst[(evaluation.trained_labels(params)[0], "CT→MRI")]
    assert len(worst.rows) == min(params.eval.worst_k, len(data.test_a))
    assert worst.rows["ssim"].tolist() == sorted(ev.per_image.query(
        "method == @worst.rows.method[0] and direction == 'CT→MRI'")["ssim"])[:len(worst.rows)]
    assert len(list(figures.worst_case_figures(ev, out, params))) == 4
    assert set(ev.summary["method"]) >= {*evaluation.trained_labels(params), "identity", evaluation.REAL_TRAIN}
    assert len(evaluation.score_tables(ev, params)) == 4
    assert len(evaluation.generator_comparisons(ev, params, data.directions)) == 2
    claims = paper.claims(ev.summary, params, data.directions)
    assert len(claims) == 10 and all(isinstance(c, medgan.reports.Claim) for c in claims)
    assert len(paper.headlines(ev.summary, params, data.directions, extractor=ev.extractor)) == 4
    assert list(evaluation.ours_fid_table(ev.summary, params).index) == ["ResNet-9", "U-Net"]


def _summary(params, *, fid, ssim, identity_ssim=0.3):
    """A summary like ``TranslationEvaluation.summary``: ``fid``/``ssim`` = (ResNet-9, U-Net) estimates."""
    labels = [evaluation.model_label(params, m) for m in ("resnet", "unet")]
    rows = [{"method": label, "direction": d, "metric": k, "estimate": v[i], "low": v[i] - 0.1, "high": v[i] + 0.1}
            for i, label in enumerate(labels) for d in ("CT→MRI", "MRI→CT") for k, v in (("fid", fid), ("ssim", ssim))]
    rows += [{"method": "identity", "direction": d, "metric": "ssim", "estimate": identity_ssim, "low": 0.2,
              "high": 0.45} for d in ("CT→MRI", "MRI→CT")]
    return pd.DataFrame(rows)


def _verdicts(claims, start):
    return [c.supported for c in claims if c.claim.startswith(start)]


def test_claims_are_computed_from_the_numbers(params):
    directions = ["CT→MRI", "MRI→CT"]
    # ResNet-9 has the higher (worse) FID but the higher SSIM: the paper's claim fails, the rankings disagree
    claims = paper.claims(_summary(params, fid=(50.0, 40.0), ssim=(0.5, 0.4)), params, directions)
    assert len(claims) == 10
    assert _verdicts(claims, "ResNet-9 has lower FID") == [False, False]
    assert _verdicts(claims, "FID ranks") == [False, False]
    assert _verdicts(claims, "ResNet-9 is closer") == [True, True]
    assert all(_verdicts(claims, "ResNet-9 beats") + _verdicts(claims, "U-Net beats"))
    # flip the FID order: the paper's claim holds and FID now ranks as SSIM does
    flipped = paper.claims(_summary(params, fid=(40.0, 50.0), ssim=(0.5, 0.4)), params, directions)
    assert _verdicts(flipped, "ResNet-9 has lower FID") == [True, True]
    assert _verdicts(flipped, "FID ranks") == [True, True]
    # an identity baseline better than both generators: neither beats it
    strong = paper.claims(_summary(params, fid=(40.0, 50.0), ssim=(0.5, 0.4), identity_ssim=0.9), params, directions)
    assert not any(_verdicts(strong, "ResNet-9 beats") + _verdicts(strong, "U-Net beats"))
    assert {c.evidence for c in claims} <= set(paper.CRITERIA.values())
    # without truth (real unpaired data) only the paper's FID claim is left
    fid_only = _summary(params, fid=(40.0, 50.0), ssim=(0.5, 0.4))
    assert [c.claim.split(" (")[0] for c in paper.claims(fid_only[fid_only.metric == "fid"], params, directions)] \
        == ["ResNet-9 has lower FID than U-Net"] * 2


def test_headlines_put_our_fid_beside_the_papers(params):
    heads = paper.headlines(_summary(params, fid=(40.0, 50.0), ssim=(0.5, 0.4)), params, ["CT→MRI", "MRI→CT"],
                            extractor="domain_cnn")
    by_label = {h.label: h for h in heads}
    assert set(by_label) == {"ResNet-9 FID CT→MRI", "ResNet-9 FID MRI→CT", "U-Net FID CT→MRI", "U-Net FID MRI→CT"}
    assert by_label["ResNet-9 FID CT→MRI"].ours == 40.0 and by_label["ResNet-9 FID CT→MRI"].paper == 58.32
    assert by_label["U-Net FID MRI→CT"].ours == 50.0 and by_label["U-Net FID MRI→CT"].paper == 90.47
    assert paper.fid_table().loc["ResNet-9", "params (M)"] == paper.PARAMS_M["resnet_9blocks"]
    assert dataclasses.asdict(heads[0])["note"] == "ours: domain_cnn features"


def test_architecture_table_counts_the_discriminator_that_trains():
    P = medgan.config.load_params(NB, "smoke", {"discriminator.norm": "batch"})
    arch = paper.architecture_table(P)
    trained = build_job(NB, "resnet", P).step.nets["D_A"]
    assert arch.loc["resnet", "ours D (M)"] == pytest.approx(count_parameters(trained) / 1e6)
    instance = medgan.config.load_params(NB, "smoke")
    assert arch.loc["resnet", "ours D (M)"] != paper.architecture_table(instance).loc["resnet", "ours D (M)"]


def test_augmentation_is_the_references_per_domain_and_off_by_default():
    assert jobs.augmentation(medgan.config.load_params(NB, "default")) is None  # default run keys unchanged
    aug = jobs.augmentation(medgan.config.load_params(NB, "paper"))
    assert aug.keys == ("A", "B") and not aug.paired  # unaligned domains: independent draws
    assert aug.resize_crop == (286, 256) and aug.hflip == 0.5 and aug.vflip == 0.0
    smoke = medgan.config.load_params(NB, "smoke")
    job = build_job(NB, "resnet", smoke)
    assert job.options["augment"] == jobs.augmentation(smoke)
    protocol = paper.protocol_table(smoke, study_data.load_data(smoke))
    assert protocol.loc["augmentation", "this run"] == job.options["augment"].describe()
    assert "same images" in protocol.loc["inference mode", "this run"]  # instance norm, no dropout


def test_scoring_runs_the_generators_in_the_profiles_inference_mode():
    """With batch-norm generators (an override: the study's are instance norm) the mode changes the scores,
    and train mode's are those of the reference's test loop: batches of 1, seeded dropout."""
    batch_norm = {"train.steps": 2, "models.resnet.norm": "batch", "models.unet.norm": "batch"}
    scored = {}
    for mode in ("train", "eval"):
        P = medgan.config.load_params(NB, "smoke", {**batch_norm, "inference_mode": mode})
        brain = study_data.load_data(P)
        steps = {"resnet": build_job(NB, "resnet", P).step}
        _, ev = evaluation.translate_and_score(steps, brain, evaluation.feature_extractor(brain, P), P,
                                               include_untrained=False)
        label = evaluation.model_label(P, "resnet")
        scored[mode] = ev.per_image.query("method == @label and direction == 'CT→MRI'").reset_index(drop=True)
        source = study_data.read_images(brain.test_a, range(len(brain.test_a)))
        truth = study_data.read_images(brain.test_a, range(len(brain.test_a)), "target")
        pred = translate(steps["resnet"].nets["G_AB"], source, batch_size=1, mode=mode, seed=P.seed)
        whole = translation_scores.image_scores(pred, truth, subjects=subjects_of(brain.test_a),
                                                data_range=P.eval.data_range, method=label, direction="CT→MRI",
                                                ssim_win_size=P.eval.ssim_win_size)
        pd.testing.assert_frame_equal(scored[mode], whole, rtol=1e-5)
    assert not np.allclose(scored["train"]["psnr_db"], scored["eval"]["psnr_db"])
