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
from chassis.registry import tags

PARENT = {
    tags.TAG_SPEC: "pkg.specs:digits",
    tags.TAG_DATASET_FINGERPRINT: "fp-1",
    tags.TAG_N_FEATURES: "64",
    tags.TAG_N_CLASSES: "10",
    tags.TAG_GIT_COMMIT: "",  # outside git: empty, so not copied
    tags.TAG_RUN_ID: "parent-run",
    tags.TAG_ONNX_SHA256: "parent-digest",
    tags.TAG_WEIGHTS_SHA256: "parent-weights",
    tags.TAG_GATES: "passed",
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
        tags.TAG_SPEC,
        tags.TAG_DATASET_FINGERPRINT,
        tags.TAG_N_FEATURES,
        tags.TAG_N_CLASSES,
    ):
        assert child[tag] == PARENT[tag]
    assert tags.TAG_GIT_COMMIT not in child  # empty on the parent: nothing to inherit


def test_its_own_run_digest_and_judgements_are_not_inherited():
    child = tags()
    assert child[tags.TAG_RUN_ID] == "child-run"
    assert child[tags.TAG_ONNX_SHA256] == "child-digest"
    # Torch weights, a gate verdict: the parent's, not this version's.
    assert tags.TAG_WEIGHTS_SHA256 not in child and tags.TAG_GATES not in child
    assert set(child) - set(INHERITED_TAGS) == {
        tags.TAG_RUN_ID,
        tags.TAG_ONNX_SHA256,
        tags.TAG_FLOW_RUN_ID,
        TAG_PARENT_VERSION,
        TAG_CANDIDATE,
        TAG_RECIPE,
    }


def test_it_names_its_parent_candidate_and_a_stable_recipe():
    child = tags()
    assert child[TAG_PARENT_VERSION] == "3"
    assert child[TAG_CANDIDATE] == "int8_dynamic"
    assert child[tags.TAG_FLOW_RUN_ID] == "flow-9"
    assert child[TAG_RECIPE] == '{"bits": 8, "quantize": "dynamic"}'  # sorted keys
    assert json.loads(child[TAG_RECIPE]) == {"quantize": "dynamic", "bits": 8}


def test_the_parent_version_tag_is_the_one_the_registry_follows_to_the_root():
    # Registry.lineage_root walks this tag back to the trained version.
    assert TAG_PARENT_VERSION == tags.TAG_PARENT_VERSION


def test_every_run_of_a_compression_names_its_spec_flow_run_and_parent():
    assert run_lineage("pkg.specs:digits", "flow-9", 3) == {
        tags.TAG_SPEC: "pkg.specs:digits",
        tags.TAG_FLOW_RUN_ID: "flow-9",
        TAG_PARENT_VERSION: "3",
        "chassis.stage": "compress",
    }
