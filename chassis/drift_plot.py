"""The drift check's picture: how much of the model's input drifted, check after check, and
which features moved most.

Two panels over the time of each check: the share of drifted features against the share
that makes dataset drift; and, for the features that drifted most in the latest check (at
most TOP_FEATURES of them, so 200 features stay readable), each one's drift strength
(`ColumnDrift.strength`: 1 at its test's threshold, above 1 drifted, whatever the test).
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure

from chassis.drift import ColumnDrift, DriftResult
from chassis.figures import LIMIT_COLOR, new_figure, outcome_color, plain_log_axis

if TYPE_CHECKING:
    from chassis.tracking import MonitoringRecord

# Features drawn as lines; the others are counted in a note.
TOP_FEATURES = 10
# Checks read back and drawn (the latest ones).
HISTORY_CHECKS = 30
# Drift strengths are drawn on a log axis; 0 (a p-value of 1) is drawn at this floor.
STRENGTH_FLOOR = 1e-2
# The time axis drawn around a single check (matplotlib would spread one point over years).
MIN_SPAN = timedelta(hours=2)
# The line of each feature drawn in the lower panel carries this gid (tests count them).
FEATURE_GID = "feature"


@dataclass(frozen=True)
class CheckPoint:
    """One drift check as the plot needs it."""

    time: datetime
    verdict: str
    drifted_share: float
    drift_share_needed: float
    # Each feature counted in the verdict, by name: its drift strength.
    strengths: Mapping[str, float]

    @classmethod
    def of(cls, time: datetime, result: DriftResult) -> "CheckPoint":
        return cls(
            time,
            result.verdict,
            result.drifted_share,
            result.drift_share_needed,
            strengths_of(result.columns),
        )


def strengths_of(columns: Sequence[ColumnDrift]) -> dict[str, float]:
    return {c.column: c.strength for c in columns if c.counted}


def top_features(checks: Sequence[CheckPoint], limit: int = TOP_FEATURES) -> list[str]:
    """The features of the latest check, the most drifted first (then the most drifted in
    any earlier check, then by name), at most `limit`."""
    latest = checks[-1].strengths

    def peak(name: str) -> float:
        return max((c.strengths.get(name, 0.0) for c in checks), default=0.0)

    ranked = sorted(latest, key=lambda name: (-latest[name], -peak(name), name))
    return ranked[:limit]


def drift_figure(model: str, checks: Sequence[CheckPoint], top: int = TOP_FEATURES) -> Figure:
    """The figure of `checks` (oldest first, the latest being the check just run)."""
    if not checks:
        raise ValueError("a drift plot needs at least one check")
    figure = new_figure(12, 8)
    share_axes, feature_axes = figure.subplots(2, 1, sharex=True, height_ratios=(1, 2))
    latest = checks[-1]
    figure.suptitle(
        f"Drift of {model}: {len(checks)} check(s), latest {latest.time:%Y-%m-%d %H:%M} UTC "
        f"({latest.verdict})",
        fontsize=14,
    )
    _share_panel(share_axes, checks)
    _feature_panel(feature_axes, checks, top_features(checks, top))
    locator = AutoDateLocator()
    feature_axes.xaxis.set_major_locator(locator)
    feature_axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    feature_axes.set_xlabel("time of the check (UTC)")
    start, end = checks[0].time, checks[-1].time
    if start == end:  # one check (or several at once): an axis of hours, not of years
        feature_axes.set_xlim(date2num(start - MIN_SPAN / 2), date2num(end + MIN_SPAN / 2))
    return figure


def _share_panel(axes: Axes, checks: Sequence[CheckPoint]) -> None:
    times = _times(checks)
    shares = [c.drifted_share * 100 for c in checks]
    axes.plot(times, shares, color="#555555", linewidth=1, zorder=1)
    for verdict in dict.fromkeys(c.verdict for c in checks):  # each verdict once, in order
        group = [c for c in checks if c.verdict == verdict]
        axes.scatter(
            _times(group),
            [c.drifted_share * 100 for c in group],
            color=outcome_color(verdict),
            s=40,
            zorder=2,
            label=verdict.replace("-", " "),
        )
    axes.axhline(
        checks[-1].drift_share_needed * 100,
        color=LIMIT_COLOR,
        linestyle="--",
        label=f"share that is drift ({checks[-1].drift_share_needed:.0%})",
    )
    axes.set_ylim(0, 105)
    axes.set_ylabel("drifted features (%)")
    axes.set_title("Share of features that drifted, per check", loc="left")
    axes.legend(loc="upper left", fontsize=8)
    axes.grid(alpha=0.3)


def _feature_panel(axes: Axes, checks: Sequence[CheckPoint], shown: Sequence[str]) -> None:
    times = _times(checks)
    for name in shown:
        values = [_drawn(c.strengths.get(name)) for c in checks]
        axes.plot(times, values, marker="o", markersize=4, label=name, gid=FEATURE_GID)
    axes.axhline(1.0, color=LIMIT_COLOR, linestyle="--", label="threshold (1 = drift)")
    plain_log_axis(axes)
    # At least a decade each side of the threshold, so 1 is never at an edge.
    low, high = axes.get_ylim()
    axes.set_ylim(min(low, 0.1), max(high, 10.0))
    axes.set_ylabel("drift strength (score / threshold, log)")
    total = len(checks[-1].strengths)
    title = "Drift strength per feature"
    if total > len(shown):
        title += f": the {len(shown)} most drifted of {total} features in the latest check"
    axes.set_title(title, loc="left")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="feature")
    axes.grid(alpha=0.3, which="both")


def _times(checks: Sequence[CheckPoint]) -> list[float]:
    """The checks' times as matplotlib's date numbers (what its date axis reads)."""
    return [float(date2num(c.time)) for c in checks]


def _drawn(strength: float | None) -> float:
    """A strength as drawn on the log axis: missing (the feature was not in that check) as
    a gap, 0 at the floor."""
    if strength is None or math.isnan(strength):
        return math.nan
    return max(strength, STRENGTH_FLOOR)


def check_of_record(record: "MonitoringRecord") -> CheckPoint | None:
    """An earlier check read back from its MLflow run; None when the run lacks what the plot
    needs (its verdict or drifted share: not a drift check's run)."""
    verdict = record.params.get("verdict")
    share = record.metrics.get("drifted_share")
    if verdict is None or share is None:
        return None
    try:
        needed = float(record.params.get("drift_share", "nan"))
    except ValueError:
        needed = math.nan
    try:
        columns = [ColumnDrift(**row) for row in record.columns or []]
    except (TypeError, ValueError):
        columns = []  # per-column results in a shape this Chassis does not know: share only
    return CheckPoint(record.started, verdict, share, needed, strengths_of(columns))
