"""The sample of training data a version carries for the drift check to compare served
traffic with: its feature columns and label, from the train split only (validation and test
stay unseen), at most `REFERENCE_ROWS` rows, drawn the same way every time so that training
the same data again stores the same reference."""

from typing import TYPE_CHECKING

from chassis.modelspec import Dataset

if TYPE_CHECKING:
    import pandas as pd

REFERENCE_ROWS = 5000


def reference_sample(dataset: Dataset, rows: int = REFERENCE_ROWS) -> "pd.DataFrame":
    columns = [*dataset.feature_columns, dataset.label_column]
    train = dataset.train[columns]
    return train.sample(n=min(rows, len(train)), random_state=0)
