import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medgan.atomic import torch_save
from medgan.metrics import features as feat
from medgan.metrics.features import (INCEPTION_ENV, WeightsNotFoundError, extract_features, finetune_inception_v3,
                                     get_extractor, train_domain_cnn)


@pytest.fixture(scope="module")
def fid_weights(tmp_path_factory):
    """A random state dict with exactly the keys/shapes of pytorch-fid's pt_inception-2015-12-05 file."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "pt_inception-2015-12-05-6726825d.pth"
    torch_save(feat._build_inception("fid", 1008).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def imagenet_weights(tmp_path_factory):
    """A random state dict shaped like torchvision's inception_v3_google-0cc3c7bd.pth (with AuxLogits)."""
    from torchvision.models import inception_v3

    torch.manual_seed(1)
    model = inception_v3(weights=None, aux_logits=True, init_weights=False)
    path = tmp_path_factory.mktemp("w") / "inception_v3_google-0cc3c7bd.pth"
    torch_save(model.state_dict(), path)
    return path, model


def test_fid_variant_matches_pytorch_fid_network(fid_weights, monkeypatch):
    import pytorch_fid.inception as fid

    state = torch.load(fid_weights, weights_only=True)
    # pytorch-fid would download; hand it the same local state dict instead.
    monkeypatch.setattr(fid, "load_state_dict_from_url", lambda *a, **k: state)
    reference = fid.InceptionV3([3], resize_input=True, normalize_input=False).eval()
    ours = get_extractor("inception_v3", weights_path=fid_weights)
    assert ours.name == "inception_v3[pytorch-fid TF-2015-12-05]"
    images = torch.rand(2, 1, 48, 40) * 2 - 1
    got, logits = extract_features(ours, images, batch_size=2)
    with torch.no_grad():
        expected = reference(images.expand(-1, 3, -1, -1))[0].flatten(1).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert got.shape == (2, 2048) and logits.shape == (2, 1008)


def test_torchvision_variant_matches_torchvision(imagenet_weights, monkeypatch):
    path, model = imagenet_weights
    monkeypatch.setenv(INCEPTION_ENV, str(path))  # found through the environment variable
    ours = get_extractor("inception_v3", resize_to=75)
    assert ours.name == "inception_v3[torchvision-imagenet]"
    images = torch.rand(3, 3, 30, 30) * 2 - 1
    feats, probs = extract_features(ours, images)
    model.eval()
    with torch.no_grad():
        resized = F.interpolate(images, size=(75, 75), mode="bilinear", align_corners=False)
        expected_logits = model(resized)
    np.testing.assert_allclose(probs, torch.softmax(expected_logits.double(), 1).numpy(), rtol=1e-4, atol=1e-7)
    assert feats.shape == (3, 2048)


def test_missing_weights_message(monkeypatch, tmp_path):
    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    with pytest.raises(WeightsNotFoundError) as info:
        get_extractor("inception_v3")
    message = str(info.value)
    for needle in ("pt_inception-2015-12-05-6726825d.pth", "inception_v3_google-0cc3c7bd.pth", INCEPTION_ENV,
                   "domain_cnn"):
        assert needle in message
    with pytest.raises(WeightsNotFoundError, match="nope.pth"):
        get_extractor("inception_v3", weights_path=tmp_path / "nope.pth")


