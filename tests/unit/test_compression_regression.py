"""Compression candidates of a regressor: int8 and pruning as for a classifier, distillation
on the squared error to the teacher's outputs; every candidate outputs target units."""

import numpy as np
import pytest

from chassis.compression.classification import (
    ClassifierSetup,
    CompressionOptions,
    build_classifier_candidates,
)
from chassis.compression.measure import MeasureSettings, measure_all, quality_task
from chassis.data import features, targets
from chassis.models import MLP
from chassis.modelspec import TrainingConfig
from chassis.onnx_export import export_and_verify
from chassis.runtime import create_session
from chassis.training import train_model
from tests.unit.test_regression_training import linear_dataset


def wide(n_features, n_outputs):
    return MLP(n_features, n_outputs, hidden=(32, 16))


def student(n_features, n_outputs):
    return MLP(n_features, n_outputs, hidden=(8,))


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    dataset = linear_dataset(rows=400)
    trained = train_model(
        wide, dataset, TrainingConfig(epochs=40, batch_size=16, learning_rate=1e-2), "regression"
    )
    workdir = tmp_path_factory.mktemp("regressor")
    x_test = features(dataset.test, dataset)
    exported = export_and_verify(
        trained.module, 3, x_test, workdir / "baseline.onnx", 1e-3, "regression"
    )
    setup = ClassifierSetup(
        baseline=trained.module,
        baseline_onnx=exported.path,
        n_features=3,
        n_classes=None,
        x_train=features(dataset.train, dataset),
        y_train=targets(dataset.train, dataset),
        x_val=features(dataset.validation, dataset),
        y_val=targets(dataset.validation, dataset),
        build_student=student,
        task="regression",
    )
    options = CompressionOptions(prune_fraction=0.5, finetune_epochs=5, distill_epochs=30)
    built = build_classifier_candidates(setup, options, workdir / "candidates")
    quality = quality_task("regression", targets(dataset.test, dataset), None)
    settings = MeasureSettings(batch_sizes=(1,), warmup=1, repeats=3)
    return built, measure_all(built.candidates, {"features": x_test}, quality, settings, "baseline")


def test_every_candidate_of_a_regressor_is_built_and_named_by_its_output(measured):
    built, _ = measured
    assert built.skipped == {}
    assert {c.name for c in built.candidates} == {
        "baseline",
        "dynamic-int8",
        "static-int8",
        "pruned",
        "pruned+int8",
        "distilled",
        "distilled+int8",
    }
    for candidate in built.candidates:
        outputs = create_session(candidate.onnx_path).get_outputs()
        assert [(o.name, o.shape[1]) for o in outputs] == [("prediction", 1)], candidate.name
    distilled = next(c for c in built.candidates if c.name == "distilled")
    assert distilled.recipe["distillation"] == "mse-to-teacher"


def test_every_candidate_of_a_regressor_predicts_in_target_units(measured):
    _, measurements = measured
    by_name = {m.name: m.quality for m in measurements}
    baseline = by_name["baseline"]
    assert baseline["r2"] > 0.9
    for name, quality in by_name.items():
        # Target mean ~300, std ~57: a candidate that lost the target scaler would predict
        # around 0 and have an R2 far below 0.
        assert quality["r2"] > 0.8, (name, quality)
        assert np.isfinite(quality["max_relative_difference"])
    assert by_name["baseline"]["max_relative_difference"] == 0.0
