"""Study 5 on a tiny CXR phantom: patient splits, label views, severity truth, AnoGAN queries,
its jobs, its figures, and its claims and headlines computed from the numbers."""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from medgan.analysis.anogan import ANOGAN, BASELINE, AnomalyEvaluation
from medgan.analysis.classifier_fidelity import ThreeStepResult
from medgan.analysis.latent_axes import LatentAxes
from medgan.config import load_params
from medgan.data import phantoms
from medgan.studies import available, build_job
from medgan.studies.cxr_pggan import data as cxr_data
from medgan.studies.cxr_pggan import figures as F
from medgan.studies.cxr_pggan import jobs, latent_walks, paper

SMALL = {"data.phantom.n_patients": 60, "data.phantom.image_size": 32, "data.image_size": 16,
         "data.phantom.normal_fraction": 0.3}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cxr")
    P = load_params("05_cxr_pggan", "smoke", SMALL)
    folder = phantoms.ensure("cxr", root=root, **P.data.phantom.to_dict())
    P = load_params("05_cxr_pggan", "smoke", {**SMALL, "data.root": str(folder)})
    data = cxr_data.load_data(P)
    assert data.is_phantom  # data.root points at a phantom folder: its truth/ is found
    return P, data


def test_jobs_registered():
    names = {m for nb, m in available() if nb == jobs.NOTEBOOK}
    assert {"pggan", "pggan_normal", "classifier_real", "classifier_synthetic", "multilabel", "severity"} <= names


def test_jobs_leave_the_fingerprint_to_the_engine(tiny):
    P, _ = tiny
    for model in ("pggan", "pggan_normal", "classifier_real", "multilabel", "severity"):
        job = build_job(jobs.NOTEBOOK, model, P)
        assert "fingerprint" not in job.options, model
        assert job.options["seed"] == P.seed and job.options["total_steps"] > 0


def test_splits_are_by_patient_and_views_relabel(tiny):
    P, data = tiny
    subjects = [set(getattr(data, s).subjects) for s in ("train", "val", "test")]
    assert not (subjects[0] & subjects[1]) and not (subjects[0] & subjects[2]) and not (subjects[1] & subjects[2])
    binary = cxr_data.binary_view(data.train)
    assert set(binary.label_array().tolist()) <= {0, 1} and "mask" not in binary[0]
    np.testing.assert_array_equal(binary.label_array(), [r["meta"]["abnormal"] for r in data.train.rows])
    multi = cxr_data.multilabel_view(data.train)
    labels = multi.label_array()
    assert labels.shape[1] == len(cxr_data.multilabel_names(P)) == 6
    # normal column is 1 exactly when no finding; untrained-only images are left out
    assert all(not r["meta"]["other_findings"] for r in multi.rows)
    np.testing.assert_array_equal(labels[:, 0], 1 - np.array([r["meta"]["abnormal"] for r in multi.rows]))
    item = multi[3]
    assert item["label"].dtype == torch.float32 and torch.equal(item["label"], torch.from_numpy(labels[3]))
    torch.testing.assert_close(item["image"], data.train[multi.indices[3]]["image"])  # pixels from the split's store
    assert all(label == 0 for label in cxr_data.normal_view(data.train).label_array())


def test_views_read_no_pixels_until_an_item_is_asked_for(tiny, monkeypatch):
    P, data = tiny
    reads = []
    original = type(data.train.store).read_array
    monkeypatch.setattr(type(data.train.store), "read_array",
                        lambda store, key, index: reads.append(key) or original(store, key, index))
    views = [cxr_data.binary_view(data.train), cxr_data.multilabel_view(data.train), cxr_data.normal_view(data.train),
             cxr_data.severity_view(data.train, cxr_data.severity_table(data.root, data.findings))]
    counts = data.counts()
    assert reads == [] and counts.loc["train", "images"] == len(data.train)
    assert all(len(v.fingerprint()) == 16 for v in views) and reads == []  # the engine's identity is free too
    views[0][0]
    assert reads == ["image"]  # a view drops the masks: they are never read


