"""The tags a compressed version inherits from its parent and the ones it adds."""

import json

from chassis import registry
from chassis.compression.lineage import (
    INHERITED_TAGS,
    TAG_CANDIDATE,
    TAG_PARENT_VERSION,
    TAG_RECIPE,
    compressed_version_tags,
    run_lineage,
)

PARENT = {
    registry.TAG_SPEC: "pkg.specs:digits",
    registry.TAG_DATASET_FINGERPRINT: "fp-1",
    registry.TAG_N_FEATURES: "64",
    registry.TAG_N_CLASSES: "10",
    registry.TAG_GIT_COMMIT: "",  # outside git: empty, so not copied
    registry.TAG_RUN_ID: "parent-run",
    registry.TAG_ONNX_SHA256: "parent-digest",
    registry.TAG_WEIGHTS_SHA256: "parent-weights",
    registry.TAG_GATES: "passed",
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
        registry.TAG_SPEC,
        registry.TAG_DATASET_FINGERPRINT,
        registry.TAG_N_FEATURES,
        registry.TAG_N_CLASSES,
    ):
        assert child[tag] == PARENT[tag]
    assert registry.TAG_GIT_COMMIT not in child  # empty on the parent: nothing to inherit


def test_its_own_run_digest_and_judgements_are_not_inherited():
    child = tags()
    assert child[registry.TAG_RUN_ID] == "child-run"
    assert child[registry.TAG_ONNX_SHA256] == "child-digest"
    # Torch weights, a gate verdict: the parent's, not this version's.
    assert registry.TAG_WEIGHTS_SHA256 not in child and registry.TAG_GATES not in child
    assert set(child) - set(INHERITED_TAGS) == {
        registry.TAG_RUN_ID,
        registry.TAG_ONNX_SHA256,
        registry.TAG_FLOW_RUN_ID,
        TAG_PARENT_VERSION,
        TAG_CANDIDATE,
        TAG_RECIPE,
    }


def test_it_names_its_parent_candidate_and_a_stable_recipe():
    child = tags()
    assert child[TAG_PARENT_VERSION] == "3"
    assert child[TAG_CANDIDATE] == "int8_dynamic"
    assert child[registry.TAG_FLOW_RUN_ID] == "flow-9"
    assert child[TAG_RECIPE] == '{"bits": 8, "quantize": "dynamic"}'  # sorted keys
    assert json.loads(child[TAG_RECIPE]) == {"quantize": "dynamic", "bits": 8}


def test_the_parent_version_tag_is_the_one_the_registry_follows_to_the_root():
    # registry.lineage_root walks this tag back to the trained version.
    assert TAG_PARENT_VERSION == registry.TAG_PARENT_VERSION


def test_every_run_of_a_compression_names_its_spec_flow_run_and_parent():
    assert run_lineage("pkg.specs:digits", "flow-9", 3) == {
        registry.TAG_SPEC: "pkg.specs:digits",
        registry.TAG_FLOW_RUN_ID: "flow-9",
        TAG_PARENT_VERSION: "3",
        "chassis.stage": "compress",
    }
