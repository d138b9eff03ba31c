"""Study 2 package: the paper profile is the study's setup, model sizes at 128 px, jobs build on the smoke
phantom, and the claims and headlines follow the numbers."""

import inspect

import pandas as pd
import pytest

from medgan.analysis import generative_scores as gs
from medgan.config import load_params
from medgan.models.blocks import count_parameters
from medgan.models.dcgan import DCGANConfig, build_dcgan
from medgan.models.pggan import PGGANConfig, build_pggan
from medgan.reports import Claim, Headline
from medgan.studies import available, build_job
from medgan.studies.ct_fidelity_diversity import data, evaluation, jobs, paper

NB = "02_ct_fidelity_diversity"


def test_paper_profile_is_the_study_setup():
    # Study 2: 160 px crop -> 128 px; DCGAN z 100; PGGAN 4 -> 128, z 512, batch 16; 6,080 per seed, 3 seeds;
    # fine-tuned Inception (10 epochs, 2-class survival head); PRD 20 clusters, beta 8; improved P&R k=3.
    P = load_params(NB, "paper")
    assert P.data.crop_size == 160 and P.data.image_size == 128
    assert P.dcgan.model.image_size == 128 and P.dcgan.model.z_dim == 100
    assert P.dcgan.model.g_width > P.dcgan.model.d_width  # the study made G wider than D
    assert P.pggan.model.resolution == 128 and P.pggan.model.z_dim == 512 and P.pggan.model.width == 1.0
    assert P.pggan.batch_size == 16 and P.pggan.gp_weight == 10 and P.pggan.drift_weight == 0.001
    assert P.eval.n_generated == 6080 and len(P.eval.seeds) == 3
    assert P.features.extractor == "finetuned_inception_v3" and P.features.epochs == 10
    assert P.eval.prd_clusters == 20 and P.eval.prd_beta == 8 and P.eval.k == 3
    assert list(P.eval.k_sweep) == list(range(1, 11))
    assert P.data.root is None
    # ... and it is the setup paper.py reports
    assert paper.SETUP["generated images per seed"] == P.eval.n_generated
    assert paper.SETUP["generation seeds"] == len(P.eval.seeds)
    assert paper.SETUP["PRD k-means clusters"] == P.eval.prd_clusters and paper.SETUP["improved P&R k"] == P.eval.k


def test_model_sizes_at_128px_and_the_architecture_table():
    P = load_params(NB, "paper")
    pg = build_pggan(PGGANConfig(**P.pggan.model.to_dict()))
    # 512 maps at 4..32 px, 256 at 64, 128 at 128 (Karras et al. Table 2 truncated at 128 px).
    assert pg["G"].features == [512, 512, 512, 512, 256, 128]
    assert count_parameters(pg["G"]) == 22_936_198
    assert count_parameters(pg["D"]) == 22_936_449
    dc = build_dcgan(DCGANConfig(**P.dcgan.model.to_dict()))
    assert count_parameters(dc["G"]) == 47_851_264 and count_parameters(dc["D"]) == 11_162_368
    table = jobs.architecture_table(load_params(NB, "smoke"))
    study = table.iloc[:, 1]
    assert study["PGGAN G"] == 22_936_198 and study["DCGAN G"] == 47_851_264
    assert (table["this profile"] < study).all()


@pytest.mark.parametrize("profile", ["smoke", "default", "paper"])
def test_profiles_are_consistent(profile):
    P = load_params(NB, profile)
    assert P.dcgan.model.image_size == P.data.image_size == P.pggan.model.resolution


def test_jobs_build_on_the_smoke_phantom():
    assert (NB, "dcgan") in available() and (NB, "pggan") in available()
    P = load_params(NB, "smoke")
    job = build_job(NB, "pggan", P)
    assert job.options["total_steps"] == P.pggan.steps and job.info["growth schedule"][-1]["resolution"] == 16
    item = job.dataset[0]
    assert item["image"].shape == (1, 16, 16) and -1 <= item["image"].min() and item["image"].max() <= 1
    dc = build_job(NB, "dcgan", P)
    assert "fingerprint" not in dc.options  # the engine fingerprints the run itself
    assert dc.dataset.fingerprint() == job.dataset.fingerprint()
    other = data.TrainingSlices(dc.dataset.images.flip(0), dc.dataset.labels[::-1])
    assert other.fingerprint() != dc.dataset.fingerprint()
    with pytest.raises(ValueError, match="data.image_size"):
        build_job(NB, "dcgan", load_params(NB, "smoke", {"dcgan.model.image_size": 32}))
    assert set(jobs.hyperparameter_table(P).columns) == {"DCGAN", "PGGAN"}


