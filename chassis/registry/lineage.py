"""Lineage: a compressed version leads back, through its parents, to the version trained."""

import json

from mlflow import MlflowClient

from chassis.registry.reads import version_tags
from chassis.registry.tags import TAG_FEATURE_COLUMNS, TAG_PARENT_VERSION


def lineage_root(client: MlflowClient, name: str, version: int) -> tuple[int, dict[str, str]]:
    """The version that was trained (following compression parents) and its tags."""
    seen: set[int] = set()
    tags = version_tags(client, name, version)
    while TAG_PARENT_VERSION in tags and version not in seen:
        seen.add(version)
        version = int(tags[TAG_PARENT_VERSION])
        tags = version_tags(client, name, version)
    return version, tags


def feature_columns(client: MlflowClient, name: str, version: int) -> list[str] | None:
    _, tags = lineage_root(client, name, version)
    raw = tags.get(TAG_FEATURE_COLUMNS)
    return list(json.loads(raw)) if raw else None
