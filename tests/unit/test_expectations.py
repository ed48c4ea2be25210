import json

import pytest

from chassis.errors import DataValidationError, ExpectationSuiteError
from chassis.expectations import (
    build_suite,
    check_frame,
    load_suite,
    resolve_suite_path,
    validate_frame,
)
from chassis.modelspec import load_spec
from chassis.settings import PROJECT_ROOT, ChassisSettings
from chassis.suite_scaffold import scaffold_training_suite
from tests.fixtures import specs


def suite_for_blobs():
    return build_suite(scaffold_training_suite(specs.blob_dataset(), "blobs"), "test")


@pytest.mark.parametrize(
    "name",
    ["digits.training.json", "wine.training.json", "digits.serving.json", "wine.serving.json"],
)
def test_committed_suites_load_completely(name):
    path = PROJECT_ROOT / "expectations" / name
    declared = len(json.loads(path.read_text())["expectations"])
    assert len(load_suite(path).expectations) == declared
    assert any(
        e["type"] == "expect_table_row_count_to_be_between"
        for e in json.loads(path.read_text())["expectations"]
    )


@pytest.mark.parametrize("spec_reference", ["chassis.specs.digits:spec", "chassis.specs.wine:spec"])
def test_bundled_specs_find_their_suites_from_any_working_directory(
    spec_reference, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a user's project, with no expectations/ of Chassis's
    spec = load_spec(spec_reference)
    for reference in (spec.expectation_suite, spec.serving_suite):
        assert reference is not None
        path = resolve_suite_path(reference, ChassisSettings().expectations_dir)
        assert path.parent == PROJECT_ROOT / "expectations"
        assert load_suite(path).expectations


def test_a_users_relative_suite_is_found_in_their_projects_expectations(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "expectations").mkdir(parents=True)
    mine = project / "expectations" / "churn.training.json"
    mine.write_text(json.dumps(scaffold_training_suite(specs.blob_dataset(), "churn")))
    monkeypatch.chdir(project)
    path = resolve_suite_path("churn.training.json", ChassisSettings().expectations_dir)
    assert path == mine
    assert load_suite(path).expectations
    # Chassis's own folder is not where a user's reference is looked up.
    with pytest.raises(ExpectationSuiteError, match=r"looked at .*project/expectations/digits"):
        resolve_suite_path("digits.training.json", ChassisSettings().expectations_dir)


def test_unknown_expectation_type_is_refused_not_dropped():
    document = {
        "name": "s",
        "expectations": [
            {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
            {"type": "expect_column_to_be_awesome", "kwargs": {"column": "a"}},
        ],
    }
    with pytest.raises(ExpectationSuiteError, match=r"loaded 1 of 2.*expect_column_to_be_awesome"):
        build_suite(document, "inline")


def test_unreadable_suite_file(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ExpectationSuiteError, match="not readable JSON"):
        load_suite(tmp_path / "bad.json")
    with pytest.raises(ExpectationSuiteError, match="not found"):
        resolve_suite_path("missing.json", tmp_path)


def test_passing_frame():
    result = check_frame(specs.blob_dataset().train, suite_for_blobs(), "blobs")
    assert result.success
    assert len(result.results) == 2 + 3 * 4 + 2


def test_failures_name_every_expectation_and_observed_value():
    frame = specs.blob_dataset().train.copy()
    frame.loc[0, "f0"] = 1e6
    frame.loc[1, "label"] = 7
    with pytest.raises(DataValidationError) as raised:
        check_frame(frame, suite_for_blobs(), "blobs")
    message = str(raised.value)
    assert "2 of 16 expectations" in message
    assert "expect_column_values_to_be_between(f0)" in message and "1000000.0" in message
    assert "expect_column_values_to_be_in_set(label)" in message and "[7]" in message


def test_row_count_floor_catches_an_empty_batch():
    result = validate_frame(specs.blob_dataset().train.iloc[0:0], suite_for_blobs())
    failing = {r.expectation for r in result.failures}
    assert failing == {"expect_table_row_count_to_be_between"}
    assert "FAIL" in result.to_markdown("t")


@pytest.mark.parametrize("key", ["digits", "wine"])
def test_serving_suites_accept_served_features_and_catch_broken_batches(key):
    import numpy as np

    from chassis.modelspec import load_spec

    spec = load_spec(f"chassis.specs.{key}:spec")
    dataset = spec.load_data()
    assert spec.serving_suite is not None
    suite = load_suite(PROJECT_ROOT / "expectations" / spec.serving_suite)
    batch = dataset.test[list(dataset.feature_columns)]
    assert validate_frame(batch, suite).success
    assert validate_frame(batch.head(1), suite).success  # a single request is a batch too

    spiked = batch.copy()
    spiked.iloc[: len(spiked) // 5, 0] = np.nan  # a 20 % null spike in one column
    failing = {(r.expectation, r.column) for r in validate_frame(spiked, suite).failures}
    assert ("expect_column_values_to_not_be_null", dataset.feature_columns[0]) in failing

    empty = validate_frame(batch.iloc[0:0], suite)
    assert {r.expectation for r in empty.failures} == {"expect_table_row_count_to_be_between"}
