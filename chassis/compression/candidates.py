"""A compression candidate: an ONNX file plus the recipe that made it."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASELINE = "baseline"
DYNAMIC_INT8 = "dynamic-int8"
STATIC_INT8 = "static-int8"
PRUNED = "pruned"
PRUNED_INT8 = "pruned+int8"
DISTILLED = "distilled"
DISTILLED_INT8 = "distilled+int8"
CANDIDATE_NAMES = (
    BASELINE,
    DYNAMIC_INT8,
    STATIC_INT8,
    PRUNED,
    PRUNED_INT8,
    DISTILLED,
    DISTILLED_INT8,
)


@dataclass(frozen=True)
class Candidate:
    """One model to measure. `recipe` is JSON-serializable and is recorded with the version."""

    name: str
    onnx_path: Path
    recipe: dict[str, Any] = field(default_factory=dict)