def test_score_options_come_from_the_parameters():
    P = load_params(NB, "smoke", {"eval.k": 4})
    opts = evaluation.score_options(P)
    assert opts["k"] == 4 and opts["prd_clusters"] == P.eval.prd_clusters
    assert set(opts) <= set(inspect.signature(gs.score_features).parameters)


def test_paper_table_1():
    table = paper.table_1()
    assert table.loc["PGGAN", "FID"].startswith("6.79") and table.loc["DCGAN", "Improved precision"].startswith("0.202")
    assert list(table.columns) == gs.METRIC_ORDER
    means = paper.table_1_means()
    assert means.loc["DCGAN", "FID"] == 120.75 and pd.isna(means.loc["PGGAN", "KID"])
    side = paper.table_1_beside_ours(table, extractor="x")
    assert ("PGGAN", "paper") in side.columns and ("PGGAN", "ours (x)") in side.columns
    assert paper.CITATION["year"] and "Fidelity and Diversity" in paper.citation()


def _numbers(pggan_fid=6.8, pggan_precision=0.7):
    long = pd.DataFrame(
        [{"row": "DCGAN", "seed": s, "IS": 1.12, "FID": 120 + s, "Improved precision": 0.2, "Improved recall": 0.34}
         for s in range(3)]
        + [{"row": "PGGAN", "seed": s, "IS": 1.18, "FID": pggan_fid + s / 10, "Improved precision": pggan_precision,
            "Improved recall": 0.87} for s in range(3)]
        + [{"row": "PGGAN (untrained)", "seed": 0, "IS": 1.0, "FID": 300, "Improved precision": 0.0,
            "Improved recall": 0.0}])
    return gs.summarise(long)[0]


SPREAD = pd.DataFrame([{"model": "PGGAN", "run": r, "PRD F_8 (recall)": 0.9 + r / 100, "PRD F_1/8 (precision)": 0.9,
                        "Improved precision": 0.7, "Improved recall": 0.87} for r in range(5)])
SWEEP = pd.DataFrame([{"model": "PGGAN", "seed": 0, "k": k, "precision": k / 10, "recall": k / 10} for k in (1, 2, 3)])


def _verdicts(claims):
    assert all(isinstance(c, Claim) for c in claims)
    return {c.claim: c.supported for c in claims}


def test_claims_follow_the_numbers():
    untrained = {"PGGAN": "PGGAN (untrained)"}
    good = _verdicts(paper.claims(_numbers(), SPREAD, SWEEP, untrained=untrained))
    assert len(good) == 6 and all(good.values()), good
    # PGGAN worse than DCGAN on FID and precision: those claims flip, the others do not
    bad = _verdicts(paper.claims(_numbers(pggan_fid=200, pggan_precision=0.1), SPREAD, SWEEP, untrained=untrained))
    assert not bad["PGGAN has a lower FID than DCGAN"]
    assert not bad["PGGAN beats DCGAN on improved precision and recall"]
    assert not bad["trained PGGAN is far better than an untrained one"]
    assert bad["k-means PRD changes from run to run; improved P&R is stable"]
    # improved P&R that moves between runs, and a sweep that falls with k
    moving = SPREAD.assign(**{"Improved precision": [0.5, 0.9, 0.5, 0.9, 0.5]})
    falling = SWEEP.assign(precision=SWEEP["precision"][::-1].to_numpy())
    flipped = _verdicts(paper.claims(_numbers(), moving, falling))
    assert not flipped["k-means PRD changes from run to run; improved P&R is stable"]
    assert not flipped["improved precision and recall rise with k (both models)"]
    assert len(flipped) == 5  # no untrained baseline given: no baseline claim


def test_headlines_are_ours_beside_the_paper():
    heads = paper.headlines(_numbers(pggan_fid=42.0), extractor="toy")
    assert all(isinstance(h, Headline) for h in heads) and 2 <= len(heads) <= 4
    by_label = {h.label: h for h in heads}
    assert by_label["PGGAN FID"].ours == pytest.approx(42.1) and by_label["PGGAN FID"].paper == 6.79
    assert by_label["DCGAN FID"].paper == 120.75 and "toy" in by_label["DCGAN FID"].note
