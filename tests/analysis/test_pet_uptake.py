import numpy as np
import pytest
import torch

from medgan.analysis import pet_uptake


def test_suv_scale_round_trip():
    suv = torch.tensor([0.0, 7.5, 15.0])
    x = pet_uptake.from_suv(suv, suv_max=15)
    assert torch.allclose(x, torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.allclose(pet_uptake.to_suv(x, suv_max=15), suv)


def test_uptake_ratio_and_scaled_identity():
    early = pet_uptake.from_suv(torch.full((2, 1, 4, 4), 2.0), suv_max=10)
    delayed = pet_uptake.from_suv(torch.full((2, 1, 4, 4), 3.0), suv_max=10)
    ratio = pet_uptake.uptake_ratio(early, delayed, suv_max=10)
    assert ratio == pytest.approx(1.5)
    scaled = pet_uptake.scaled_identity(early, ratio=ratio, suv_max=10)
    assert torch.allclose(scaled, delayed)


def test_psnr_gains_20_db_per_decade_of_range():
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(3, 1, 8, 8, generator=g) * 2 - 1
    pred = (truth + 0.05 * torch.randn(3, 1, 8, 8, generator=g)).clamp(-1, 1)
    table = pet_uptake.psnr_range_sweep({"m": pred}, truth, suv_max=10, ranges_suv=[1.0, 10.0, 100.0])
    row = table.loc["m"].to_numpy()
    assert np.diff(row) == pytest.approx([20.0, 20.0], abs=1e-6)


def test_lesion_uptake_against_hand_computation():
    truth = pet_uptake.from_suv(torch.zeros(2, 1, 4, 4), suv_max=10).clone()
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, 0, 1, 1] = mask[1, 0, 2, 2] = 1
    truth_suv = torch.zeros(2, 1, 4, 4)
    truth_suv[0, 0, 1, 1], truth_suv[1, 0, 2, 2] = 8.0, 4.0
    truth = pet_uptake.from_suv(truth_suv, suv_max=10)
    pred = pet_uptake.from_suv(truth_suv * 0.5, suv_max=10)
    table = pet_uptake.lesion_uptake({"half": pred}, truth, mask, ["s1", "s1"], suv_max=10)
    row = table.iloc[0]
    assert row["true SUVmax"] == pytest.approx(8.0) and row["pred SUVmax"] == pytest.approx(4.0)
    assert row["true SUVmean"] == pytest.approx(6.0) and row["SUVmean error %"] == pytest.approx(-50.0)
    summary = pet_uptake.lesion_summary(table)
    assert summary.loc["half", "|SUVmax error| %"] == pytest.approx(50.0)
