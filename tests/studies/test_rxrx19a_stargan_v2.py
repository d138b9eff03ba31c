"""Study 1 (StarGAN v2 on RxRx19a): its job, its data views, its claims and headlines, its tables, its rehearsal."""

import numpy as np
import pandas as pd
import pytest

from medgan.config import load_params, resolve_profile
from medgan.data.phantoms import cells, resolve_options
from medgan.reports import Claim, Headline
from medgan.studies import available, build_job
from medgan.studies.rxrx19a_stargan_v2 import data, evaluation, paper
from medgan.studies.rxrx19a_stargan_v2.jobs import NOTEBOOK
from medgan.train.stargan_v2 import AUGMENT_KEYS

TARGETS = list(paper.DOMAINS)  # the paper's 4 domains, named as the loader names them


def scores_frame(*, fid_first=10.0, fid_last=5.0, lpips_first=0.3, lpips_last=0.2, accuracy=0.9,
                 truth_l1=0.1, identity_l1=0.2, fid_spread=1.0):
    """Rows per (step, mode, target) at steps 0, 50 and 100; the last target's last FID times fid_spread."""
    rows = []
    for mode in ("latent", "reference"):
        for step, fid, lpips in ((0, fid_first, 0.5), (50, (fid_first + fid_last) / 2, lpips_first),
                                 (100, fid_last, lpips_last)):
            for t, target in enumerate(TARGETS):
                scale = fid_spread if (step == 100 and t == len(TARGETS) - 1) else 1.0
                rows.append({"step": step, "mode": mode, "target": target, "fid": fid * scale, "lpips": lpips,
                             "accuracy": accuracy, "truth_l1": truth_l1, "identity_l1": identity_l1,
                             "lpips_Hoechst": lpips, "lpips_WGA": lpips / 2, "n_outputs": 8})
    return pd.DataFrame(rows)


def verdicts(scores, **kw):
    claims = paper.claims(scores, num_domains=len(TARGETS), **kw)
    assert all(isinstance(c, Claim) for c in claims)
    return {c.claim: c.supported for c in claims}


def test_claims_follow_the_numbers():
    good = verdicts(scores_frame())
    assert len(good) == 9 and all(good.values())
    assert not verdicts(scores_frame(fid_last=20.0))["FID falls with training (latent-guided)"]
    assert not verdicts(scores_frame(lpips_last=0.4))["Diversity (LPIPS) falls with training (reference-guided)"]
    assert not verdicts(scores_frame(accuracy=0.4))["Translations reach their target domain well above chance (latent-guided)"]
    assert not verdicts(scores_frame(truth_l1=0.3))["Translations are closer to the true render than the source is (latent-guided)"]
    assert not verdicts(scores_frame(fid_spread=3.0))["Domain-to-domain differences of FID are small"]
    assert verdicts(scores_frame(fid_spread=3.0), max_fid_ratio=4.0)["Domain-to-domain differences of FID are small"]


def test_claims_without_accuracy_or_truth_leave_those_out():
    scores = scores_frame().drop(columns=["accuracy", "truth_l1", "identity_l1"])
    assert len(verdicts(scores)) == 5


def test_headlines_are_the_last_checkpoint_means_beside_the_paper():
    heads = paper.headlines(scores_frame(fid_last=4.0, fid_spread=2.0), extractor_name="cnn", distance_name="d")
    assert all(isinstance(h, Headline) for h in heads) and len(heads) == 4
    by_label = {h.label: h for h in heads}
    assert by_label["FID, latent-guided"].ours == pytest.approx((3 * 4.0 + 8.0) / 4)
    assert by_label["LPIPS, reference-guided"].ours == pytest.approx(0.2)
    assert f"{paper.ITERATIONS['reference']:,}" in by_label["FID, reference-guided"].paper


def test_paper_vs_ours_puts_the_papers_directions_beside_ours():
    table = paper.paper_vs_ours_table(scores_frame(lpips_last=0.4))
    assert table.loc["latent", ("FID over training", "paper")] == "falls"
    assert table.loc["latent", ("FID over training", "ours")] == "falls"
    assert table.loc["reference", ("LPIPS over training", "ours")] == "rises"
    assert table.loc["latent", ("iterations", "paper")] == paper.ITERATIONS["latent"]
    assert table.loc["latent", ("iterations", "ours")] == 100


