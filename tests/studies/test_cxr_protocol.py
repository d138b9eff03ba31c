"""Study 5's protocol against its sources: the official PGGAN growth plan in the paper profile
(tkarras/progressive_growing_of_gans config.py / train.py), the thesis's 130 epochs for both
PGGANs, no left-right flips, the thesis's AnoGAN score (closed forms), and the protocol table."""

import numpy as np
import pytest
import torch
from torch import nn

from medgan.analysis.anogan import ANOGAN, BASELINE, anomaly_scores, evaluate_anomaly_detection
from medgan.config import load_params
from medgan.data import phantoms
from medgan.studies import build_job
from medgan.studies.cxr_pggan import anomaly, jobs, paper
from medgan.studies.cxr_pggan import data as cxr_data

NOTEBOOK = "05_cxr_pggan"
THESIS_IMAGES, THESIS_NORMALS, THESIS_EPOCHS = 111_163, 72_938, 130  # thesis §1.1, §2.1, §4.1
# official config.py line 101, preset-v2-2gpus (minibatch_base 8 above the dict) and G_lrate_dict = D_lrate_dict
PRESET_2GPUS_MINIBATCH = {4: 256, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8}
PRESET_2GPUS_LR = {512: 0.0015, 1024: 0.002}


def test_paper_profile_is_the_official_growth_plan_for_the_thesis_length():
    P = load_params(NOTEBOOK, "paper")
    sizes = [4 * 2 ** d for d in range(9)]
    g = jobs.pggan_settings(P)
    assert g.growth == "images" and g.reset_adam_at_growth is True
    assert list(g.batch_size_per_resolution) == [PRESET_2GPUS_MINIBATCH.get(r, 8) for r in sizes]
    assert list(g.lr_per_resolution) == [PRESET_2GPUS_LR.get(r, 0.001) for r in sizes]  # G_lrate_base 0.001
    assert (g.n_images_stable, g.n_images_fade) == (600_000, 600_000)  # lod_training_kimg, lod_transition_kimg
    full = jobs.image_schedule(g, THESIS_IMAGES)
    normal = jobs.image_schedule(jobs.pggan_settings(P, normal_only=True), THESIS_NORMALS)
    # 130 epochs each (the thesis's "identical procedure"), not the ~200 epochs of 72,938 normals before.
    assert full.total_images == THESIS_EPOCHS * THESIS_IMAGES and normal.total_images == THESIS_EPOCHS * THESIS_NORMALS
    # The same phases in epochs: the normal-only PGGAN's phases are the first one's, scaled by the image counts.
    assert normal.stable_images / THESIS_NORMALS == pytest.approx(full.stable_images / THESIS_IMAGES, rel=1e-5)
    assert normal.final_stable_images / THESIS_NORMALS == pytest.approx(full.final_stable_images / THESIS_IMAGES,
                                                                       rel=1e-4)
    for s in (full, normal):
        rows = s.table()
        assert rows[-1]["resolution"] == 1024 and rows[-1]["steps"] > rows[-1]["fade_in_steps"] > 0
        assert sum(r["images"] for r in rows) - s.total_images < sum(s.batch_sizes)  # ceil per stretch only
    assert (full.total_steps, normal.total_steps) == (1_129_057, 740_824)  # the numbers the YAML comments give
    assert P.pggan.steps is None and P.pggan.batch_size is None  # derived: no stale step count or batch


def test_default_and_smoke_keep_the_equal_share_plan_and_no_augmentation():
    for profile in ("smoke", "default"):
        P = load_params(NOTEBOOK, profile)
        for normal_only in (False, True):
            g = jobs.pggan_settings(P, normal_only=normal_only)
            assert g.growth == "steps" and not g.reset_adam_at_growth and g.lr_per_resolution is None
    for profile in ("smoke", "default", "paper", "rehearse"):
        P = load_params(NOTEBOOK, profile)
        assert P.augment.pggan.hflip == 0 and P.augment.classifier.hflip == 0, profile  # no left-right flips
        assert jobs.pggan_augment(P) is None and jobs.classifier_augment(P) is None


def test_the_papers_anogan_score_is_the_mean_squared_raw_residual():
    P = load_params(NOTEBOOK, "paper")
    assert (P.anogan.score_kind, P.anogan.sigma) == ("mse", 0.0)
    assert (P.anogan.compare_score.kind, P.anogan.compare_score.sigma) == ("top1pct", 1.0)
    assert paper.score_label("mse", 0.0).endswith("(the thesis)") and paper.score_label("top1pct", 1.0).endswith("(ours)")
    # A 10 x 10 residual with one row of 3s and one pixel of -5: closed forms.
    r = np.zeros((1, 1, 10, 10))
    r[0, 0, 2, :] = 3.0
    r[0, 0, 7, 7] = -5.0
    assert anomaly_scores(r, kind="mse", sigma=0.0)[0] == pytest.approx((10 * 9 + 25) / 100)
    assert anomaly_scores(r, kind="top1pct", sigma=0.0)[0] == pytest.approx(5.0)  # 1% of 100 px: the largest |r|
    assert anomaly_scores(r, kind="mse", sigma=1.0)[0] < anomaly_scores(r, kind="mse", sigma=0.0)[0]  # smoothing


