"""Diabetes progression (10 measurements of 442 patients -> disease progression a year
later, a number from 25 to 346): the bundled regression spec.

Features are the raw, unscaled values (age in years, sex as 1/2, BMI, blood pressure and six
blood serum measurements), so the standardization Chassis bakes into the model matters, and
the target is in its own units: the exported model outputs those units.
"""

from typing import Any, cast

import pandas as pd

from chassis.models import MLP
from chassis.modelspec import Dataset, ModelSpec, TrainingConfig
from chassis.specs import bundled_suite
from chassis.specs.splitting import random_splits


def load_diabetes_dataset() -> Dataset:
    from sklearn.datasets import load_diabetes

    # sklearn has no types: with as_frame=True its Bunch holds the whole table as `frame`.
    frame: pd.DataFrame = cast(Any, load_diabetes(as_frame=True, scaled=False)).frame
    return random_splits(frame, label_column="target")


def build_diabetes_mlp(n_features: int, n_outputs: int) -> MLP:
    return MLP(n_features, n_outputs, hidden=(64, 32), dropout=0.1)


def build_diabetes_student(n_features: int, n_outputs: int) -> MLP:
    return MLP(n_features, n_outputs, hidden=(16,))


spec = ModelSpec(
    name="diabetes-mlp",
    description="sklearn diabetes, 10 raw measurements -> disease progression after a year",
    task="regression",
    load_data=load_diabetes_dataset,
    build_model=build_diabetes_mlp,
    build_student=build_diabetes_student,
    training=TrainingConfig(epochs=60, batch_size=32, learning_rate=1e-3, weight_decay=1e-4),
    expectation_suite=bundled_suite("diabetes.training.json"),
    serving_suite=bundled_suite("diabetes.serving.json"),
)
