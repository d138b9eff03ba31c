import numpy as np
import torch

from medgan.models.classifiers import build_classifier
from medgan.train import read_log
from medgan.train.classifier import ImageLabelDataset, classification_loss, predict_proba, train_classifier


def bright_square_data(n=64, seed=0):
    """Label 1 images carry a bright square in the upper-left quadrant."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 16, 16, generator=g) * 0.4 - 0.8
    labels = torch.arange(n) % 2
    images[labels == 1, :, 2:7, 2:7] += 1.2
    return ImageLabelDataset(images, labels)


def test_classification_loss_matches_torch():
    logits = torch.tensor([[2.0], [-1.0]])
    labels = torch.tensor([1, 0])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([[1.0], [0.0]]))
    torch.testing.assert_close(classification_loss(logits, labels, head="sigmoid"), expected)
    logits3 = torch.tensor([[2.0, 0.0, -1.0]])
    torch.testing.assert_close(classification_loss(logits3, torch.tensor([2]), head="softmax"),
                               torch.nn.functional.cross_entropy(logits3, torch.tensor([2])))


def test_training_learns_and_resume_reloads_finished_run(tmp_path):
    data = bright_square_data()
    torch.manual_seed(0)
    model = build_classifier("small_resnet", width=4, num_outputs=1)
    before = predict_proba(model, data, device="cpu")[:, 0]
    labels = data.labels.numpy()
    model, history = train_classifier(model, data, run_dir=tmp_path, steps=30, batch_size=16, lr=3e-3,
                                      seed=0, device="cpu", log_every=5)
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    after = predict_proba(model, data, device="cpu")[:, 0]
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert ((after > 0.5) == labels).mean() >= 0.9
    assert ((after > 0.5) == labels).mean() > ((before > 0.5) == labels).mean() or ((before > 0.5) == labels).mean() < 0.9
    assert len(read_log(run_dir)) == 6 and (run_dir / "checkpoints").exists()

    # Same configuration again: the finished checkpoint is loaded, nothing retrained.
    torch.manual_seed(0)  # the same initial weights: the same run
    fresh = build_classifier("small_resnet", width=4, num_outputs=1)
    fresh, history2 = train_classifier(fresh, data, run_dir=tmp_path, steps=30, batch_size=16, lr=3e-3,
                                       seed=0, device="cpu", log_every=5)
    np.testing.assert_allclose(predict_proba(fresh, data, device="cpu")[:, 0], after, rtol=1e-6)
    assert len(history2) == 6 and [p for p in tmp_path.iterdir() if p.is_dir()] == [run_dir]


def test_multilabel_targets_and_tensor_prediction(tmp_path):
    g = torch.Generator().manual_seed(1)
    images = torch.rand(32, 1, 16, 16, generator=g) * 2 - 1
    labels = (torch.rand(32, 3, generator=g) > 0.5).float()
    model = build_classifier("small_resnet", width=4, num_outputs=3)
    model, history = train_classifier(model, ImageLabelDataset(images, labels), run_dir=tmp_path, steps=3,
                                      batch_size=8, pos_weight=[1.0, 2.0, 3.0], device="cpu")
    probs = predict_proba(model, images, batch_size=10, device="cpu")
    assert probs.shape == (32, 3) and np.isfinite(probs).all()
    assert {"loss", "accuracy"} <= set(history.columns)


def test_cosine_decay_checkpoint_loads_weights_only(tmp_path):
    from medgan.train import load_trained
    from medgan.train.classifier import ClassifierStep

    data = bright_square_data(32)
    model = build_classifier("small_resnet", width=4)
    train_classifier(model, data, run_dir=tmp_path, steps=4, batch_size=8, lr_decay="cosine", device="cpu")
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert load_trained(ClassifierStep(build_classifier("small_resnet", width=4), lr_decay="cosine"), run_dir,
                        device="cpu") == 4
