"""Checks a spec's dataset before anything is trained, and fingerprints it for lineage.

These are the structural checks a model cannot survive (missing label, empty split,
non-numeric or non-finite features). Value-level checks (ranges, label set, null ratio) live
in the Great Expectations suites under `expectations/`.
"""

import hashlib
from typing import Any

import numpy as np
import pandas as pd

from chassis.errors import DatasetError
from chassis.modelspec import Dataset


def load_dataset(load_data: Any, spec_name: str) -> Dataset:
    """Call the spec's loader and check what it returned."""
    try:
        dataset = load_data()
    except Exception as error:
        raise DatasetError(
            f"spec {spec_name!r}: load_data() failed: {type(error).__name__}: {error}"
        ) from error
    if not isinstance(dataset, Dataset):
        raise DatasetError(
            f"spec {spec_name!r}: load_data() must return chassis.modelspec.Dataset, "
            f"got {type(dataset).__name__}"
        )
    check_dataset(dataset)
    return dataset


def check_dataset(dataset: Dataset) -> None:
    """Raise DatasetError naming every structural problem of every split."""
    problems: list[str] = []
    if not dataset.feature_columns:
        problems.append("no feature columns declared")
    if dataset.label_column in dataset.feature_columns:
        problems.append(f"label column {dataset.label_column!r} is also listed as a feature")
    for split, frame in dataset.splits().items():
        # Checked at run time too: the splits come from the user's load_data.
        if not isinstance(frame, pd.DataFrame):  # pyright: ignore[reportUnnecessaryIsInstance]
            problems.append(f"{split}: expected a pandas DataFrame, got {type(frame).__name__}")
            continue
        problems.extend(f"{split}: {p}" for p in frame_problems(frame, dataset))
    if problems:
        raise DatasetError("dataset is unusable: " + "; ".join(problems))
    train_labels = set(dataset.train[dataset.label_column].unique().tolist())
    if len(train_labels) < 2:
        raise DatasetError(
            f"dataset is unusable: train: label column {dataset.label_column!r} has "
            f"{len(train_labels)} distinct value(s); a classifier needs at least 2"
        )


def frame_problems(frame: pd.DataFrame, dataset: Dataset) -> list[str]:
    problems: list[str] = []
    label = dataset.label_column
    missing = [c for c in dataset.feature_columns if c not in frame.columns]
    if label not in frame.columns:
        problems.append(f"label column {label!r} is missing")
    if missing:
        problems.append(f"feature column(s) missing: {', '.join(map(repr, missing))}")
    if frame.empty:
        problems.append("no rows")
    if problems:
        return problems
    non_numeric = [
        f"{c!r} ({frame[c].dtype})"
        for c in dataset.feature_columns
        if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])
    ]
    if non_numeric:
        problems.append("feature column(s) with non-numeric dtype: " + ", ".join(non_numeric))
    else:
        values = frame[list(dataset.feature_columns)].to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            columns = [dataset.feature_columns[i] for i in np.flatnonzero(bad.any(axis=0))]
            problems.append(
                f"{int(bad.sum())} NaN or infinite feature value(s) in column(s): "
                + ", ".join(map(repr, columns[:10]))
                + (" ..." if len(columns) > 10 else "")
            )
    labels = frame[label]
    if not pd.api.types.is_integer_dtype(labels):
        problems.append(
            f"label column {label!r} has dtype {labels.dtype}; class labels must be integers"
        )
    elif (labels < 0).any():
        problems.append(f"label column {label!r} has negative class labels")
    return problems


def class_count(dataset: Dataset) -> int:
    """Classes are 0..max label seen in any split."""
    return int(max(frame[dataset.label_column].max() for frame in dataset.splits().values())) + 1


def features(frame: pd.DataFrame, dataset: Dataset) -> np.ndarray:
    return frame[list(dataset.feature_columns)].to_numpy(dtype=np.float32)


def labels(frame: pd.DataFrame, dataset: Dataset) -> np.ndarray:
    return frame[dataset.label_column].to_numpy(dtype=np.int64)


def fingerprint(dataset: Dataset) -> str:
    """A sha256 over schema and values of every split: equal data gives an equal digest."""
    digest = hashlib.sha256()
    columns = [*dataset.feature_columns, dataset.label_column]
    for split, frame in dataset.splits().items():
        selected = frame[columns]
        digest.update(split.encode())
        digest.update(repr([(c, str(selected[c].dtype)) for c in columns]).encode())
        digest.update(pd.util.hash_pandas_object(selected, index=False).to_numpy().tobytes())
    return digest.hexdigest()
