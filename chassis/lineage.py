"""Where a model came from: the git commit of the user's project, when there is one, and
the lineage tags a trained version carries."""

import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from chassis.registry.tags import (
    TAG_DATASET_FINGERPRINT,
    TAG_FEATURE_COLUMNS,
    TAG_FLOW_RUN_ID,
    TAG_GIT_COMMIT,
    TAG_N_CLASSES,
    TAG_N_FEATURES,
    TAG_N_OUTPUTS,
    TAG_ONNX_SHA256,
    TAG_SPEC,
    TAG_TASK,
)
from chassis.task import CLASSIFICATION, DEFAULT_TASK, Task, output_width


def git_commit(directory: Path | None = None) -> str | None:
    """`<sha>` or `<sha>-dirty` for the repository containing `directory`; None outside git."""

    def git(*args: str) -> str | None:
        try:
            completed = subprocess.run(
                ["git", *args],
                cwd=directory,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return completed.stdout.strip() if completed.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if not sha:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{sha}-dirty" if dirty else sha


def trained_version_tags(
    spec_reference: str,
    dataset_fingerprint: str,
    flow_run_id: str,
    n_features: int,
    n_classes: int | None,
    feature_columns: Sequence[str],
    commit: str | None,
    task: Task = DEFAULT_TASK,
) -> dict[str, str]:
    """The lineage tags of a trained version (and its MLflow run): the spec and data it was
    trained from, the flow run, its task, input and output shapes (classes only for a
    classifier) and the input column order; the git commit only inside a repository."""
    tags = {
        TAG_SPEC: spec_reference,
        TAG_DATASET_FINGERPRINT: dataset_fingerprint,
        TAG_FLOW_RUN_ID: flow_run_id,
        TAG_TASK: task,
        TAG_N_FEATURES: str(n_features),
        TAG_N_OUTPUTS: str(output_width(task, n_classes)),
        TAG_FEATURE_COLUMNS: json.dumps(list(feature_columns)),
    }
    if task == CLASSIFICATION:
        tags[TAG_N_CLASSES] = str(n_classes)
    if commit:
        tags[TAG_GIT_COMMIT] = commit
    return tags


def same_model_as_champion(
    onnx_sha256: str,
    champion: int,
    champion_tags: Mapping[str, str],
    root: int,
    root_tags: Mapping[str, str],
) -> tuple[int, str] | None:
    """The existing version whose ONNX bytes equal `onnx_sha256`, and which it is: the
    champion itself, or the version it was compressed from (`root`: the same trained model,
    which a release would only compress into the champion again). None: a new model."""
    if champion_tags.get(TAG_ONNX_SHA256) == onnx_sha256:
        return champion, "the champion"
    if root_tags.get(TAG_ONNX_SHA256) == onnx_sha256:
        return root, f"the version champion v{champion} was compressed from"
    return None
