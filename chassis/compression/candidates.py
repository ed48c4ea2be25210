"""A compression candidate: an ONNX file plus the recipe that made it."""

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

CandidateName = Literal[
    "baseline",
    "dynamic-int8",
    "static-int8",
    "pruned",
    "pruned+int8",
    "distilled",
    "distilled+int8",
]
# Every candidate, in the order they are built and shown; the names below are its members.
CANDIDATE_NAMES: tuple[CandidateName, ...] = typing.get_args(CandidateName)
BASELINE: CandidateName = "baseline"
DYNAMIC_INT8: CandidateName = "dynamic-int8"
STATIC_INT8: CandidateName = "static-int8"
PRUNED: CandidateName = "pruned"
PRUNED_INT8: CandidateName = "pruned+int8"
DISTILLED: CandidateName = "distilled"
DISTILLED_INT8: CandidateName = "distilled+int8"


@dataclass(frozen=True)
class Candidate:
    """One model to measure. `recipe` is JSON-serializable and is recorded with the version."""

    name: str
    onnx_path: Path
    recipe: dict[str, Any] = field(default_factory=dict)


# The candidates table's column with the one-row latency over the baseline's, as text
# ("0.93x (95% 0.90-0.95)", or "reference" for the baseline itself).
LATENCY_VS_BASELINE_COLUMN = "b1_latency_vs_baseline"
