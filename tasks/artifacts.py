"""Prefect artifacts: one stable key per model and kind, and table cells that render as text.

Prefect keeps an artifact's history by key (the Artifacts page lists each key once, with
every version of it). A key that carried the model version started a new line at every
release (22 keys after two); the version is in the artifact's text and description instead.
Keys allow lowercase letters, digits and dashes.
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from chassis.markdown import cell

ArtifactKind = Literal[
    "training-data-validation",
    "training-metrics",
    "training-summary",
    "mlflow-version",
    "compression-candidates",
    "compression-summary",
    "compression-cascade",
    "gates",
    "alias-moves",
    "alias-change",
    "rollout-steps",
    "rollout-decision",
    "release-summary",
    "serving-suite",
    "drift-columns",
    "drift-summary",
    "diagnosis",
    "live-accuracy",
    "replica-restart",
]


def artifact_key(kind: ArtifactKind, model: str) -> str:
    """`<kind>-<model>`, e.g. `gates-digits-mlp`: the kind first, so the Artifacts page
    groups one kind of every model together."""
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-") or "model"
    return f"{kind}-{slug}"[:200]


def publish_markdown(markdown: str, kind: ArtifactKind, model: str, *, description: str) -> None:
    create_markdown_artifact(
        markdown=markdown, key=artifact_key(kind, model), description=description
    )


def publish_table(
    rows: Sequence[Mapping[str, Any]],
    kind: ArtifactKind | None,
    model: str,
    *,
    description: str,
) -> None:
    """A table artifact; with no kind, one of the current run only (no key: a rollout's
    per-step tables belong to the step's task run, the summary table has the key)."""
    create_table_artifact(
        table=[table_row(r) for r in rows],
        key=artifact_key(kind, model) if kind is not None else None,
        description=description,
    )


def table_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Text cells escaped (Prefect's UI renders each as markdown); numbers and booleans as
    they are."""
    return {k: cell(v) if isinstance(v, str) else v for k, v in row.items()}
