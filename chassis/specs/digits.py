"""Handwritten digits (8x8 images, 64 pixel features, 10 classes) with an MLP. The default.

The data is scikit-learn's bundled copy of the UCI digits set, so this works offline.
"""

from typing import Any, cast

import pandas as pd

from chassis.models import MLP
from chassis.modelspec import Dataset, ModelSpec, TrainingConfig
from chassis.specs import bundled_suite
from chassis.specs.splitting import stratified_splits


def load_digits_dataset() -> Dataset:
    from sklearn.datasets import load_digits

    # sklearn has no types: with as_frame=True its Bunch holds the whole table as `frame`.
    frame: pd.DataFrame = cast(Any, load_digits(as_frame=True)).frame
    return stratified_splits(frame, label_column="target")


def build_digits_mlp(n_features: int, n_classes: int) -> MLP:
    return MLP(n_features, n_classes, hidden=(256, 128), dropout=0.1)


def build_digits_student(n_features: int, n_classes: int) -> MLP:
    return MLP(n_features, n_classes, hidden=(64,))


spec = ModelSpec(
    name="digits-mlp",
    description="sklearn handwritten digits, 64 pixel intensities (0-16) -> digit 0-9",
    load_data=load_digits_dataset,
    build_model=build_digits_mlp,
    build_student=build_digits_student,
    training=TrainingConfig(epochs=40, batch_size=64, learning_rate=1e-3, seed=0),
    expectation_suite=bundled_suite("digits.training.json"),
    serving_suite=bundled_suite("digits.serving.json"),
)