def test_severity_truth_matches_labels(tiny):
    P, data = tiny
    table = cxr_data.severity_table(data.root, data.findings)
    for r in data.train.rows:
        sev = table[r["subject"]]
        np.testing.assert_array_equal(sev > 0, np.asarray(r["label"]) > 0)


def test_anomaly_queries(tiny):
    P, data = tiny
    q = cxr_data.anomaly_queries(P, data)
    assert len(q.images) == len(q.findings) == len(q.masks)
    normal = np.array(q.findings) == "normal"
    np.testing.assert_array_equal(q.abnormal, ~normal)
    masks = q.masks[:]
    assert masks[normal].sum() == 0 and all(m.sum() > 0 for m in masks[~normal])
    assert q.normal_val.shape[1:] == q.images.shape[1:] and q.normal_mean.shape == (1, *q.images.shape[1:])
    assert q.images[[1, 0]].shape == (2, *q.images.shape[1:]) and torch.equal(q.images[[1, 0]][1], q.images[0])
    normals = [i for i, r in enumerate(data.train.rows) if not r["meta"]["abnormal"]]
    expected = torch.stack([data.train[i]["image"] for i in normals]).double().mean(0, keepdim=True).float()
    torch.testing.assert_close(q.normal_mean, expected)


def test_gradcam_cases_are_half_normal_with_masks(tiny):
    P, data = tiny
    images, titles, masks = cxr_data.gradcam_cases(data, 4)
    assert images.shape[0] == len(titles) == masks.shape[0] == 4 and masks.shape[1:] == images.shape[2:]
    assert titles[:2] == ["normal", "normal"] and all(t != "normal" for t in titles[2:])
    assert masks[:2].sum() == 0 and all(m.sum() > 0 for m in masks[2:])


def test_paper_profile_builds_the_thesis_pggans_and_normal_only_overrides_reach_the_model():
    thesis = load_params("05_cxr_pggan", "paper")
    for normal_only in (False, True):
        config = jobs.pggan_config(thesis, normal_only=normal_only)
        assert (config.resolution, config.z_dim, config.width) == tuple(paper.PGGAN_SETUP.values())
        assert jobs.pggan_settings(thesis, normal_only=normal_only).ema_decay == 0.999
    default = load_params("05_cxr_pggan", "default", {"pggan_normal.width": 0.25})
    assert jobs.pggan_config(default, normal_only=True).width == 0.25
    assert jobs.pggan_config(default).width == default.pggan.width != 0.25


def test_every_figure_draws():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(10), np.ones(10)]
    fig = F.roc_figure({"a": (y, rng.random(20)), "b": (y, y + rng.random(20))}, title="roc")
    assert len(fig.axes[0].lines) == 3
    cm = pd.DataFrame([[5, 1], [2, 4]], index=["true normal", "true abnormal"],
                      columns=["predicted normal", "predicted abnormal"])
    assert len(F.confusion_figure({"x": cm, "y": cm}).axes) == 2
    imgs = torch.rand(3, 1, 8, 8) * 2 - 1
    fig = F.axis_walk_figure({"A": imgs, "B": imgs}, steps=[0, 1, 2], cams={"A": torch.rand(3, 8, 8), "B": torch.rand(3, 8, 8)},
                             likelihoods={"A": [0.1, 0.5, 0.9], "B": [0, 0, 0]})
    assert len(fig.axes) == 12
    F.axis_likelihood_figure([0, 1, 2], {"A": [0.1, 0.5, 0.9]}, spread={"A": [0.1, 0.1, 0.1]})
    F.severity_figure([0, 1, 2], {"A": np.array([[0, 0.2, 0.4], [0, 0.3, 0.5]])})
    fig = F.anomaly_examples_figure(imgs, imgs, np.abs(imgs[:, 0].numpy()), masks=torch.zeros(3, 1, 8, 8),
                                    baseline_maps=np.zeros((3, 8, 8)), titles=["a", "b", "c"])
    assert len(fig.axes) == 15
    assert len(F.heatmap_overlay_figure(imgs, {"r": torch.rand(3, 8, 8), "s": torch.rand(3, 8, 8)}).axes) == 9
    plt.close("all")