def test_citation_names_authors_title_venue_and_year():
    text = str(paper.CITATION)
    assert "Lee" in text and "Style Transformation Model" in text and "2021" in text
    assert "Journal of Knowledge Information Technology and Systems" in text


def test_summary_and_stain_tables():
    scores = scores_frame()
    baselines = pd.DataFrame([{"mode": m, "target": t, "fid": 1.0, "n_outputs": 4}
                              for m in ("identity", "real (held-out)") for t in TARGETS])
    result = evaluation.TrainingScores(scores=scores, baselines=baselines)
    table = evaluation.summary_table(result, extractor_name="cnn", distance_name="d")
    assert set(table["row"]) == {"trained (last checkpoint)", "untrained generator", "identity", "real (held-out)"}
    assert "FID (cnn)" in table and len(result.real()) == len(TARGETS)
    stains = evaluation.stain_drop_table(scores, stain_names=["Hoechst", "WGA"])
    assert list(stains.columns) == ["mode", "stain", "diversity at 50", "diversity at 100", "relative change"]
    assert stains["relative change"].round(6).eq(round((0.2 - 0.3) / 0.3, 6)).all()


def test_departures_from_the_paper_profile():
    smoke = paper.departures_from_paper_profile(load_params(NOTEBOOK, "smoke"))
    assert "train.steps" in smoke.index and "train.betas" not in smoke.index
    assert not any(k.startswith("data.phantom") for k in smoke.index)
    assert paper.departures_from_paper_profile(load_params(NOTEBOOK, "paper")).empty


def test_job_is_registered_and_leaves_the_fingerprint_to_the_engine():
    assert (NOTEBOOK, "stargan_v2") in available()
    P = load_params(NOTEBOOK, "smoke")
    job = build_job(NOTEBOOK, "stargan_v2", P)
    assert "fingerprint" not in job.options
    assert job.options["total_steps"] == P.train.steps
    assert job.options["keep_checkpoints"] == P.train.n_checkpoints + 1
    assert job.options["num_workers"] == P.data.num_workers and job.options["sample_count"] == P.train.sample_count
    assert job.info["domains"] == list(paper.DOMAINS) and len(job.dataset) == sum(job.info["train_images_per_domain"].values())
    # same seed, same initial weights (they are part of the run's fingerprint); another seed, others
    again = build_job(NOTEBOOK, "stargan_v2", P)
    other = build_job(NOTEBOOK, "stargan_v2", load_params(NOTEBOOK, "smoke", {"seed": 1}))
    weights = lambda j: next(iter(j.step.nets["generator"].parameters())).detach()  # noqa: E731
    assert weights(job).equal(weights(again)) and not weights(job).equal(weights(other))


def test_evaluation_data_holds_labels_and_counts_not_pixels():
    P = load_params(NOTEBOOK, "smoke")
    crops = data.load_evaluation_data(P)
    for dataset, labels in ((crops.train, crops.train_labels), (crops.heldout, crops.heldout_labels)):
        assert dataset.store is not None  # pixels stay in the item store, read per item
        assert labels.tolist() == [row["label"] for row in dataset.rows]
    splits = {crops.heldout.split_map[row["subject"]] for row in crops.heldout.rows}
    assert splits == {"val", "test"} and crops.has_truth and "truth" in crops.heldout[0]
    first_test = [crops.heldout.split_map[r["subject"]] for r in crops.heldout.rows].index("test")
    assert all(crops.heldout.split_map[r["subject"]] == "test" for r in crops.heldout.rows[first_test:])  # val first
    assert crops.counts[("images", "train")].sum() == len(crops.train)
    assert crops.counts["images"][["val", "test"]].to_numpy().sum() == len(crops.heldout)
    assert (crops.counts["wells"] > 0).all().all()  # every domain has wells in every split
    assert crops.first_train_image_per_domain().shape == (len(paper.DOMAINS), 5, P.data.image_size, P.data.image_size)
    examples = evaluation.evaluation_set(crops, P)
    assert examples.has_truth and len(examples.source_index) == len(paper.DOMAINS) * P.eval.max_sources_per_domain


