import numpy as np
import torch

from chassis.data import features, labels
from chassis.evaluation import classification_report
from chassis.models import MLP, Standardized
from chassis.modelspec import TrainingConfig
from chassis.training import predict_logits, train_classifier
from tests.fixtures import specs


def test_same_seed_gives_identical_weights():
    dataset = specs.blob_dataset()
    config = TrainingConfig(epochs=2, batch_size=16, seed=7)
    first = train_classifier(specs.small_mlp, dataset, config)
    second = train_classifier(specs.small_mlp, dataset, config)
    for a, b in zip(
        first.module.state_dict().values(), second.module.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_learns_separable_blobs_and_keeps_best_epoch():
    dataset = specs.blob_dataset()
    trained = train_classifier(
        specs.small_mlp, dataset, TrainingConfig(epochs=15, learning_rate=1e-2)
    )
    x, y = features(dataset.test, dataset), labels(dataset.test, dataset)
    report = classification_report(y, predict_logits(trained.module, x).argmax(1), 3)
    assert report.accuracy >= 0.9
    assert trained.best_validation_accuracy == max(h["val_accuracy"] for h in trained.history)
    assert len(trained.history) == 15


def test_standardized_handles_constant_columns():
    module = Standardized(
        MLP(2, 2, hidden=(4,)), torch.tensor([1.0, 5.0]), torch.tensor([0.0, 2.0])
    )
    out = module(torch.tensor([[1.0, 7.0]]))
    assert torch.isfinite(out).all()


def test_classification_report_values():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    report = classification_report(y_true, y_pred, 3)
    assert report.accuracy == 4 / 6
    assert report.per_class_recall == {0: 0.5, 1: 1.0, 2: 0.5}
    assert report.as_metrics()["test_recall_class_1"] == 1.0
