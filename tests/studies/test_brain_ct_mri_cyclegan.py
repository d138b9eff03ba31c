import pandas as pd
import pytest

import medgan
from medgan.train.recipes import available, build_job, run_job
from medgan.train.recipes import brain_ct_mri as study

NB = study.NOTEBOOK


@pytest.fixture(scope="module")
def params():
    return medgan.config.load_params(NB, "smoke", {"train.steps": 2})


def test_profiles_load_and_paper_profile_is_the_paper_setup():
    paper = medgan.config.load_params(NB, "paper")
    assert paper.data.image_size == 256 and paper.train.epochs == 200 and paper.train.batch_size == 1
    assert paper.models.resnet.generator == "resnet_9blocks" and paper.models.unet.generator == "unet_256"
    assert paper.models.resnet.width == paper.models.unet.width == paper.discriminator.width == 64
    assert study.total_steps(paper, 1756, 1756) == 200 * 1756
    arch = study.architecture_table(paper)
    assert arch.loc["resnet", "reference code, 3ch w64 (M)"] == pytest.approx(11.378179)
    assert arch.loc["unet", "reference code, 3ch w64 (M)"] == pytest.approx(54.409603)
    for profile in ("smoke", "default"):
        medgan.config.load_params(NB, profile)


def test_recipe_trains_translates_and_reports(tmp_path, params):
    assert (NB, "resnet") in available() and (NB, "unet") in available()
    data = study.load_data(params)
    assert data.has_truth and data.direction_ab == "CT→MRI"
    overlap = data.subject_overlap()
    assert overlap.loc["train A", "train B"] == 0 and overlap.loc["train A", "test A"] == 0
    jobs = {m: build_job(NB, m, params) for m in ("resnet", "unet")}
    results = {m: run_job(jobs[m], tmp_path / m, progress=False) for m in jobs}
    assert all(r.step == 2 for r in results.values())
    summary = study.training_summary(jobs, results)
    assert list(summary.index) == ["resnet", "unet"]
    out = study.translate_test_sets({m: j.step for m, j in jobs.items()}, data, params)
    n = len(data.test_a)
    assert set(out.predictions) == {study.model_label(params, "resnet"), study.model_label(params, "unet"),
                                    "untrained ResNet-9"}
    for by_direction in out.predictions.values():
        assert by_direction["CT→MRI"].shape == (n, 1, params.data.image_size, params.data.image_size)
    rows = study.translation_rows(out, "MRI→CT", n=2)
    assert list(rows)[0] == "MRI (input)" and list(rows)[-1] == "true CT"
    fake = pd.DataFrame([{"method": study.model_label(params, m), "direction": d, "metric": k, "estimate": v,
                          "low": v - 0.1, "high": v + 0.1}
                         for m, v in (("resnet", 0.5), ("unet", 0.4)) for d in ("CT→MRI", "MRI→CT")
                         for k in ("fid", "ssim")]
                        + [{"method": "identity", "direction": d, "metric": "ssim", "estimate": 0.3, "low": 0.2,
                            "high": 0.45} for d in ("CT→MRI", "MRI→CT")])
    claims = study.claims_table(fake, params, data)
    assert len(claims) == 10
    # resnet has the higher (worse) FID here but the higher SSIM: the rankings disagree
    assert not claims[claims.claim.str.startswith("FID ranks")]["supported"].any()
    assert claims[claims.claim.str.contains("beats the identity")]["supported"].all()
    assert list(study.ours_fid_table(fake, params).index) == ["ResNet-9", "U-Net"]
