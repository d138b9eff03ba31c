import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import torch

from medgan.reports import cxr_figures as F


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
    import matplotlib.pyplot as plt
    plt.close("all")
