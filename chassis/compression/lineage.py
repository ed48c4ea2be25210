"""What a compressed version says about where it came from: the tags it inherits from its
parent, and the ones that record how it was made.

A compressed version is the same trained model in another form, so it keeps its parent's
spec, dataset fingerprint, task, shapes, input columns and git commit (the drift check, a
retraining and the gates read these on any version) and adds the parent's version, the
candidate's name and its recipe. Its own run and ONNX digest are its own.
"""

import json
from collections.abc import Mapping
from typing import Any

from chassis.registry.tags import (
    TAG_CANDIDATE,
    TAG_DATASET_FINGERPRINT,
    TAG_FEATURE_COLUMNS,
    TAG_FLOW_RUN_ID,
    TAG_GIT_COMMIT,
    TAG_N_CLASSES,
    TAG_N_FEATURES,
    TAG_N_OUTPUTS,
    TAG_ONNX_SHA256,
    TAG_PARENT_VERSION,
    TAG_RECIPE,
    TAG_RUN_ID,
    TAG_SPEC,
    TAG_TASK,
    TAG_TEXT_INPUT,
)

INHERITED_TAGS = (
    TAG_SPEC,
    TAG_DATASET_FINGERPRINT,
    TAG_TASK,
    TAG_N_FEATURES,
    TAG_N_OUTPUTS,
    TAG_N_CLASSES,
    TAG_FEATURE_COLUMNS,
    TAG_TEXT_INPUT,
    TAG_GIT_COMMIT,
)


def run_lineage(spec_reference: str, flow_run_id: str, parent_version: int) -> dict[str, str]:
    """Tags of every MLflow run of one compression (the parent run and each candidate's)."""
    return {
        TAG_SPEC: spec_reference,
        TAG_FLOW_RUN_ID: flow_run_id,
        TAG_PARENT_VERSION: str(parent_version),
        "chassis.stage": "compress",
    }


def compressed_version_tags(
    parent_tags: Mapping[str, str],
    parent_version: int,
    *,
    run_id: str,
    onnx_sha256: str,
    flow_run_id: str,
    candidate: str,
    recipe: Mapping[str, Any],
) -> dict[str, str]:
    """The registered tags of a version compressed from `parent_version`: the parent's
    inherited tags that are set (an empty one is not copied), then its own."""
    tags = {t: parent_tags[t] for t in INHERITED_TAGS if parent_tags.get(t)}
    tags.update(
        {
            TAG_RUN_ID: run_id,
            TAG_ONNX_SHA256: onnx_sha256,
            TAG_FLOW_RUN_ID: flow_run_id,
            TAG_PARENT_VERSION: str(parent_version),
            TAG_CANDIDATE: candidate,
            TAG_RECIPE: json.dumps(recipe, sort_keys=True),
        }
    )
    return tags
