"""How a version is compressed and its candidate chosen: every setting a user may give, once.

The compress flow takes this model as its `policy` parameter (the Prefect UI's run form and
prefect.yaml show each field's description), `chassis compress` builds its options from the
same fields, and the compression modules get their settings from it. Light on purpose (no
torch, no ONNX Runtime): the CLI reads it to build `--help`.
"""

import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from chassis.compression.candidates import CANDIDATE_NAMES, CandidateName
from chassis.errors import CompressionError
from chassis.policies import validated

if TYPE_CHECKING:
    from chassis.compression.classification import CompressionOptions
    from chassis.compression.measure import MeasureSettings
    from chassis.compression.select import SelectionPolicy

Objective = Literal["latency", "size", "balanced"]
ToleranceMode = Literal["relative", "absolute"]
CalibrationMethod = Literal["minmax", "entropy", "percentile"]
OBJECTIVES: tuple[Objective, ...] = typing.get_args(Objective)
TOLERANCE_MODES: tuple[ToleranceMode, ...] = typing.get_args(ToleranceMode)
CALIBRATION_METHODS: tuple[CalibrationMethod, ...] = typing.get_args(CalibrationMethod)
# Batch sizes every candidate is timed at: 1 (one request) and 64 (a full gateway batch).
TIMED_BATCH_SIZES = (1, 64)
# A text model's row is a transformer pass (~10 ms on one core for MiniLM at 64 tokens): 64
# rows a call, 100 times a candidate, would take minutes; 8 still shows what batching buys.
TEXT_TIMED_BATCH_SIZES = (1, 8)


class CompressionPolicy(BaseModel):
    """Compression settings. Defaults suit a small classifier on a 2-core machine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tolerance: Annotated[float, Field(ge=0, lt=1)] = Field(
        default=0.01,
        description="How much of the task's primary test metric a candidate may lose against "
        "the baseline (a classifier's accuracy; a regressor's RMSE, which may rise): a "
        "fraction of it (relative, 0.01 = 1%) or metric units (absolute).",
    )
    tolerance_mode: ToleranceMode = Field(
        default="relative",
        description="relative: tolerance is a fraction of the baseline's metric; absolute: "
        "metric units (accuracy points, or the target's units for RMSE).",
    )
    objective: Objective = Field(
        default="balanced",
        description="What the winner minimizes among passing candidates: batch-1 p50 latency, "
        "ONNX file size, or balanced (geometric mean of both ratios to the baseline).",
    )
    candidates: list[CandidateName] | None = Field(
        default=None,
        description="Candidates to build; empty builds all. The baseline is always one.",
    )
    per_channel: bool = Field(
        default=True, description="Static/dynamic int8: one scale per output channel."
    )
    calibration_method: CalibrationMethod = Field(
        default="minmax", description="How static int8 picks activation ranges from training rows."
    )
    prune_fraction: Annotated[float, Field(ge=0, lt=1)] = Field(
        default=0.5, description="Share of each hidden layer's neurons removed."
    )
    finetune_epochs: Annotated[int, Field(ge=0, le=1000)] = Field(
        default=10, description="Fine-tuning epochs after pruning."
    )
    temperature: Annotated[float, Field(gt=0, le=100)] = Field(
        default=4.0, description="Distillation softmax temperature."
    )
    alpha: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.7, description="Distillation weight of the soft (teacher) loss."
    )
    distill_epochs: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=40, description="Epochs of student distillation."
    )
    threads: Annotated[int, Field(ge=1, le=64)] = Field(
        default=1, description="ONNX Runtime intra-op threads when timing."
    )
    repeats: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=100, description="Timed runs per candidate and batch size."
    )

    def selection(self) -> "SelectionPolicy":
        from chassis.compression.select import SelectionPolicy

        return SelectionPolicy(
            tolerance=self.tolerance, mode=self.tolerance_mode, objective=self.objective
        )

    def build_options(self) -> "CompressionOptions":
        from chassis.compression.classification import CompressionOptions

        return CompressionOptions(
            candidates=tuple(self.candidates) if self.candidates else CANDIDATE_NAMES,
            per_channel=self.per_channel,
            calibration_method=self.calibration_method,
            prune_fraction=self.prune_fraction,
            finetune_epochs=self.finetune_epochs,
            temperature=self.temperature,
            alpha=self.alpha,
            distill_epochs=self.distill_epochs,
        )

    def measurement(self) -> "MeasureSettings":
        from chassis.compression.measure import MeasureSettings

        return MeasureSettings(
            threads=self.threads, batch_sizes=TIMED_BATCH_SIZES, repeats=self.repeats
        )


DEFAULT_POLICY = CompressionPolicy()


def compression_policy_from(values: Mapping[str, object]) -> CompressionPolicy:
    """A compression policy from user-given values; errors name each bad field."""
    return validated(CompressionPolicy, values, CompressionError, "compression policy")
