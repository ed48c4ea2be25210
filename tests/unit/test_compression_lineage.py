"""The tags a compressed version inherits from its parent and the ones it adds."""

import json

from chassis.compression.lineage import (
    INHERITED_TAGS,
    TAG_CANDIDATE,
    TAG_PARENT_VERSION,
    TAG_RECIPE,
    compressed_version_tags,
    run_lineage,
)
from chassis.registry import tags as tag_names

PARENT = {
    tag_names.TAG_SPEC: "pkg.specs:digits",
    tag_names.TAG_DATASET_FINGERPRINT: "fp-1",
    tag_names.TAG_N_FEATURES: "64",
    tag_names.TAG_N_CLASSES: "10",
    tag_names.TAG_GIT_COMMIT: "",  # outside git: empty, so not copied
    tag_names.TAG_RUN_ID: "parent-run",
    tag_names.TAG_ONNX_SHA256: "parent-digest",
    tag_names.TAG_WEIGHTS_SHA256: "parent-weights",
    tag_names.TAG_GATES: "passed",
}


def tags() -> dict[str, str]:
    return compressed_version_tags(
        PARENT,
        3,
        run_id="child-run",
        onnx_sha256="child-digest",
        flow_run_id="flow-9",
        candidate="int8_dynamic",
        recipe={"quantize": "dynamic", "bits": 8},
    )


def test_a_compressed_version_keeps_what_describes_the_trained_model():
    child = tags()
    for tag in (
        tag_names.TAG_SPEC,
        tag_names.TAG_DATASET_FINGERPRINT,
        tag_names.TAG_N_FEATURES,
        tag_names.TAG_N_CLASSES,
    ):
        assert child[tag] == PARENT[tag]
    assert tag_names.TAG_GIT_COMMIT not in child  # empty on the parent: nothing to inherit


def test_a_compressed_regressor_keeps_its_task_and_output_width():
    parent = {
        tag_names.TAG_SPEC: "pkg.specs:diabetes",
        tag_names.TAG_TASK: "regression",
        tag_names.TAG_N_FEATURES: "10",
        tag_names.TAG_N_OUTPUTS: "1",
    }
    child = compressed_version_tags(
        parent, 1, run_id="r", onnx_sha256="d", flow_run_id="f", candidate="pruned", recipe={}
    )
    assert child[tag_names.TAG_TASK] == "regression"
    assert child[tag_names.TAG_N_OUTPUTS] == "1"
    assert tag_names.TAG_N_CLASSES not in child


def test_its_own_run_digest_and_judgements_are_not_inherited():
    child = tags()
    assert child[tag_names.TAG_RUN_ID] == "child-run"
    assert child[tag_names.TAG_ONNX_SHA256] == "child-digest"
    # Torch weights, a gate verdict: the parent's, not this version's.
    assert tag_names.TAG_WEIGHTS_SHA256 not in child and tag_names.TAG_GATES not in child
    assert set(child) - set(INHERITED_TAGS) == {
        tag_names.TAG_RUN_ID,
        tag_names.TAG_ONNX_SHA256,
        tag_names.TAG_FLOW_RUN_ID,
        TAG_PARENT_VERSION,
        TAG_CANDIDATE,
        TAG_RECIPE,
    }


def test_it_names_its_parent_candidate_and_a_stable_recipe():
    child = tags()
    assert child[TAG_PARENT_VERSION] == "3"
    assert child[TAG_CANDIDATE] == "int8_dynamic"
    assert child[tag_names.TAG_FLOW_RUN_ID] == "flow-9"
    assert child[TAG_RECIPE] == '{"bits": 8, "quantize": "dynamic"}'  # sorted keys
    assert json.loads(child[TAG_RECIPE]) == {"quantize": "dynamic", "bits": 8}


def test_the_parent_version_tag_is_the_one_the_registry_follows_to_the_root():
    # Registry.lineage_root walks this tag back to the trained version.
    assert TAG_PARENT_VERSION == tag_names.TAG_PARENT_VERSION


def test_every_run_of_a_compression_names_its_spec_flow_run_and_parent():
    assert run_lineage("pkg.specs:digits", "flow-9", 3) == {
        tag_names.TAG_SPEC: "pkg.specs:digits",
        tag_names.TAG_FLOW_RUN_ID: "flow-9",
        TAG_PARENT_VERSION: "3",
        "chassis.stage": "compress",
    }
