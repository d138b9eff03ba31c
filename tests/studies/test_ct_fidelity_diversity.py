"""Study 2 recipe: the paper profile is the study's setup, model sizes at 128 px, jobs build on the smoke phantom."""

import pytest

from medgan.config import load_params
from medgan.models.classifiers import count_parameters
from medgan.models.dcgan import DCGANConfig, build_dcgan
from medgan.models.pggan import PGGANConfig, build_pggan
from medgan.train.recipes import available, build_job

NB = "02_ct_fidelity_diversity"


def test_paper_profile_is_the_study_setup():
    # STUDIES.md, study 2: 160 px crop -> 128 px; DCGAN z 100; PGGAN 4 -> 128, z 512, batch 16; 6,080 per seed,
    # 3 seeds; fine-tuned Inception (10 epochs, 2-class survival head); PRD 20 clusters, beta 8; improved P&R k=3.
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


def test_model_sizes_at_128px():
    P = load_params(NB, "paper")
    pg = build_pggan(PGGANConfig(**P.pggan.model.to_dict()))
    # 512 maps at 4..32 px, 256 at 64, 128 at 128 (Karras et al. Table 2 truncated at 128 px).
    assert pg["G"].features == [512, 512, 512, 512, 256, 128]
    assert count_parameters(pg["G"]) == 22_936_198
    assert count_parameters(pg["D"]) == 22_936_449
    dc = build_dcgan(DCGANConfig(**P.dcgan.model.to_dict()))
    assert count_parameters(dc["G"]) == 47_851_264 and count_parameters(dc["D"]) == 11_162_368


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
    assert dc.options["fingerprint"]["data"] == P.data.to_dict()
    with pytest.raises(ValueError, match="data.image_size"):
        build_job(NB, "dcgan", load_params(NB, "smoke", {"dcgan.model.image_size": 32}))
