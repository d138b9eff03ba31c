"""The study-5 recipe on a tiny CXR phantom: patient splits, label views, severity truth, AnoGAN queries."""

import numpy as np
import pytest

from medgan.config import load_params
from medgan.train.recipes import available, cxr_pggan as recipe


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cxr")
    P = load_params("05_cxr_pggan", "smoke", {"data.phantom.n_patients": 60, "data.phantom.image_size": 32,
                                              "data.image_size": 16, "data.phantom.normal_fraction": 0.3})
    from medgan.data import phantoms

    folder = phantoms.ensure("cxr", root=root, **P.data.phantom.to_dict())
    P = load_params("05_cxr_pggan", "smoke", {"data.phantom.n_patients": 60, "data.phantom.image_size": 32,
                                              "data.image_size": 16, "data.phantom.normal_fraction": 0.3,
                                              "data.root": str(folder)})
    data = recipe.load_data(P)
    assert data.is_phantom  # data.root points at a phantom folder: its truth/ is found
    return P, data


def test_recipes_registered():
    names = {m for nb, m in available() if nb == recipe.NOTEBOOK}
    assert {"pggan", "pggan_normal", "classifier_real", "classifier_synthetic", "multilabel", "severity"} <= names


def test_splits_are_by_patient_and_views_relabel(tiny):
    P, data = tiny
    subjects = [set(getattr(data, s).subjects) for s in ("train", "val", "test")]
    assert not (subjects[0] & subjects[1]) and not (subjects[0] & subjects[2]) and not (subjects[1] & subjects[2])
    binary = recipe.binary_view(data.train)
    assert {r["label"] for r in binary.records} <= {0, 1} and "mask" not in binary.records[0]
    multi = recipe.multilabel_view(data.train)
    labels = np.stack([r["label"] for r in multi.records])
    assert labels.shape[1] == 6
    # normal column is 1 exactly when no finding; untrained-only images are left out
    assert all(not r["meta"]["other_findings"] for r in multi.records)
    np.testing.assert_array_equal(labels[:, 0], 1 - np.array([r["meta"]["abnormal"] for r in multi.records]))
    assert all(r["label"] == 0 for r in recipe.normal_view(data.train).records)


def test_severity_truth_matches_labels(tiny):
    P, data = tiny
    table = recipe.severity_table(data.root, data.findings)
    for r in data.train.records:
        sev = table[r["subject"]]
        np.testing.assert_array_equal(sev > 0, np.asarray(r["label"]) > 0)


def test_anomaly_queries(tiny):
    P, data = tiny
    q = recipe.anomaly_queries(P, data)
    assert len(q.images) == len(q.findings) == len(q.masks)
    normal = np.array(q.findings) == "normal"
    assert q.masks[normal].sum() == 0 and all(m.sum() > 0 for m in q.masks[~normal])
    assert q.normal_val.shape[1:] == q.images.shape[1:] and q.normal_mean.shape == (1, *q.images.shape[1:])


def test_paper_profile_builds_the_thesis_pggans_and_normal_only_overrides_reach_the_model():
    paper = load_params("05_cxr_pggan", "paper")
    for normal_only in (False, True):
        config = recipe.pggan_config(paper, normal_only=normal_only)
        assert (config.resolution, config.z_dim, config.width) == (1024, 512, 1.0)
        assert recipe.pggan_settings(paper, normal_only=normal_only).ema_decay == 0.999
    default = load_params("05_cxr_pggan", "default", {"pggan_normal.width": 0.25})
    assert recipe.pggan_config(default, normal_only=True).width == 0.25
    assert recipe.pggan_config(default).width == default.pggan.width != 0.25
