"""The sample of training data a version carries for the drift check to compare served
traffic with: its feature columns and label, from the train split only (validation and test
stay unseen), at most `REFERENCE_ROWS` rows, drawn the same way every time so that training
the same data again stores the same reference. A regressor's sample also holds the trained
model's predicted value of each row (column `prediction`, as in the prediction log), so the
drift check can judge the served predictions too."""

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from chassis.modelspec import Dataset
from chassis.serving.prediction_log import PREDICTION

if TYPE_CHECKING:
    import pandas as pd

REFERENCE_ROWS = 5000


def reference_sample(
    dataset: Dataset,
    rows: int = REFERENCE_ROWS,
    predict: Callable[[np.ndarray], np.ndarray] | None = None,
) -> "pd.DataFrame":
    """`predict` (the model's input -> one value a row: float32 features, or a text model's
    token ids): a regressor's predictions, kept in the `prediction` column."""
    columns = [*dataset.feature_columns, dataset.label_column]
    train = dataset.train[columns]
    sample = train.sample(n=min(rows, len(train)), random_state=0)
    if predict is not None:
        from chassis.data import features

        sample[PREDICTION] = predict(features(sample, dataset)).astype(np.float64)
    return sample