def test_wrong_file_is_named(tmp_path):
    path = tmp_path / "other.pth"
    torch_save({"fc.weight": torch.zeros(3, 2048), "Conv2d_1a_3x3.conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="other.pth"):
        get_extractor("inception_v3", weights_path=path)


def test_multichannel_inputs_mean_or_concat(fid_weights):
    images = torch.rand(1, 5, 32, 32) * 2 - 1
    mean_ext = get_extractor("inception_v3", weights_path=fid_weights, resize_to=75)
    concat_ext = get_extractor("inception_v3", weights_path=fid_weights, resize_to=75, channel_mode="concat")
    mean_feats, _ = extract_features(mean_ext, images)
    concat_feats, _ = extract_features(concat_ext, images)
    assert mean_feats.shape == (1, 2048) and concat_feats.shape == (1, 5 * 2048)
    np.testing.assert_allclose(mean_feats, concat_feats.reshape(1, 5, 2048).mean(1), rtol=1e-5, atol=1e-6)
    assert "concat" in concat_ext.name


def _count_train_steps(monkeypatch):
    calls = []
    original = feat.ExtractorStep.train_step

    def counted(self, batch, ctx):
        calls.append(ctx.step)
        return original(self, batch, ctx)

    monkeypatch.setattr(feat.ExtractorStep, "train_step", counted)
    return calls


def test_finetune_saves_and_reloads(imagenet_weights, tmp_path, monkeypatch):
    path, _ = imagenet_weights
    steps = _count_train_steps(monkeypatch)
    images = np.random.default_rng(0).uniform(-1, 1, size=(6, 1, 32, 32)).astype(np.float32)
    labels = np.array([0, 1] * 3)
    save = tmp_path / "ft.pth"
    kw = dict(weights_path=path, epochs=1, batch_size=3, lr=1e-4, device="cpu", seed=0, resize_to=75,
              run_dir=tmp_path / "finetune", progress=False)
    extractor = finetune_inception_v3(images, labels, save_path=save, **kw)
    assert len(steps) == 2 and extractor.run_dir.parent == tmp_path / "finetune"
    assert extractor.name.startswith("finetuned_inception_v3[torchvision-imagenet,2cls,1ep,seed0]#")
    feats, probs = extract_features(extractor, images)
    reloaded = get_extractor("finetuned_inception_v3", weights_path=save, resize_to=75)
    feats2, probs2 = extract_features(reloaded, images)
    assert reloaded.name == extractor.name and probs.shape == (6, 2)
    np.testing.assert_allclose(feats, feats2, rtol=1e-5, atol=1e-6)
    again = finetune_inception_v3(images, labels, **kw)  # the engine reloads the finished run
    assert len(steps) == 2 and again.name == extractor.name


def _toy_domains(n=96, channels=1, size=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    x = rng.normal(0, 0.3, size=(n, channels, size, size))
    x[labels == 1, :, :, : size // 2] += 0.8  # class 1: bright left half
    return np.clip(x, -1, 1).astype(np.float32), labels


@pytest.mark.parametrize("channels", [1, 5])
def test_domain_cnn_learns_and_round_trips(channels, tmp_path):
    images, labels = _toy_domains(channels=channels)
    model = train_domain_cnn(images, labels, channels=channels, epochs=4, batch_size=16, lr=3e-3, seed=0,
                             device="cpu", feature_dim=32, width=8, num_blocks=3)
    feats, probs = extract_features(model, images, batch_size=32)
    assert feats.shape == (96, 32) and probs.shape == (96, 2)
    assert (probs.argmax(1) == labels).mean() > 0.9
    assert model.name.startswith(f"domain_cnn[{channels}ch,2cls,d32,4ep,seed0]#")
    model.save(tmp_path / "domain.pth")
    loaded = get_extractor("domain_cnn", weights_path=tmp_path / "domain.pth")
    assert loaded.name == model.name
    np.testing.assert_allclose(extract_features(loaded, images)[0], feats, rtol=1e-5, atol=1e-6)
    # loader input (images, labels) batches gives the same features as the array path
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(images),
                                                                        torch.from_numpy(labels)), batch_size=10)
    np.testing.assert_allclose(extract_features(loaded, loader)[0], feats, rtol=1e-5, atol=1e-6)


def test_registry_rejects_unknown_names():
    with pytest.raises(ValueError, match="domain_cnn"):
        get_extractor("resnet_from_nowhere")


def test_domain_cnn_trains_through_the_engine_and_reloads(tmp_path, monkeypatch):
    steps = _count_train_steps(monkeypatch)
    images, labels = _toy_domains(n=40)
    kw = dict(channels=1, epochs=3, batch_size=8, lr=3e-3, seed=0, device="cpu", feature_dim=16, width=4,
              num_blocks=2, run_dir=tmp_path / "domain_cnn", progress=False)
    first = train_domain_cnn(images, labels, **kw)
    assert len(steps) == 3 * 5  # 40 // 8 batches per epoch
    assert first.run_dir.parent == tmp_path / "domain_cnn"  # the engine's keyed run folder
    assert (first.run_dir / "log.jsonl").is_file() and (first.run_dir / "fingerprint.json").is_file()
    assert list(first.history["epoch"]) == [1.0, 2.0, 3.0] and {"loss", "accuracy"} <= set(first.history)
    again = train_domain_cnn(images, labels, **kw)
    assert len(steps) == 15  # the finished run is reloaded, not retrained
    assert again.run_dir == first.run_dir and again.name == first.name
    np.testing.assert_array_equal(extract_features(again, images)[0], extract_features(first, images)[0])
    longer = train_domain_cnn(images, labels, **{**kw, "epochs": 4})
    assert len(steps) == 20 and longer.run_dir == first.run_dir  # continues the 3-epoch run by one epoch
    assert longer.name != first.name and "4ep" in longer.name
    other_seed = train_domain_cnn(images, labels, **{**kw, "seed": 1})
    other_images = train_domain_cnn(images[::-1].copy(), labels[::-1].copy(), **kw)
    assert len({first.run_dir, other_seed.run_dir, other_images.run_dir}) == 3
    assert len({first.name, other_seed.name, other_images.name}) == 3  # the name tells the weights apart


def test_training_without_run_dir_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(feat.tempfile, "tempdir", str(tmp_path))
    images, labels = _toy_domains(n=16)
    model = train_domain_cnn(images, labels, channels=1, epochs=1, batch_size=8, device="cpu", feature_dim=8,
                             width=4, num_blocks=2, progress=False)
    assert model.run_dir is None and len(model.history) == 1 and not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="labels must lie in"):
        train_domain_cnn(images, labels, channels=1, num_classes=1, epochs=1, device="cpu")
    with pytest.raises(ValueError, match="at least 2"):
        train_domain_cnn(images[:1], labels[:1], channels=1, epochs=1, device="cpu")
