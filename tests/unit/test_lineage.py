"""The lineage tags a trained version carries."""

import json

from chassis.lineage import same_model_as_champion, trained_version_tags
from chassis.registry import tags as tag_names


def tags(commit: str | None) -> dict[str, str]:
    return trained_version_tags("pkg.specs:wine", "fp-1", "flow-9", 13, 3, ("b", "a"), commit)


def test_a_trained_version_names_its_spec_data_run_and_shapes():
    assert tags("abc123") == {
        tag_names.TAG_SPEC: "pkg.specs:wine",
        tag_names.TAG_DATASET_FINGERPRINT: "fp-1",
        tag_names.TAG_FLOW_RUN_ID: "flow-9",
        tag_names.TAG_TASK: "classification",
        tag_names.TAG_N_FEATURES: "13",
        tag_names.TAG_N_OUTPUTS: "3",
        tag_names.TAG_N_CLASSES: "3",
        tag_names.TAG_FEATURE_COLUMNS: '["b", "a"]',
        tag_names.TAG_GIT_COMMIT: "abc123",
    }


def test_a_regressor_records_its_task_and_one_output_and_no_classes():
    regressor = trained_version_tags(
        "pkg.specs:diabetes", "fp-1", "flow-9", 10, None, ("a",), None, task="regression"
    )
    assert regressor[tag_names.TAG_TASK] == "regression"
    assert regressor[tag_names.TAG_N_OUTPUTS] == "1"
    assert tag_names.TAG_N_CLASSES not in regressor


def test_the_input_column_order_is_kept_as_given():
    assert json.loads(tags(None)[tag_names.TAG_FEATURE_COLUMNS]) == ["b", "a"]


def test_outside_git_no_commit_tag_is_written():
    assert tag_names.TAG_GIT_COMMIT not in tags(None)
    assert tag_names.TAG_GIT_COMMIT not in tags("")


def test_bytes_equal_to_the_champion_are_the_champion():
    champion = {tag_names.TAG_ONNX_SHA256: "aaa"}
    root = {tag_names.TAG_ONNX_SHA256: "aaa"}
    assert same_model_as_champion("aaa", 4, champion, 4, root) == (4, "the champion")


def test_bytes_equal_to_what_the_champion_was_compressed_from_are_that_version():
    champion = {tag_names.TAG_ONNX_SHA256: "int8"}
    root = {tag_names.TAG_ONNX_SHA256: "fp32"}
    assert same_model_as_champion("fp32", 4, champion, 3, root) == (
        3,
        "the version champion v4 was compressed from",
    )


def test_other_bytes_are_a_new_model():
    champion = {tag_names.TAG_ONNX_SHA256: "int8"}
    assert (
        same_model_as_champion("new", 4, champion, 3, {tag_names.TAG_ONNX_SHA256: "fp32"}) is None
    )
    assert same_model_as_champion("new", 4, {}, 4, {}) is None  # no digest recorded
