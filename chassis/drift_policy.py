"""How a drift check judges a window: every setting of it, defined once.

The drift_check flow takes `DriftPolicy` as its `policy` parameter (the Prefect UI's form and
prefect.yaml show each field's description), `chassis drift-check` builds its options from
the same fields, and chassis/drift.py reads it. Light on purpose (no pandas, no Evidently):
the CLI reads it to build `--help`.
"""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from chassis.errors import DriftInputError
from chassis.policies import validated

SuiteAction = Literal["fail", "warn", "skip"]


class DriftPolicy(BaseModel):
    """How a drift check judges a window. Evidently's defaults unless set; per-column
    overrides win over the global ones. The drift_check flow takes it as its `policy`
    parameter and `chassis drift-check` builds its options from these fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    drift_share: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.5, description="Dataset drift when this share of columns drift."
    )
    method: str | None = Field(
        default=None, description="Evidently stat test for every column (empty: its own)."
    )
    threshold: Annotated[float | None, Field(gt=0)] = Field(
        default=None, description="Threshold of that stat test (empty: the test's own)."
    )
    per_column_method: dict[str, str] = Field(
        default_factory=dict, description="Stat test of single columns by name (over `method`)."
    )
    per_column_threshold: dict[str, float] = Field(
        default_factory=dict,
        description="Stat-test threshold of single columns by name (over `threshold`).",
    )
    min_rows: Annotated[int, Field(ge=1)] = Field(
        default=30, description="Fewer served rows than this is a data-quality failure."
    )
    max_null_share: Annotated[float, Field(ge=0, lt=1)] = Field(
        default=0.2,
        description="Share of null (and null or infinite together) values a column may hold.",
    )
    # An infinite input is a broken producer (an overflow, a division by zero upstream), not
    # a value of the distribution: none by default. Tolerated ones are left out of the
    # distribution test with their rows.
    max_infinite_share: Annotated[float, Field(ge=0, lt=1)] = Field(
        default=0.0, description="Share of +/-inf values a column may hold."
    )
    # Drift tests on 10^5 rows already resolve tiny shifts, and the cost grows with the rows.
    max_rows: Annotated[int, Field(ge=1)] = Field(
        default=200_000,
        description="Statistics on a uniform random sample of at most this many rows a side.",
    )
    seed: Annotated[int, Field(ge=0)] = Field(default=0, description="Seed of that sample.")
    # A window too large to read into memory: every row judged from per-column sketches
    # (chassis/drift_stream.py), the same tests and verdicts as Evidently's, in bounded
    # memory; no Evidently HTML (a per-column table instead) and no serving suite.
    streamed: bool = Field(
        default=False,
        description="Read the window as a stream and judge every row from per-column "
        "sketches, in bounded memory (Evidently's default tests; reference of over 1,000 rows; "
        "no serving suite, no Evidently report).",
    )
    # Each part is one task of the flow's task runner (threads by default; Dask or Ray
    # runners spread them over machines) holding one record batch at a time, so memory
    # grows with the parts run at once, not with the window. One by default: on a 2-core
    # machine shared with other work, 2 parts on threads were no faster (BENCHMARKS.md).
    stream_parts: Annotated[int, Field(ge=1, le=1024)] = Field(
        default=1,
        description="With streamed: the window's log files are summarized in this many "
        "tasks run by the flow's task runner, then merged (each task holds one record batch "
        "at a time).",
    )
    serving_suite: SuiteAction = Field(
        default="fail",
        description="When the window breaks the model's serving suite (Great Expectations, "
        "the spec's serving_suite): fail: a data-quality failure, drift is not judged; warn: "
        "recorded, drift judged anyway; skip: the suite is not run.",
    )
    # Live accuracy (feedback joined with predictions, chassis/live_accuracy.py) is judged
    # beside drift: a version whose accuracy's upper confidence bound is below its accuracy
    # gate emits the accuracy event, as drift emits its own.
    min_feedback_rows: Annotated[int, Field(ge=1)] = Field(
        default=100,
        description="Live accuracy is judged against the accuracy gate only on at least this "
        "many feedback rows of a version in the window.",
    )
    accuracy_false_alarm_rate: Annotated[float, Field(gt=0, lt=0.5)] = Field(
        default=0.05,
        description="Chance that a version as accurate as its gate is judged below it: the "
        "one-sided level of the Wilson upper bound compared with the gate.",
    )


def drift_policy_from(values: Mapping[str, object]) -> DriftPolicy:
    """A drift policy from user-given values; errors name each bad field."""
    return validated(DriftPolicy, values, DriftInputError, "drift policy")


# The longest window a check reads (the drift_check flow's window_minutes allows as much).
MAX_WINDOW = timedelta(days=7)


def window_since(since: datetime, end: datetime) -> datetime:
    """`since` as the start of a window ending at `end`, in UTC; refused when it has no time
    zone (whose clock?), is not before `end`, or is further back than MAX_WINDOW."""
    if since.tzinfo is None:
        raise DriftInputError(f"since {since.isoformat()} has no time zone (add Z for UTC)")
    start = since.astimezone(UTC)
    if start >= end:
        raise DriftInputError(f"since {start.isoformat()} is not before now ({end.isoformat()})")
    if end - start > MAX_WINDOW:
        raise DriftInputError(f"since {start.isoformat()} is more than 7 days ago")
    return start
