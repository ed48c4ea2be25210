"""The lineage tags a trained version carries."""

import json

from chassis import registry
from chassis.lineage import trained_version_tags


def tags(commit: str | None) -> dict[str, str]:
    return trained_version_tags("pkg.specs:wine", "fp-1", "flow-9", 13, 3, ("b", "a"), commit)


def test_a_trained_version_names_its_spec_data_run_and_shapes():
    assert tags("abc123") == {
        registry.TAG_SPEC: "pkg.specs:wine",
        registry.TAG_DATASET_FINGERPRINT: "fp-1",
        registry.TAG_FLOW_RUN_ID: "flow-9",
        registry.TAG_N_FEATURES: "13",
        registry.TAG_N_CLASSES: "3",
        registry.TAG_FEATURE_COLUMNS: '["b", "a"]',
        registry.TAG_GIT_COMMIT: "abc123",
    }


def test_the_input_column_order_is_kept_as_given():
    assert json.loads(tags(None)[registry.TAG_FEATURE_COLUMNS]) == ["b", "a"]


def test_outside_git_no_commit_tag_is_written():
    assert registry.TAG_GIT_COMMIT not in tags(None)
    assert registry.TAG_GIT_COMMIT not in tags("")