# --- claims and headlines are computed from the numbers ----------------------------------------
def _three(*, synthetic_low=0.7, delong_p=0.2):
    results = {paper.REAL_ON_REAL: {"auroc": 0.95, "auroc_low": 0.9, "auroc_high": 0.99},
               paper.SYNTHETIC_ON_REAL: {"auroc": 0.8, "auroc_low": synthetic_low, "auroc_high": 0.9}}
    return ThreeStepResult(results=results, delong={"difference": 0.15, "p_value": delong_p}, confusions={}, curves={})


def _evaluation(*, anogan_low=0.6, untrained=(0.8, 0.2), dice_low=0.01, anogan_seconds=1.0):
    methods = [ANOGAN, BASELINE, paper.SUPERVISED]
    summary = pd.DataFrame({"image AUROC": [0.8, 0.6, 0.9], "AUROC low": [anogan_low, 0.4, 0.8],
                            "AUROC high": [0.9, 0.7, 0.95], "DeLong p vs AnoGAN": [np.nan, 0.01, 0.3],
                            "pixel AUROC": [0.9, 0.7, np.nan], "Dice": [0.3, 0.1, np.nan],
                            "s / query": [anogan_seconds, 0.0, 0.001]}, index=pd.Index(methods, name="method"))
    rows = ["trained findings", "untrained findings", "all abnormal"]
    detection = pd.concat({m: pd.DataFrame({"detected": [3, 4, 7], "n": [5, 5, 10],
                                            "rate": [0.6, rate, 0.7]}, index=rows)
                           for m, rate in zip([ANOGAN, BASELINE, paper.SUPERVISED], [untrained[0], 0.1, untrained[1]])},
                          axis=1)
    test = pd.DataFrame({"difference": [0.2, 0.1], "low": [0.05, dice_low], "high": [0.3, 0.2]},
                        index=["pixel AUROC", "Dice"])
    return AnomalyEvaluation(summary=summary, detection=detection, thresholds={}, scores={}, findings=np.array([]),
                             localisation_test=test)


def _axes(end=0.9):
    return pd.DataFrame({"likelihood at start": [0.1, 0.1], "likelihood at end": [end, 0.2],
                         "Spearman(step, severity)": [0.8, 0.1]}, index=["Consolidation", "Pleural Effusion"])


def _verdicts(**kw):
    three = _three(**{k: v for k, v in kw.items() if k in ("synthetic_low", "delong_p")})
    evaluation = _evaluation(**{k: v for k, v in kw.items() if k in ("anogan_low", "untrained", "dice_low",
                                                                     "anogan_seconds")})
    claims = paper.claims(three, _axes(kw.get("end", 0.9)), True, evaluation)
    assert all(c.evidence for c in claims)
    return [c.supported for c in claims]


def test_claims_follow_the_numbers():
    base = _verdicts()
    assert base == [True, True, True, True, True, True, True, True, True]
    flips = {"synthetic_low": 0.45, "delong_p": 0.01, "end": 0.2, "anogan_low": 0.49, "dice_low": -0.01,
             "untrained": (0.1, 0.2), "anogan_seconds": 0.005}
    for index, (key, value) in zip([0, 1, 2, 4, 6, 7, 8], flips.items()):
        flipped = _verdicts(**{key: value})
        assert flipped[index] is False and sum(flipped) == len(base) - 1, key


def test_claims_without_axes_say_so():
    claims = paper.claims(_three(), pd.DataFrame(), False, _evaluation())
    assert any(c.claim.startswith("(b) latent disease axes exist") and not c.supported for c in claims)


