"""Helpers for Prefect artifact keys and tables (keys: lowercase letters, digits, dashes)."""

import re
from collections.abc import Mapping, Sequence
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact


def artifact_key(*parts: str) -> str:
    slug = "-".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in parts if p)
    return slug[:200] or "chassis"


def publish_markdown(markdown: str, *parts: str, description: str) -> None:
    create_markdown_artifact(markdown=markdown, key=artifact_key(*parts), description=description)


def publish_table(rows: Sequence[Mapping[str, Any]], *parts: str, description: str) -> None:
    create_table_artifact(
        table=[dict(r) for r in rows], key=artifact_key(*parts), description=description
    )
