"""Checks a spec's dataset before anything is trained, and fingerprints it for lineage.

These are the structural checks a model cannot survive (missing label, empty split,
non-numeric or non-finite features) and the label checks of the model's task: a
classifier's classes are 0..K-1, each seen in training, and a class count that looks like a
quantity (a float target, or more classes than a tenth of the training rows) is refused
with a pointer to regression; a regressor's target is numeric and finite. Value-level
checks (ranges, label set, null ratio) live in the Great Expectations suites under
`expectations/`.
"""

import hashlib
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from chassis.errors import DatasetError, SpecError, TextInputError
from chassis.modelspec import Dataset
from chassis.task import CLASSIFICATION, DEFAULT_TASK, Task
from chassis.text_input import TextInput

# More classes than this share of the training rows looks like a quantity, not classes:
# fewer than ten examples a class on average cannot train a classifier of each.
MAX_CLASSES_PER_TRAIN_ROW = 0.1
REGRESSION_HINT = 'if it is a quantity to predict, declare task="regression" in the spec'


def load_dataset(
    load_data: Any, spec_name: str, task: Task = DEFAULT_TASK, text_input: TextInput | None = None
) -> Dataset:
    """Call the spec's loader and check what it returned, for a model of `task` (reading
    text through `text_input`'s tokenizer when given)."""
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
    if text_input is not None:
        try:
            encoder = text_input.encoder()
        except SpecError as error:
            raise SpecError(f"spec {spec_name!r}: {error}") from None
        dataset = replace(dataset, text_encoder=encoder)
    check_dataset(dataset, task)
    return dataset


def check_dataset(dataset: Dataset, task: Task = DEFAULT_TASK) -> None:
    """Raise DatasetError naming every structural problem of every split, then the label
    problems of `task` over the splits together."""
    problems: list[str] = []
    if not dataset.feature_columns:
        problems.append("no feature columns declared")
    if dataset.text_encoder is not None and len(dataset.feature_columns) > 1:
        problems.append(
            f"a text model reads one text column; {len(dataset.feature_columns)} feature "
            "columns are declared"
        )
    if dataset.label_column in dataset.feature_columns:
        problems.append(f"label column {dataset.label_column!r} is also listed as a feature")
    for split, frame in dataset.splits().items():
        # Checked at run time too: the splits come from the user's load_data.
        if not isinstance(frame, pd.DataFrame):  # pyright: ignore[reportUnnecessaryIsInstance]
            problems.append(f"{split}: expected a pandas DataFrame, got {type(frame).__name__}")
            continue
        problems.extend(f"{split}: {p}" for p in frame_problems(frame, dataset, task))
    if problems:
        raise DatasetError("dataset is unusable: " + "; ".join(problems))
    problems = class_problems(dataset) if task == CLASSIFICATION else target_problems(dataset)
    if problems:
        raise DatasetError("dataset is unusable: " + "; ".join(problems))


def class_problems(dataset: Dataset) -> list[str]:
    """A classifier's labels over all splits: classes 0..K-1, each seen in training, and
    not so many that the label looks like a quantity."""
    label = dataset.label_column
    train_labels = set(dataset.train[label].unique().tolist())
    if len(train_labels) < 2:
        return [
            f"train: label column {label!r} has {len(train_labels)} distinct value(s); "
            "a classifier needs at least 2"
        ]
    n_classes = class_count(dataset)
    rows = len(dataset.train)
    if n_classes > MAX_CLASSES_PER_TRAIN_ROW * rows:
        return [
            f"label column {label!r} has {n_classes} classes (0..{n_classes - 1}) for {rows} "
            f"training rows, more than a tenth of them: it looks like a quantity, not "
            f"classes; {REGRESSION_HINT}"
        ]
    unseen = sorted(set(range(n_classes)) - train_labels)
    if unseen:
        shown = ", ".join(map(str, unseen[:10])) + (" ..." if len(unseen) > 10 else "")
        return [
            f"classes must be 0..K-1 and each seen in training: {len(unseen)} of "
            f"0..{n_classes - 1} never appear in train ({shown}); re-encode the labels "
            "as 0..K-1 or put examples of each class in the train split"
        ]
    return []


