"""Study 2 package: the paper profile is the study's setup, model sizes at 128 px, jobs build on the smoke
phantom, and the claims and headlines follow the numbers."""

import inspect

import pandas as pd
import pydicom
import pytest
import torch

from medgan.analysis import generative_scores as gs
from medgan.config import load_params, rehearsal_cuts, resolve_profile
from medgan.data.nsclc_radiomics import NSCLCRadiomics
from medgan.data.phantoms import chest_ct, ensure, resolve_options
from medgan.models.blocks import count_parameters
from medgan.models.dcgan import DCGANConfig, build_dcgan
from medgan.models.pggan import PGGANConfig, build_pggan
from medgan.reports import Claim, Headline
from medgan.studies import available, build_job
from medgan.studies.ct_fidelity_diversity import data, evaluation, jobs, paper
from medgan.train import dcgan as dcgan_training
from medgan.train import pggan as pggan_training

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


@pytest.mark.parametrize("profile", ["smoke", "default", "paper", "rehearse"])
def test_profiles_are_consistent(profile):
    P = load_params(NB, profile)
    assert P.dcgan.model.image_size == P.data.image_size == P.pggan.model.resolution
    assert isinstance(P.data.num_workers, int) and P.data.num_workers >= 0


def test_rehearsal_keeps_the_paper_sizes_and_cuts_only_counts():
    paper, rehearse = load_params(NB, "paper"), load_params(NB, "rehearse")
    for section in ("dcgan", "pggan"):
        assert getattr(rehearse, section).model.to_dict() == getattr(paper, section).model.to_dict()
        assert 0 < getattr(rehearse, section).steps < getattr(paper, section).steps
    assert rehearse.dcgan.batch_size == paper.dcgan.batch_size
    # PGGAN's batch is cut for RAM only (both split modes at 16 peaked near 12 GB), and says so
    cuts = {c["parameter"]: c for c in rehearsal_cuts(NB)}
    assert 0 < rehearse.pggan.batch_size <= paper.pggan.batch_size
    assert rehearse.pggan.batch_size == paper.pggan.batch_size or cuts["pggan.batch_size"]["why"].startswith("RAM")
    assert rehearse.data.to_dict() | {"phantom": None} == paper.data.to_dict() | {"phantom": None}
    assert rehearse.features.extractor == paper.features.extractor and list(rehearse.eval.seeds) == [0, 1, 2]
    options = resolve_options("chest_ct", rehearse.data.phantom.to_dict())
    assert options["image_size"] == 512 and options["n_subjects"] < 30
    # enough training patients' slices for one DCGAN batch of the paper's size (half the patients train)
    assert options["n_subjects"] // 2 * options["n_slices"] >= paper.dcgan.batch_size


def test_paper_size_phantom_is_the_scans_geometry_in_dicom_series(tmp_path):
    paper = resolve_profile(NB, "paper")
    options = chest_ct.paper_size(paper)
    assert options["image_size"] == 512 and options["image_size"] >= paper["data"]["crop_size"]
    assert options["n_subjects"] < 30
    root = ensure("chest_ct", root=tmp_path, **{**options, "n_subjects": 2, "n_slices": 3})  # 2 x 3 slices: fast
    slices = sorted((root / "NSCLC-Radiomics").rglob("*.dcm"))
    assert len(slices) == 6
    header = pydicom.dcmread(slices[0], stop_before_pixels=True)
    assert (header.Rows, header.Columns) == (512, 512) and header.Modality == "CT"
    assert float(header.PixelSpacing[0]) == options["pixel_spacing_mm"]
    ds = NSCLCRadiomics(root, crop_size=paper["data"]["crop_size"], image_size=paper["data"]["image_size"])
    assert ds.records[0]["image"].shape == (1, 128, 128) and len(ds) == 6
    with pytest.raises(ValueError, match="crop_size"):
        chest_ct.paper_size({"data": {"crop_size": 600, "phantom": {"image_size": 512}}})


def test_jobs_build_on_the_smoke_phantom():
    assert (NB, "dcgan") in available() and (NB, "pggan") in available()
    P = load_params(NB, "smoke")
    job = build_job(NB, "pggan", P)
    assert job.options["total_steps"] == P.pggan.steps and job.info["growth schedule"][-1]["resolution"] == 16
    item = job.dataset[0]
    assert item["image"].shape == (1, 16, 16) and -1 <= item["image"].min() and item["image"].max() <= 1
    dc = build_job(NB, "dcgan", P)
    assert "fingerprint" not in dc.options  # the engine fingerprints the run itself
    assert dc.options["num_workers"] == job.options["num_workers"] == P.data.num_workers
    assert dc.dataset.fingerprint() == job.dataset.fingerprint()
    other = data.TrainingSlices(data.load_data(P).test)
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


class _ToyExtractor(torch.nn.Module):
    name = "toy"

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(16 * 16, 8)

    def forward(self, x):
        f = self.lin(x.flatten(1))
        return f, f[:, :2]


def test_scoring_streams_the_slices_and_remakes_only_the_images_shown(monkeypatch):
    P = load_params(NB, "smoke", {"eval.n_generated": 20, "eval.batch_size": 8, "eval.nn_grid": 3,
                                  "eval.embedding_points": 10})
    ct = data.load_data(P)
    whole_split = []
    real_images = data.CTData.images

    def images(self, split, indices=None):  # a whole split in memory is the extractor's training set only
        whole_split.append(indices is None)
        return real_images(self, split, indices)
    monkeypatch.setattr(data.CTData, "images", images)
    torch.manual_seed(0)
    gens = {"DCGAN": {"fn": dcgan_training.untrained_generator(jobs.dcgan_config(P)), "z_dim": P.dcgan.model.z_dim},
            "PGGAN": {"fn": pggan_training.untrained_generator(jobs.pggan_config(P)), "z_dim": P.pggan.model.z_dim}}
    res = evaluation.score(P, ct, gens, _ToyExtractor(), cache_dir=None)
    assert [len(f) for f, _ in res.rows["DCGAN"]] == [20] * len(P.eval.seeds) and len(res.reference[0]) == 20
    assert res.images["DCGAN"].shape[0] == evaluation.SHOWN_IMAGES
    feats, imgs = evaluation.embedding_sets(P, ct, gens, res, "DCGAN")
    assert len(feats["Real"]) == len(imgs["Real"]) == len(imgs["DCGAN"]) == 10
    torch.testing.assert_close(imgs["DCGAN"][:10], res.images["DCGAN"][:10])  # remade: the same images
    torch.testing.assert_close(imgs["Real"][0], ct.test[int(res.reference_index[0])]["image"])
    audit = evaluation.memorisation_audit(P, ct, res, _ToyExtractor(), cache_dir=None)
    pairs = evaluation.memorisation_examples(P, ct, gens, res, audit["DCGAN"], "DCGAN")
    assert pairs["generated"].shape == (3, 1, 16, 16) and pairs["nearest_training"].shape == (3, 1, 16, 16)
    assert list(pairs["distances"]) == sorted(audit["DCGAN"].nearest_train_distance)[:3]
    assert whole_split == [False] * len(whole_split) and whole_split