def test_headlines_carry_ours_and_the_thesis():
    heads = paper.headlines(_three(), _evaluation())
    assert [h.ours for h in heads[:3]] == [0.95, 0.8, 0.8]
    assert heads[0].paper == paper.THREE_STEP.loc[paper.REAL_ON_REAL, "AUROC"] == 0.983
    assert heads[1].paper == paper.THREE_STEP.loc[paper.SYNTHETIC_ON_REAL, "AUROC"] == 0.881
    assert heads[2].paper is None and heads[3].ours == 0.7 and heads[3].paper == 0.89


def test_table6_comparison_puts_the_thesis_beside_ours():
    table = paper.table6_comparison(_evaluation())
    thesis = table["thesis (AnoGAN, radiologist reading)"]
    assert thesis.loc["all abnormal", "detected"] == 89 and thesis.loc["untrained findings (supervised CNN)", "n"] == 60
    assert table[f"ours ({ANOGAN}, threshold)"].loc["all abnormal", "rate"] == 0.7


class _Bright(torch.nn.Module):
    """z -> (B, 1, 16, 16) images whose brightness follows z[:, 0] (a stand-in PGGAN)."""

    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(0.9))

    def forward(self, z):
        return (self.gain * torch.tanh(z[:, :1, None, None])).expand(-1, 1, 16, 16)


class _Scorer(torch.nn.Module):
    def __init__(self, sharpness):
        super().__init__()
        self.sharpness = torch.nn.Parameter(torch.tensor(float(sharpness)))

    def predict_proba(self, images):
        return torch.sigmoid(self.sharpness * images.flatten(1).mean(1, keepdim=True))


@pytest.mark.parametrize("sharpness, by_rank", [(20.0, 0), (0.01, 1)])
def test_synthetic_training_set_is_written_to_disk_and_labelled(tiny, tmp_path, sharpness, by_rank):
    _, data = tiny
    P = load_params("05_cxr_pggan", "smoke", {**SMALL, "data.root": str(data.root), "fidelity.positive_above": 0.7,
                                              "fidelity.negative_below": 0.3})  # the thesis's thresholds
    real = cxr_data.binary_view(data.train)
    dataset, info = jobs.synthetic_training_set(P, _Bright(), _Scorer(sharpness), z_dim=8, real_train=real,
                                                image_dir=tmp_path)
    assert dataset.store.folder.parent == tmp_path and (dataset.store.folder / "image.bin").is_file()
    labels = np.array([r["label"] for r in dataset.rows])
    assert info["labelled by rank instead (too few confident; 1 = yes)"] == by_rank
    assert (labels == 0).sum() == info["kept normal"] >= 1 and (labels == 1).sum() == info["kept abnormal"] >= 1
    counts = np.bincount(real.label_array(), minlength=2)
    assert len(labels) <= counts.sum() and info["generated"] == P.fidelity.n_generate
    brightness = np.array([dataset[i]["image"].mean().item() for i in range(len(dataset))])
    assert brightness[labels == 1].min() > brightness[labels == 0].max()  # abnormal = the bright ones, either way


def test_walk_without_a_finding_axis_walks_nothing(tiny):
    P, _ = tiny
    names = cxr_data.multilabel_names(P)
    axes = LatentAxes(axes=np.full((len(names), 4), np.nan), class_names=names, counts=dict.fromkeys(names, 0),
                      found={n: n == cxr_data.NORMAL for n in names}, kept=np.zeros(3, bool))
    found = latent_walks.AxisDiscovery(latents=np.zeros((3, 4), np.float32), probabilities=np.zeros((3, len(names))),
                                       axes=axes, class_names=names)  # no confident normal to start from either
    walked = latent_walks.walk(P, SimpleNamespace(z_dim=4), found, classifier=None)
    assert walked.walks == {} and len(walked.summary) == 0 and walked.starts.shape == (0, 4)
    assert any(c.claim.startswith("(b) latent disease axes exist") and not c.supported
               for c in paper.claims(_three(), walked.summary, False, _evaluation()))
