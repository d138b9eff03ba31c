"""Batch augmentation: the reference operations, deterministic by (seed, step), rank-independent."""

import math

import pytest
import torch
import torch.nn.functional as F

from medgan.data.augment import Augment, _resized_crop_boxes


def images(n=8, c=2, s=16, seed=0):
    return torch.rand(n, c, s, s, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_nothing_to_do_is_none_and_unknown_ops_fail():
    assert Augment.from_params({}, keys=["image"]) is None
    assert Augment.from_params({"hflip": 0.0}, keys=["image"]) is None
    with pytest.raises(ValueError, match="unknown operation"):
        Augment.from_params({"rotate": 10}, keys=["image"])
    with pytest.raises(ValueError, match="probability"):
        Augment.from_params({"hflip": 1.5}, keys=["image"])


def test_flip_probability_one_mirrors_every_image():
    x = images()
    out = Augment.from_params({"hflip": 1.0, "vflip": 1.0}, keys=["image"])({"image": x}, seed=0, step=0)
    assert torch.equal(out["image"], x.flip(-1).flip(-2))


def test_flip_frequency_is_its_probability():
    aug = Augment.from_params({"hflip": 0.5}, keys=["image"])
    x = images(n=50, c=1, s=4)
    flipped = 0
    for step in range(200):
        out = aug({"image": x}, seed=3, step=step)["image"]
        flipped += int((~torch.isclose(out, x).flatten(1).all(1)).sum())
    n = 50 * 200  # a 4x4 random image equals its mirror with probability 0
    assert abs(flipped - n / 2) < 3 * math.sqrt(n / 4)


def test_same_seed_and_step_same_draw_other_step_other_draw():
    aug = Augment.from_params({"hflip": 0.5, "random_resized_crop": {"p": 0.5, "scale": [0.8, 1.0],
                                                                      "ratio": [0.9, 1.1]}}, keys=["image"])
    x = images(n=16)
    a = aug({"image": x}, seed=1, step=5)["image"]
    assert torch.equal(a, aug({"image": x}, seed=1, step=5)["image"])
    assert not torch.equal(a, aug({"image": x}, seed=1, step=6)["image"])
    assert not torch.equal(a, aug({"image": x}, seed=2, step=5)["image"])


@pytest.mark.parametrize("spec", [{"hflip": 0.5}, {"resize_crop": {"load": 20, "crop": 16}, "hflip": 0.5},
                                  {"random_resized_crop": {"p": 0.5, "scale": [0.8, 1.0], "ratio": [0.9, 1.1]}}])
def test_each_image_gets_the_same_transform_on_one_or_three_ranks(spec):
    aug = Augment.from_params(spec, keys=["A", "B"])
    x = {"A": images(n=12, seed=1), "B": images(n=12, seed=2), "label": torch.arange(12)}
    one = aug(x, seed=7, step=3)
    world = 3
    # rank r holds the global places r, r + 3, ... (DistributedSampler's deal)
    parts = [aug({k: v[r::world] for k, v in x.items()}, seed=7, step=3, rank=r, world_size=world)
             for r in range(world)]
    for key in ("A", "B"):
        merged = torch.empty_like(one[key])
        for r in range(world):
            merged[r::world] = parts[r][key]
        assert torch.equal(merged, one[key])
    assert torch.equal(one["label"], x["label"])  # keys not named are untouched


def test_paired_keys_share_one_draw_unpaired_do_not():
    x = images(n=16)
    spec = {"hflip": 0.5, "resize_crop": {"load": 22, "crop": 16}}
    paired = Augment.from_params(spec, keys=["A", "B"], paired=True)({"A": x, "B": x.clone()}, seed=0, step=0)
    assert torch.equal(paired["A"], paired["B"])
    unpaired = Augment.from_params(spec, keys=["A", "B"])({"A": x, "B": x.clone()}, seed=0, step=0)
    assert not torch.equal(unpaired["A"], unpaired["B"])


def test_resize_crop_is_a_window_of_the_bicubic_resize():
    x = images(n=6)
    aug = Augment.from_params({"resize_crop": {"load": 24, "crop": 16}}, keys=["image"])
    out = aug({"image": x}, seed=0, step=0)["image"]
    assert out.shape == (6, 2, 16, 16)
    big = F.interpolate(x, size=(24, 24), mode="bicubic", align_corners=False)
    for j in range(6):
        windows = [big[j, :, t:t + 16, l:l + 16] for t in range(9) for l in range(9)]
        assert any(torch.equal(out[j], w) for w in windows)
    same = Augment.from_params({"resize_crop": {"load": 16, "crop": 16}}, keys=["image"])
    assert torch.allclose(same({"image": x}, seed=0, step=0)["image"], x, atol=1e-6)


def test_resized_crop_boxes_follow_torchvisions_rules():
    g = torch.Generator().manual_seed(0)
    h, w, scale, ratio = 64, 48, (0.8, 1.0), (0.9, 1.1)
    boxes = _resized_crop_boxes(g, 2000, h, w, scale, ratio)
    top, left, bh, bw = boxes.unbind(1)
    assert bool((top >= 0).all() and (left >= 0).all() and (top + bh <= h).all() and (left + bw <= w).all())
    area = (bh * bw).double() / (h * w)
    # rounding a side moves the area by at most about one row or column
    assert float(area.min()) >= scale[0] - 2 / min(h, w) and float(area.max()) <= 1.0
    aspect = bw.double() / bh
    fallback = (bh == h) & (bw == round(h * ratio[0])) | (bw == w) & (bh == round(w / ratio[0]))
    inside = aspect[~fallback]
    assert float(inside.min()) > ratio[0] * 0.95 and float(inside.max()) < ratio[1] * 1.05
    full = _resized_crop_boxes(g, 10, 16, 16, (1.0, 1.0), (1.0, 1.0))
    assert torch.equal(full, torch.tensor([[0, 0, 16, 16]] * 10))


def test_random_resized_crop_with_probability_zero_or_full_box_is_identity():
    x = images(n=4)
    full = Augment.from_params({"random_resized_crop": {"p": 1.0, "scale": [1.0, 1.0], "ratio": [1.0, 1.0]}},
                               keys=["image"])
    assert torch.allclose(full({"image": x}, seed=0, step=0)["image"], x, atol=1e-6)
    assert Augment.from_params({"random_resized_crop": {"p": 0.0}}, keys=["image"]) is None


def test_describe_names_each_operation():
    text = Augment.from_params({"hflip": 0.5, "resize_crop": {"load": 286, "crop": 256}},
                               keys=["A", "B"], paired=True).describe()
    assert "286" in text and "256" in text and "left-right flip with probability 0.5" in text
    assert "same draw" in text