def target_problems(dataset: Dataset) -> list[str]:
    """A regressor's target: it must vary over the training split."""
    distinct = dataset.train[dataset.label_column].nunique()
    if distinct < 2:
        return [
            f"train: target column {dataset.label_column!r} has {distinct} distinct value(s); "
            "a regressor needs a target that varies"
        ]
    return []


def frame_problems(frame: pd.DataFrame, dataset: Dataset, task: Task = DEFAULT_TASK) -> list[str]:
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
    if dataset.text_encoder is not None:
        problems.extend(text_problems(frame, dataset))
    else:
        problems.extend(number_problems(frame, dataset))
    problems.extend(
        label_problems(frame[label], label)
        if task == CLASSIFICATION
        else target_dtype_problems(frame[label], label)
    )
    return problems


def text_problems(frame: pd.DataFrame, dataset: Dataset) -> list[str]:
    """A text model's column: strings its tokenizer reads within the maximum length."""
    assert dataset.text_encoder is not None
    column = dataset.feature_columns[0]
    try:
        dataset.text_encoder.encode(frame[column].tolist())
    except TextInputError as error:
        row = frame.index[error.index]
        return [f"text column {column!r}, row {row!r}: {error.problem}"]
    return []


def number_problems(frame: pd.DataFrame, dataset: Dataset) -> list[str]:
    """A tabular model's columns: numeric and finite."""
    problems: list[str] = []
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
    return problems


def label_problems(labels: pd.Series, label: str) -> list[str]:
    """One split's class labels: integers, none negative."""
    if pd.api.types.is_float_dtype(labels):
        return [
            f"label column {label!r} has dtype {labels.dtype}; class labels must be "
            f"integers; {REGRESSION_HINT}"
        ]
    if not pd.api.types.is_integer_dtype(labels) or pd.api.types.is_bool_dtype(labels):
        return [f"label column {label!r} has dtype {labels.dtype}; class labels must be integers"]
    if (labels < 0).any():
        return [f"label column {label!r} has negative class labels"]
    return []


def target_dtype_problems(target: pd.Series, label: str) -> list[str]:
    """One split's regression target: numeric and finite."""
    if not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target):
        return [f"target column {label!r} has dtype {target.dtype}; a regression target is numeric"]
    bad = int((~np.isfinite(target.to_numpy(dtype=np.float64))).sum())
    if bad:
        return [f"target column {label!r} has {bad} NaN or infinite value(s)"]
    return []


def class_count(dataset: Dataset) -> int:
    """Classes are 0..max label seen in any split."""
    return int(max(frame[dataset.label_column].max() for frame in dataset.splits().values())) + 1


def features(frame: pd.DataFrame, dataset: Dataset) -> np.ndarray:
    """What the model takes for `frame`'s rows: float32 features, or a text model's int64
    token ids."""
    if dataset.text_encoder is not None:
        return dataset.text_encoder.encode(frame[dataset.feature_columns[0]].tolist())
    return frame[list(dataset.feature_columns)].to_numpy(dtype=np.float32)


def input_width(dataset: Dataset) -> int:
    """The model's input width: its feature columns, or a text model's length in tokens."""
    if dataset.text_encoder is not None:
        return dataset.text_encoder.max_length
    return len(dataset.feature_columns)


def request_rows(frame: pd.DataFrame, dataset: Dataset) -> list[Any]:
    """`frame`'s rows as a client sends them to the gateway (`{"instances": rows}`): lists
    of numbers, or a text model's strings."""
    if dataset.text_encoder is not None:
        return [str(text) for text in frame[dataset.feature_columns[0]].tolist()]
    return features(frame, dataset).astype(np.float64).tolist()


def labels(frame: pd.DataFrame, dataset: Dataset) -> np.ndarray:
    return frame[dataset.label_column].to_numpy(dtype=np.int64)


def targets(frame: pd.DataFrame, dataset: Dataset) -> np.ndarray:
    """A regressor's target values, as the float32 its model outputs."""
    return frame[dataset.label_column].to_numpy(dtype=np.float32)


def truth(frame: pd.DataFrame, dataset: Dataset, task: Task) -> np.ndarray:
    """What a model of `task` is judged against: class labels, or target values."""
    return labels(frame, dataset) if task == CLASSIFICATION else targets(frame, dataset)


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
