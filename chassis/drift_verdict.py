"""A drift check's verdict, and the one sentence every place shows it in.

The verdict is dataset drift when at least `drift_share` of the judged columns drifted
(DriftPolicy). "no-drift (39% drifted)" read as if 39% of the data had drifted and the check
shrugged; the sentence says what was counted against what: "no drift: 39% of columns
drifted (25 of 64), 50% needed (32)". The CLI's line, the Prefect drift summary and the
artifacts' descriptions all use `verdict_sentence`; the JSON document keeps the machine
values (`verdict`, `drifted_share`, `judged_columns`, `drift_share_needed`). The window a
check judged is written the same way everywhere too (`window_text`). Light (no pandas): the
CLI renders both from the document.
"""

from datetime import UTC, datetime
from typing import Literal

Verdict = Literal["drift", "no-drift", "data-quality-failure"]


def needed_columns(judged: int, drift_share: float) -> int:
    """The fewest drifted columns of `judged` that make dataset drift, by the verdict's own
    comparison (share >= drift_share), so float rounding cannot make the two disagree."""
    if judged == 0:
        return 0
    return next((k for k in range(judged + 1) if k / judged >= drift_share), judged)


def verdict_sentence(verdict: str, drifted: int, judged: int, drift_share: float) -> str:
    """`no drift: 39% of columns drifted (25 of 64), 50% needed (32)`; a data-quality
    failure says drift was not judged (its problems are named where it is shown)."""
    if verdict == "data-quality-failure":
        return "data-quality failure: the window is unusable, drift not judged"
    label = "drift" if verdict == "drift" else "no drift"
    if judged == 0:
        return f"{label}: no column judged"
    return (
        f"{label}: {drifted / judged:.0%} of columns drifted ({drifted} of {judged}), "
        f"{drift_share:.0%} needed ({needed_columns(judged, drift_share)})"
    )


def window_text(start: datetime, end: datetime) -> str:
    """`2026-12-03 05:04:55 .. 05:05:30 UTC` (the end's date when it differs)."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    end_format = "%H:%M:%S" if end.date() == start.date() else "%Y-%m-%d %H:%M:%S"
    return f"{start:%Y-%m-%d %H:%M:%S} .. {end.strftime(end_format)} UTC"
