"""Wine cultivars (13 chemical measurements on very different scales, 3 classes).

A second bundled tabular set: its features range from ~0.1 to ~1,700, which exercises the
standardization Chassis bakes into every exported model.
"""

from typing import Any, cast

import pandas as pd

from chassis.models import MLP
from chassis.modelspec import Dataset, ModelSpec, TrainingConfig
from chassis.specs import bundled_suite
from chassis.specs.splitting import stratified_splits


def load_wine_dataset() -> Dataset:
    from sklearn.datasets import load_wine

    # sklearn has no types: with as_frame=True its Bunch holds the whole table as `frame`.
    frame: pd.DataFrame = cast(Any, load_wine(as_frame=True)).frame
    return stratified_splits(frame, label_column="target")


def build_wine_mlp(n_features: int, n_classes: int) -> MLP:
    return MLP(n_features, n_classes, hidden=(64, 32), dropout=0.1)


def build_wine_student(n_features: int, n_classes: int) -> MLP:
    return MLP(n_features, n_classes, hidden=(16,))


spec = ModelSpec(
    name="wine-mlp",
    description="sklearn wine recognition, 13 chemical measurements -> cultivar 0-2",
    load_data=load_wine_dataset,
    build_model=build_wine_mlp,
    build_student=build_wine_student,
    training=TrainingConfig(epochs=60, batch_size=16, learning_rate=3e-3, seed=0),
    expectation_suite=bundled_suite("wine.training.json"),
    serving_suite=bundled_suite("wine.serving.json"),
)