class ZeroGenerator(nn.Module):
    """G(z) = 0 for every z (with a gradient path to z): the residual of a query is the query itself."""

    z_dim = 4

    def forward(self, z):
        return torch.zeros(len(z), 1, 10, 10) + 0.0 * z.sum()


def test_both_scores_come_from_the_same_residuals_and_match_their_closed_forms():
    P = load_params(NOTEBOOK, "paper")
    g = torch.Generator().manual_seed(0)
    normal_val = 0.1 * torch.randn(20, 1, 10, 10, generator=g)
    queries = 0.1 * torch.randn(8, 1, 10, 10, generator=g)
    queries[4:, :, 3:5, 3:5] += 0.8  # four abnormal queries with a bright lesion
    findings = ["normal"] * 4 + ["Nodule"] * 4
    evaluation = evaluate_anomaly_detection(
        ZeroGenerator(), normal_val=normal_val, queries=queries, findings=findings, masks=None,
        normal_train=torch.zeros(1, 1, 10, 10), invert_options=dict(steps=1, restarts=1, batch_size=4),
        score_kind="mse", sigma=0.0, n_boot=20, extra_scores={anomaly.COMPARE: ("top1pct", 1.0)})
    mse = (queries.double() ** 2).flatten(1).mean(1).numpy()
    np.testing.assert_allclose(evaluation.scores[ANOGAN], mse)
    np.testing.assert_allclose(evaluation.scores[BASELINE], mse)  # the mean normal training image is 0 here
    val, test = evaluation.extra_scores[anomaly.COMPARE][ANOGAN]
    np.testing.assert_allclose(test, anomaly_scores(queries, kind="top1pct", sigma=1.0))
    np.testing.assert_allclose(val, anomaly_scores(normal_val, kind="top1pct", sigma=1.0))
    table = anomaly.score_comparison(P, evaluation)
    labels = [paper.score_label("mse", 0.0), paper.score_label("top1pct", 1.0)]
    assert list(table.index) == [(label, m) for label in labels for m in (ANOGAN, BASELINE)]
    assert (table["abnormal"] == 4).all() and (table["normal"] == 4).all()
    row = table.loc[(labels[0], ANOGAN)]
    assert row["abnormal detected"] == int((mse[4:] > evaluation.thresholds[ANOGAN]).sum())
    assert row["image AUROC"] == 1.0  # every lesion query has a larger squared residual than every normal one


SMALL = {"data.phantom.n_patients": 40, "data.phantom.image_size": 32, "data.image_size": 16}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    P = load_params(NOTEBOOK, "smoke", SMALL)
    folder = phantoms.ensure("cxr", root=tmp_path_factory.mktemp("cxr"), **P.data.phantom.to_dict())
    P = load_params(NOTEBOOK, "smoke", {**SMALL, "data.root": str(folder)})
    return P, cxr_data.load_data(P)


def test_the_protocol_table_and_the_image_plan_reach_the_job(small):
    P, data = small
    table = jobs.protocol(P, data)["this run"]
    assert "equal shares of 24 iterations" in table["PGGAN: growth"] and "kept" in table["PGGAN: Adam state"]
    assert table["augmentation, PGGANs"].startswith("none: no left-right flip")
    assert table["AnoGAN: reported beside"] == paper.score_label("mse", 0.0)
    # The official plan on the same data (16 px: 4, 8, 16): steps, batch schedule and resets in the job and table.
    official = {"pggan.growth": "images", "pggan.n_images_stable": 32, "pggan.n_images_fade": 16, "pggan.n_images": 160,
                "pggan.batch_size_per_resolution": [16, 8, 8], "pggan.lr_per_resolution": [0.001, 0.001, 0.002],
                "pggan.reset_adam_at_growth": True}
    P2 = load_params(NOTEBOOK, "smoke", {**SMALL, "data.root": P.data.root, **official})
    job = build_job(jobs.NOTEBOOK, "pggan", P2)
    assert job.options["batch_size"] == [[0, 16], [2, 8]] and job.options["total_steps"] == 2 + 6 + 2 + 8
    rows = jobs.growth_table(job)
    assert list(rows["lr"]) == [0.001, 0.001, 0.002] and list(rows["batch_size"]) == [16, 8, 8]
    assert list(rows["Adam reset at step"]) == ["—", "2, 3", "8, 9"]
    text = jobs.protocol(P2, data)["this run"]
    assert "official plan in images shown" in text["PGGAN: growth"] and "16 px: 0.002" in text["PGGAN: learning rate"]
    assert text["PGGAN: Adam state"].startswith("reset")