def test_rehearsal_keeps_the_paper_geometry_and_networks_on_paper_size_sites():
    paper_p, rehearse = load_params(NOTEBOOK, "paper"), load_params(NOTEBOOK, "rehearse")
    assert rehearse.model.to_dict() == paper_p.model.to_dict()
    for key in ("crop_size", "image_size", "split_fractions", "num_workers", "cell_type"):
        assert rehearse.data[key] == paper_p.data[key]
    options = resolve_options("cells", rehearse.data.phantom.to_dict())
    assert options["field_size"] == cells.SITE_SIZE_PX == 4 * paper_p.data.crop_size  # 16 crops per site
    assert options == {**cells.DEFAULTS, **cells.paper_size(resolve_profile(NOTEBOOK, "paper"))}
    assert rehearse.train.steps < paper_p.train.steps and rehearse.eval.n_styles >= 2


def test_job_samples_balanced_augments_and_reads_no_pixels(monkeypatch):
    """The job passes the engine balanced source weights (1 / images of the item's domain) and the
    profile's augmentation, which the step shares for its references; building it reads no crop
    (references come from the dataset by index during training); by_count leaves the engine's shuffle."""
    reads = []
    original = data.RxRx19a.__getitem__
    monkeypatch.setattr(data.RxRx19a, "__getitem__", lambda self, i: reads.append(i) or original(self, i))
    P = load_params(NOTEBOOK, "smoke")
    job = build_job(NOTEBOOK, "stargan_v2", P)
    assert reads == []
    labels = data.labels_of(job.dataset).numpy()
    counts = np.bincount(labels)
    np.testing.assert_allclose(job.options["sample_weights"], 1.0 / counts[labels])
    assert job.step.sampling == "balanced" and job.step._references is job.dataset
    aug = job.options["augment"]
    assert aug is job.step.augment and aug.keys == AUGMENT_KEYS
    assert aug.hflip == P.augment.hflip and aug.random_resized_crop[0] == P.augment.random_resized_crop.p
    by_count = build_job(NOTEBOOK, "stargan_v2", load_params(NOTEBOOK, "smoke", {"train.sampling": "by_count"}))
    assert by_count.options["sample_weights"] is None and by_count.step.sampling == "by_count"


def test_paper_profile_is_the_official_afhq_configuration():
    """clovaai/stargan-v2: the README's AFHQ command on main.py's defaults, data_loader.py's augmentation."""
    P = load_params(NOTEBOOK, "paper")
    afhq = {"lambda_reg": 1.0, "lambda_sty": 1.0, "lambda_ds": 2.0, "lambda_cyc": 1.0, "ds_iter": 100_000,
            "steps": 100_000, "batch_size": 8, "lr": 1e-4, "mapping_lr": 1e-6, "betas": [0.0, 0.99],
            "weight_decay": 1e-4, "ema_beta": 0.999, "sampling": "balanced", "reference_mode": True}
    assert {k: P.train[k] for k in afhq} == afhq
    assert (P.data.image_size, P.model.latent_dim, P.model.style_dim, P.model.mapping_hidden) == (256, 16, 64, 512)
    assert P.augment.to_dict() == {"random_resized_crop": {"p": 0.5, "scale": [0.8, 1.0], "ratio": [0.9, 1.1]},
                                   "hflip": 0.5, "vflip": 0.0}


def test_protocol_table_is_computed_from_the_parameters():
    default = paper.protocol(load_params(NOTEBOOK, "default"))
    assert list(default.columns) == ["this run", "paper profile (official StarGAN v2, AFHQ)"]
    assert default.loc["source images", "this run"].startswith("balanced")
    assert "random resized crop with probability 0.5" in default.loc["augmentation", "this run"]
    assert "λ_ds 2 " in default.loc["loss weights", "paper profile (official StarGAN v2, AFHQ)"]
    assert "λ_ds 1 " in default.loc["loss weights", "this run"]
    P = load_params(NOTEBOOK, "smoke", {"train.sampling": "by_count", "augment.hflip": 0.0,
                                        "augment.random_resized_crop.p": 0.0})
    ours = paper.protocol(P)["this run"]
    assert ours["source images"].startswith("by count") and ours["augmentation"] == "none"
    assert f"{P.train.steps:,} iterations of batch {P.train.batch_size}" in ours["schedule"]
