import numpy as np
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
