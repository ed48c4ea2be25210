"""Drafts a training-data expectation suite from a dataset, for a user to review and commit.

The draft pins what the training split looks like today: the columns, numeric dtypes, value
ranges (a text model's column: strings, their lengths in characters), no nulls, the label
set (a regressor's target: its range), and a row-count floor at half of today's rows. Edit
it to
encode what the data *should* look like; Chassis only ever reads the committed file.
"""

from typing import Any, cast

import numpy as np
import pandas as pd

from chassis.modelspec import Dataset
from chassis.task import CLASSIFICATION, DEFAULT_TASK, Task

NUMERIC_TYPES = ["int8", "int16", "int32", "int64", "float16", "float32", "float64"]
# Great Expectations names a pandas object column's value types by their Python type.
TEXT_TYPES = ["str"]


def _text_expectations(
    frame: pd.DataFrame, column: str, max_length: int | None, mostly: float = 1.0
) -> list[dict[str, Any]]:
    """A text column: no nulls, strings, at least one character (and at most `max_length`)."""
    lengths: dict[str, Any] = {"column": column, "min_value": 1}
    if max_length is not None:
        lengths["max_value"] = max_length
    if mostly < 1.0:
        lengths["mostly"] = mostly
    return [
        {
            "type": "expect_column_values_to_not_be_null",
            "kwargs": {"column": column, **({"mostly": mostly} if mostly < 1.0 else {})},
        },
        {
            "type": "expect_column_values_to_be_in_type_list",
            "kwargs": {"column": column, "type_list": TEXT_TYPES},
        },
        {"type": "expect_column_value_lengths_to_be_between", "kwargs": lengths},
    ]


def _plain(value: Any) -> Any:
    return cast(Any, value.item()) if isinstance(value, np.generic) else value


def scaffold_training_suite(
    dataset: Dataset, name: str, task: Task = DEFAULT_TASK
) -> dict[str, Any]:
    frame: pd.DataFrame = dataset.train
    expectations: list[dict[str, Any]] = [
        {
            "type": "expect_table_row_count_to_be_between",
            "kwargs": {"min_value": max(1, len(frame) // 2)},
            "meta": {"why": "column checks pass on an empty batch; this floor does not"},
        },
        {
            "type": "expect_table_columns_to_match_set",
            "kwargs": {
                "column_set": [*dataset.feature_columns, dataset.label_column],
                "exact_match": False,
            },
        },
    ]
    for column in dataset.feature_columns:
        values = frame[column]
        if dataset.text_encoder is not None:
            longest = int(values.astype(str).str.len().max())
            expectations += _text_expectations(frame, column, longest)
            continue
        expectations += [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": column}},
            {
                "type": "expect_column_values_to_be_in_type_list",
                "kwargs": {"column": column, "type_list": NUMERIC_TYPES},
            },
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {
                    "column": column,
                    "min_value": _plain(values.min()),
                    "max_value": _plain(values.max()),
                },
            },
        ]
    label = dataset.label_column
    expectations.append(
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": label}}
    )
    if task == CLASSIFICATION:
        expectations.append(
            {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {
                    "column": label,
                    "value_set": sorted(_plain(v) for v in frame[label].unique()),
                },
            }
        )
    else:
        expectations.append(
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {
                    "column": label,
                    "min_value": _plain(frame[label].min()),
                    "max_value": _plain(frame[label].max()),
                },
            }
        )
    return {
        "name": name,
        "meta": {"generated_by": "chassis scaffold-suite", "split": "train"},
        "expectations": expectations,
    }


def scaffold_serving_suite(
    dataset: Dataset, name: str, mostly: float = 0.99, range_margin: float = 0.25
) -> dict[str, Any]:
    """A suite for batches the gateway serves: features only, tolerant by `mostly`.

    A serving batch may be a single row, so the floor is one row; nulls and out-of-range
    values are tolerated up to 1 % of a batch, which catches a broken upstream feed without
    failing on one odd request. Ranges are the training range widened by `range_margin` of
    its width on each side: a small train split rarely spans what real traffic sends.
    """
    frame: pd.DataFrame = dataset.train
    expectations: list[dict[str, Any]] = [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
        {
            "type": "expect_table_columns_to_match_set",
            "kwargs": {"column_set": list(dataset.feature_columns), "exact_match": False},
        },
    ]
    for column in dataset.feature_columns:
        values = frame[column]
        if dataset.text_encoder is not None:
            # No upper bound in characters: the gateway refuses a text by its tokens.
            expectations += _text_expectations(frame, column, None, mostly)
            continue
        expectations += [
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": column, "mostly": mostly},
            },
            {
                "type": "expect_column_values_to_be_in_type_list",
                "kwargs": {"column": column, "type_list": NUMERIC_TYPES},
            },
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {
                    "column": column,
                    "min_value": _plain(
                        values.min() - range_margin * (values.max() - values.min())
                    ),
                    "max_value": _plain(
                        values.max() + range_margin * (values.max() - values.min())
                    ),
                    "mostly": mostly,
                },
            },
        ]
    return {
        "name": name,
        "meta": {"generated_by": "chassis scaffold-suite --kind serving", "split": "train"},
        "expectations": expectations,
    }
