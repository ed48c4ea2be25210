"""Deterministic train/validation/test splits for bundled datasets: stratified by class for
a classifier, plain shuffled for a regressor (a continuous target has no classes)."""

from typing import cast

import pandas as pd

from chassis.modelspec import Dataset


def stratified_splits(
    frame: pd.DataFrame,
    label_column: str,
    *,
    validation_fraction: float = 0.15,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    return _splits(frame, label_column, validation_fraction, test_fraction, seed, stratify=True)


def random_splits(
    frame: pd.DataFrame,
    label_column: str,
    *,
    validation_fraction: float = 0.15,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    return _splits(frame, label_column, validation_fraction, test_fraction, seed, stratify=False)


def _splits(
    frame: pd.DataFrame,
    label_column: str,
    validation_fraction: float,
    test_fraction: float,
    seed: int,
    *,
    stratify: bool,
) -> Dataset:
    from sklearn.model_selection import train_test_split

    # sklearn has no types: given a frame, train_test_split returns its two parts as frames.
    rest, test = cast(
        list[pd.DataFrame],
        train_test_split(
            frame,
            test_size=test_fraction,
            stratify=frame[label_column] if stratify else None,
            random_state=seed,
        ),
    )
    train, validation = cast(
        list[pd.DataFrame],
        train_test_split(
            rest,
            test_size=validation_fraction / (1 - test_fraction),
            stratify=rest[label_column] if stratify else None,
            random_state=seed,
        ),
    )

    features = tuple(c for c in frame.columns if c != label_column)
    return Dataset(
        train=train.reset_index(drop=True),
        validation=validation.reset_index(drop=True),
        test=test.reset_index(drop=True),
        feature_columns=features,
        label_column=label_column,
    )
