import numpy as np
import pandas as pd
import pytest

from chassis.data import check_dataset, class_count, fingerprint, load_dataset
from chassis.errors import DatasetError
from tests.fixtures import specs


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (specs.missing_label, "train: label column 'label' is missing"),
        (specs.empty, "train: no rows.*validation: no rows.*test: no rows"),
        (specs.nan_features, r"1 NaN or infinite feature value\(s\) in column\(s\): 'f1'"),
        (specs.inf_features, r"1 NaN or infinite feature value\(s\) in column\(s\): 'f1'"),
        (specs.string_features, r"non-numeric dtype: 'f2' \(object\)"),
        (specs.float_labels, "label column 'label' has dtype float64"),
    ],
    ids=["missing-label", "empty", "nan", "inf", "wrong-dtype", "float-labels"],
)
def test_bad_datasets_are_refused_with_the_problem_named(spec, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset(spec.load_data, spec.name)


def test_good_dataset_passes_and_counts_classes():
    dataset = load_dataset(specs.good.load_data, specs.good.name)
    assert class_count(dataset) == 3


def test_loader_that_raises_is_reported():
    def broken():
        raise FileNotFoundError("data.csv")

    with pytest.raises(DatasetError, match=r"load_data\(\) failed: FileNotFoundError: data.csv"):
        load_dataset(broken, "x")


def test_loader_returning_wrong_type():
    with pytest.raises(DatasetError, match=r"must return chassis.modelspec.Dataset, got DataFrame"):
        load_dataset(lambda: specs.blobs(), "x")


def test_single_class_training_split_is_refused():
    frame = specs.blobs()
    frame["label"] = 0
    with pytest.raises(DatasetError, match="1 distinct value"):
        check_dataset(specs.blob_dataset(frame))


def test_fingerprint_is_stable_and_sensitive_to_one_value():
    first = fingerprint(specs.blob_dataset())
    assert first == fingerprint(specs.blob_dataset())
    changed = specs.blobs()
    changed.loc[5, "f0"] = np.nextafter(changed["f0"].to_numpy()[5], np.inf)

    assert fingerprint(specs.blob_dataset(changed)) != first
    assert len(first) == 64


# ---- label checks of the task --------------------------------------------------------------


def regression_frame(rows: int = 120) -> pd.DataFrame:
    frame = specs.blobs(rows=rows)
    frame["label"] = frame["f0"] * 3.0 + 0.5  # a quantity, float64
    return frame


def test_a_float_target_of_a_classifier_is_refused_pointing_to_regression():
    with pytest.raises(DatasetError, match=r'dtype float64; .*declare task="regression"'):
        check_dataset(specs.blob_dataset(regression_frame()))


def test_a_quantity_cast_to_int_is_refused_as_too_many_classes_pointing_to_regression():
    frame = regression_frame()
    frame["label"] = (frame["label"] - frame["label"].min()).round().astype("int64")
    with pytest.raises(
        DatasetError,
        match=r"has \d+ classes \(0\.\.\d+\) for 80 training rows, more than a tenth of them"
        r'.*declare task="regression"',
    ):
        check_dataset(specs.blob_dataset(frame))


def test_classes_that_never_appear_in_training_are_refused():
    frame = specs.blobs()
    frame.loc[frame["label"] == 1, "label"] = 3  # classes 0, 2, 3: class 1 is never seen
    with pytest.raises(DatasetError, match=r"1 of 0\.\.3 never appear in train \(1\)"):
        check_dataset(specs.blob_dataset(frame))


def test_a_class_seen_only_outside_training_is_refused():
    frame = specs.blobs()
    frame.loc[110, "label"] = 3  # a test row of a class the train split never has
    with pytest.raises(DatasetError, match=r"never appear in train \(3\)"):
        check_dataset(specs.blob_dataset(frame))


def test_negative_class_labels_are_refused():
    frame = specs.blobs()
    frame.loc[0, "label"] = -1
    with pytest.raises(DatasetError, match="negative class labels"):
        check_dataset(specs.blob_dataset(frame))


def test_a_float_target_is_a_valid_regression_dataset():
    check_dataset(specs.blob_dataset(regression_frame()), "regression")


def test_an_integer_target_is_a_valid_regression_dataset():
    frame = regression_frame()
    frame["label"] = frame["label"].round().astype("int64") + 1000
    check_dataset(specs.blob_dataset(frame), "regression")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.nan, r"validation: target column 'label' has 1 NaN or infinite value\(s\)"),
        (np.inf, r"validation: target column 'label' has 1 NaN or infinite value\(s\)"),
    ],
    ids=["nan", "inf"],
)
def test_a_non_finite_regression_target_is_refused(value, message):
    frame = regression_frame()
    frame.loc[85, "label"] = value
    with pytest.raises(DatasetError, match=message):
        check_dataset(specs.blob_dataset(frame), "regression")


def test_a_non_numeric_regression_target_is_refused():
    frame = regression_frame()
    frame["label"] = frame["label"].astype(str)
    with pytest.raises(DatasetError, match="target column 'label' has dtype object"):
        check_dataset(specs.blob_dataset(frame), "regression")


def test_a_constant_regression_target_is_refused():
    frame = regression_frame()
    frame["label"] = 2.5
    with pytest.raises(DatasetError, match=r"1 distinct value.*a regressor needs a target"):
        check_dataset(specs.blob_dataset(frame), "regression")
