"""A regressor: MSE training with best-validation-RMSE selection, raw target units out,
and its metrics."""

import numpy as np
import pandas as pd
import pytest
import torch

from chassis.data import features, targets
from chassis.errors import SpecError
from chassis.evaluation import regression_report
from chassis.models import MLP
from chassis.modelspec import Dataset, TrainingConfig
from chassis.training import predict_logits, rebuild_regressor, rmse, train_classifier, train_model
from tests.fixtures import specs


def linear_dataset(rows: int = 200, seed: int = 0) -> Dataset:
    """y = 300 + 40 * (f0 - 2 f1) + noise: a target far from unit scale, in its own units."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3)) * np.array([1.0, 10.0, 0.1]) + np.array([0.0, 50.0, 1.0])
    y = 300.0 + 40.0 * (x[:, 0] - 0.2 * (x[:, 1] - 50.0)) + rng.normal(scale=2.0, size=rows)
    frame = pd.DataFrame(x, columns=["f0", "f1", "f2"])
    frame["y"] = y
    return Dataset(
        train=frame.iloc[:140].reset_index(drop=True),
        validation=frame.iloc[140:170].reset_index(drop=True),
        test=frame.iloc[170:].reset_index(drop=True),
        feature_columns=("f0", "f1", "f2"),
        label_column="y",
    )


def regressor_mlp(n_features: int, n_outputs: int) -> MLP:
    return MLP(n_features, n_outputs, hidden=(16,))


CONFIG = TrainingConfig(epochs=40, batch_size=16, learning_rate=1e-2)


def test_metrics_of_a_regressor_on_known_values():
    report = regression_report(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 5.0]))
    # errors 0, 0, 0, 1: MAE 1/4, RMSE sqrt(1/4), R2 = 1 - 1 / 5 (SST of 1..4 is 5).
    assert (report.mae, report.rmse, report.r2, report.rows) == (0.25, 0.5, 0.8, 4)
    assert report.as_metrics("test_") == {"test_mae": 0.25, "test_rmse": 0.5, "test_r2": 0.8}


def test_a_prediction_of_the_mean_has_r2_zero_and_a_perfect_one_r2_one():
    truth = np.array([1.0, 2.0, 3.0])
    assert regression_report(truth, np.full(3, 2.0)).r2 == 0.0
    assert regression_report(truth, truth).r2 == 1.0


def test_a_regressor_learns_in_target_units_and_keeps_its_lowest_validation_rmse():
    dataset = linear_dataset()
    trained = train_model(regressor_mlp, dataset, CONFIG, "regression")
    x, y = features(dataset.test, dataset), targets(dataset.test, dataset)
    outputs = predict_logits(trained.module, x)
    assert outputs.shape == (len(x), 1)
    report = regression_report(y, outputs)
    # The target's std is ~57: raw-unit predictions this close need the baked-in scaler.
    assert report.r2 > 0.9, report
    assert abs(float(outputs.mean()) - float(y.mean())) < 15
    assert trained.best_validation == min(h["val_rmse"] for h in trained.history)
    best = trained.history[trained.best_epoch - 1]["val_rmse"]
    x_val, y_val = features(dataset.validation, dataset), targets(dataset.validation, dataset)
    assert rmse(predict_logits(trained.module, x_val), y_val) == pytest.approx(best, rel=1e-5)
    assert (trained.task, trained.n_outputs, trained.n_classes) == ("regression", 1, None)


def test_a_regressor_rebuilt_from_its_saved_state_predicts_the_same():
    dataset = linear_dataset()
    trained = train_model(regressor_mlp, dataset, TrainingConfig(epochs=3), "regression")
    state = {k: v.clone() for k, v in trained.module.state_dict().items()}
    rebuilt = rebuild_regressor(regressor_mlp, 3, state)
    x = features(dataset.test, dataset)
    assert np.array_equal(predict_logits(rebuilt, x), predict_logits(trained.module, x))


def test_a_regression_builder_with_more_than_one_output_is_refused_naming_the_contract():
    def three_outputs(n_features: int, n_outputs: int) -> MLP:
        return MLP(n_features, 3, hidden=(4,))

    with pytest.raises(
        SpecError,
        match=r"build_model\(3, 1\) returns outputs of shape \(2, 3\) for 2 rows; a regression "
        r"model must return \[batch, 1\] \(one predicted value\)",
    ):
        train_model(three_outputs, linear_dataset(), CONFIG, "regression")


def test_a_classifier_builder_with_one_output_is_refused_before_training():
    def one_output(n_features: int, n_outputs: int) -> MLP:
        return MLP(n_features, 1, hidden=(4,))

    with pytest.raises(SpecError, match=r"a classification model must return \[batch, 3\]"):
        train_classifier(one_output, specs.blob_dataset(), CONFIG)


def test_same_seed_gives_an_identical_regressor():
    dataset = linear_dataset()
    config = TrainingConfig(epochs=2, batch_size=16, seed=3)
    first = train_model(regressor_mlp, dataset, config, "regression").module.state_dict()
    second = train_model(regressor_mlp, dataset, config, "regression").module.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
