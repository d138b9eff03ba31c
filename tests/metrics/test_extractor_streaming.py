"""Extractor training from a store-backed dataset: the same weights as from tensors, read batch by batch."""

from __future__ import annotations

import functools
import json
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from medgan.atomic import torch_save
from medgan.data.base import BadInputLog, ItemListDataset
from medgan.data.item_store import build_store
from medgan.metrics import features as feat
from medgan.metrics.features import (ConcatLabelledItems, LabelledItems, finetune_inception_v3, train_domain_cnn)
from medgan.train.fingerprint import tensor_digest

SMALL_CNN = dict(epochs=2, batch_size=8, lr=3e-3, seed=3, device="cpu", feature_dim=8, width=4, num_blocks=2,
                 progress=False)


def decode_item(entry: int, *, root: str) -> list[dict]:
    """Item ``entry`` of the arrays saved in ``root``: image, a second view (``target``), label."""
    images, targets, labels = (np.load(Path(root) / f"{k}.npy", mmap_mode="r") for k in ("image", "target", "label"))
    return [{"image": np.array(images[entry]), "target": np.array(targets[entry]), "label": int(labels[entry]),
             "subject": f"s-{entry // 3}", "meta": {"index": entry}}]


decode_item.version = 1


def toy_arrays(n: int, channels: int = 1, size: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = rng.normal(0, 0.3, size=(n, channels, size, size))
    images[labels == 1, :, :, : size // 2] += 0.8
    targets = -images[:, :, ::-1].copy()
    return (np.clip(images, -1, 1).astype(np.float32), np.clip(targets, -1, 1).astype(np.float32),
            labels.astype(np.int64))


def store_dataset(tmp_path: Path, images, targets, labels) -> ItemListDataset:
    """The arrays as an item-store loader would serve them: pixels on disk, labels in ``rows``."""
    root = tmp_path / "data"
    root.mkdir(parents=True, exist_ok=True)
    for key, value in (("image", images), ("target", targets), ("label", labels)):
        np.save(root / f"{key}.npy", value)
    files = sorted(root.glob("*.npy"))
    store = build_store(list(range(len(images))), functools.partial(decode_item, root=str(root)), name="toy",
                        root=root, files=files, settings={}, bad_input=BadInputLog(name="toy", root=root),
                        where=lambda e: root, progress=False)
    return ItemListDataset(store)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_domain_cnn_from_a_store_dataset_equals_training_from_its_tensors(tmp_path):
    images, targets, labels = toy_arrays(28)
    dataset = store_dataset(tmp_path, images, targets, labels)
    from_tensors = train_domain_cnn(images, labels, channels=1, **SMALL_CNN)
    from_dataset = train_domain_cnn(dataset, channels=1, **SMALL_CNN)  # labels from the rows, channels checked
    from_view = train_domain_cnn(LabelledItems(dataset), **SMALL_CNN)  # channels from the first item
    assert_same_weights(from_tensors, from_dataset)
    assert_same_weights(from_tensors, from_view)
    assert from_dataset.name == from_tensors.name  # the name carries the weights' digest
    assert len(from_dataset.history) == 2 and from_dataset.history["loss"].tolist() == \
        from_tensors.history["loss"].tolist()
    # labels given beside the dataset (here: flipped) train as the same labels in tensors
    flipped = train_domain_cnn(dataset, 1 - labels, channels=1, **SMALL_CNN)
    assert_same_weights(train_domain_cnn(images, 1 - labels, channels=1, **SMALL_CNN), flipped)
    with pytest.raises(ValueError, match=r"expected \(N, 5, H, W\)"):
        train_domain_cnn(dataset, channels=5, **SMALL_CNN)
    with pytest.raises(ValueError, match="labels must lie in"):
        train_domain_cnn(dataset, num_classes=1, **SMALL_CNN)


def test_two_views_of_one_dataset_equal_the_concatenated_tensors(tmp_path):
    """The PET study's set: early slices labelled 0, then delayed ones (``target``) labelled 1."""
    images, targets, labels = toy_arrays(12)
    dataset = store_dataset(tmp_path, images, targets, labels)
    views = ConcatLabelledItems([LabelledItems(dataset, image_key="image", labels=0),
                                 LabelledItems(dataset, image_key="target", labels=1)])
    assert len(views) == 24 and views.labels.tolist() == [0] * 12 + [1] * 12
    torch.testing.assert_close(views[13]["image"], torch.from_numpy(targets[1]), rtol=0, atol=0)
    with pytest.raises(IndexError):
        views[24]
    joined = np.concatenate([images, targets])
    split = np.repeat([0, 1], 12)
    assert_same_weights(train_domain_cnn(joined, split, **{**SMALL_CNN, "epochs": 1}),
                        train_domain_cnn(views, **{**SMALL_CNN, "epochs": 1}))


@pytest.fixture(scope="module")
def imagenet_weights(tmp_path_factory):
    """A random state dict shaped like torchvision's ImageNet Inception file."""
    from torchvision.models import inception_v3

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("w") / "inception_v3_google-0cc3c7bd.pth"
    torch_save(inception_v3(weights=None, aux_logits=False, init_weights=False).state_dict(), path)
    return path


def test_finetuned_inception_from_a_store_dataset_equals_training_from_its_tensors(tmp_path, imagenet_weights):
    images, targets, labels = toy_arrays(4, size=24)
    dataset = store_dataset(tmp_path, images, targets, labels)
    kw = dict(weights_path=imagenet_weights, epochs=1, batch_size=2, lr=1e-4, device="cpu", seed=0, resize_to=75,
              progress=False)
    from_tensors = finetune_inception_v3(images, labels, **kw)
    from_dataset = finetune_inception_v3(dataset, **kw)  # resizing and channel repeat happen per batch
    assert_same_weights(from_tensors.net, from_dataset.net)
    assert from_dataset.name == from_tensors.name


class CountingItems(Dataset):
    """A store-backed dataset that counts its reads and keeps a weak reference to every image it hands out."""

    def __init__(self, dataset: ItemListDataset):
        self.dataset, self.rows = dataset, dataset.rows
        self.reads = 0
        self.alive: weakref.WeakSet = weakref.WeakSet()

    def __len__(self) -> int:
        return len(self.dataset)

    def fingerprint(self) -> str:
        return self.dataset.fingerprint()

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        self.reads += 1
        self.alive.add(item["image"])
        return item


def test_training_from_a_dataset_reads_items_per_batch_and_never_gathers(tmp_path, monkeypatch):
    n, batch = 44, 8  # 5 full batches an epoch; the last 4 items of an epoch are not read
    images, targets, labels = toy_arrays(n)
    counting = CountingItems(store_dataset(tmp_path, images, targets, labels))
    view = LabelledItems(counting)
    view.fingerprint()
    assert counting.reads == 0  # labels from the rows, identity from the store: no pixel read
    most_alive, batch_sizes = [], []
    original = feat.ExtractorStep.train_step

    def watched(self, batch_items, ctx):
        most_alive.append(len(counting.alive))  # item images still referenced while the step runs
        batch_sizes.append(len(batch_items["image"]))
        return original(self, batch_items, ctx)

    monkeypatch.setattr(feat.ExtractorStep, "train_step", watched)
    largest = []  # leading size of every image tensor stacked or concatenated while training (collate included)
    for name in ("stack", "cat"):
        def recorded(tensors, *args, _join=getattr(torch, name), **kwargs):
            out = _join(tensors, *args, **kwargs)
            if out.ndim == 4:
                largest.append(out.shape[0])
            return out
        monkeypatch.setattr(torch, name, recorded)
    train_domain_cnn(view, **{**SMALL_CNN, "batch_size": batch, "epochs": 2, "run_dir": tmp_path / "runs"})
    monkeypatch.undo()
    assert batch_sizes == [batch] * 10
    assert largest and max(largest) == batch  # no (N, C, H, W) tensor of the whole set is ever made
    assert counting.reads == 1 + 2 * 5 * batch  # the first item's shape check, then each step's batch
    assert max(most_alive) == 0  # every item's image was collated into its batch and dropped


def test_a_view_is_keyed_by_its_dataset_keys_and_labels_and_tensors_keep_their_key(tmp_path):
    images, targets, labels = toy_arrays(16)
    dataset = store_dataset(tmp_path, images, targets, labels)
    base = LabelledItems(dataset).fingerprint()
    assert base == LabelledItems(dataset, labels=labels).fingerprint() | {"label_key": "label"}
    assert base != LabelledItems(dataset, image_key="target").fingerprint()
    assert base != LabelledItems(dataset, labels=1 - labels).fingerprint()
    assert base["items"]["content"] == dataset.fingerprint()  # forwarded, not recomputed from the pixels
    # the tensor path's dataset identity is what it always was (its runs keep their run folders)
    model = train_domain_cnn(images, labels, channels=1, **{**SMALL_CNN, "epochs": 1, "run_dir": tmp_path / "r"})
    identity = json.loads((model.run_dir / "fingerprint.json").read_text())["dataset"]
    assert identity == {"class": "_LabelledImages", "length": 16,
                        "content": {"images": tensor_digest(torch.from_numpy(images)),
                                    "labels": tensor_digest(torch.from_numpy(labels))}}
