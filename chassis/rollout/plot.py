"""The rollout's picture: per step, the candidate's share of traffic and its verdict, and
the figures the analysis judged, candidate beside stable, with the intervals it judged them
by (chassis/rollout/analysis.py): model latency per row (p50, p90), the candidate's p99
against the budget, and the error ratio against its limit.

Steps are drawn in the order they ran, as categories (their windows last from seconds to
minutes; what matters is the sequence). A step the runner recorded twice, judged once and
then ruled on (a share below the minimum after degrading: rolled back), is drawn once, with
the ruling.
"""

import math
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from chassis.figures import (
    CANDIDATE_COLOR,
    LIMIT_COLOR,
    STABLE_COLOR,
    new_figure,
    outcome_color,
    plain_log_axis,
)
from chassis.rollout.analysis import Estimate, StepAnalysis
from chassis.rollout.policy import RolloutPolicy

# Where stable's and the candidate's marks sit either side of their step, so their
# intervals do not hide each other.
OFFSET = 0.12
MS = 1000.0
PERCENT = 100.0


def drawn_steps(analyses: Sequence[StepAnalysis]) -> list[StepAnalysis]:
    """The steps to draw: consecutive records of the same step collapse into the last."""
    steps: list[StepAnalysis] = []
    for analysis in analyses:
        if steps and steps[-1].step == analysis.step:
            steps[-1] = analysis
        else:
            steps.append(analysis)
    return steps


def rollout_figure(title: str, analyses: Sequence[StepAnalysis], policy: RolloutPolicy) -> Figure:
    """The figure of a rollout's steps; `title` names it (model, versions, outcome)."""
    steps = drawn_steps(analyses)
    if not steps:
        raise ValueError("a rollout plot needs at least one step")
    figure = new_figure(12, 11)
    share, latency, budget, errors = figure.subplots(
        4, 1, sharex=True, height_ratios=(1, 1.3, 1, 1)
    )
    figure.suptitle(title, fontsize=14)
    _share_panel(share, steps)
    _latency_panel(latency, steps)
    _budget_panel(budget, steps, policy)
    _error_panel(errors, steps, policy)
    errors.set_xticks(range(len(steps)), [s.step for s in steps], rotation=20, ha="right")
    errors.set_xlabel("step (in the order it ran)")
    # A step or two keep bars of a step's width, not the whole panel's.
    pad = max(0.0, (3 - len(steps)) / 2)
    errors.set_xlim(-0.6 - pad, len(steps) - 0.4 + pad)
    return figure


def _share_panel(axes: Axes, steps: Sequence[StepAnalysis]) -> None:
    positions = range(len(steps))
    shares = [s.share_percent if s.share_percent is not None else math.nan for s in steps]
    bars = axes.bar(
        positions,
        [0.0 if math.isnan(v) else v for v in shares],
        color=[outcome_color(s.verdict) for s in steps],
        width=0.6,
    )
    for bar, step, value in zip(bars.patches, steps, shares, strict=True):
        shown = "?" if math.isnan(value) else f"{value:g}%"
        axes.annotate(
            f"{shown}\n{step.verdict}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    axes.set_ylim(0, 135)
    axes.set_ylabel("candidate share (%)")
    axes.set_title(
        "Candidate's share of live traffic and the step's verdict "
        "(green pass, orange degraded, red fail, grey no verdict)",
        loc="left",
    )
    axes.grid(alpha=0.3, axis="y")


def _latency_panel(axes: Axes, steps: Sequence[StepAnalysis]) -> None:
    for side, color, offset in (
        ("stable", STABLE_COLOR, -OFFSET),
        ("candidate", CANDIDATE_COLOR, OFFSET),
    ):
        for quantile, marker in ((0.5, "o"), (0.9, "s")):
            estimates = [_quantile(s, side, quantile) for s in steps]
            _intervals(
                axes,
                [i + offset for i in range(len(steps))],
                estimates,
                MS,
                color=color,
                marker=marker,
                label=f"{side} p{quantile * 100:g}",
            )
    axes.set_ylabel("model CPU time per row (ms)")
    axes.set_title(
        "Model latency, stable vs candidate, with the intervals the analysis judged",
        loc="left",
    )
    axes.set_ylim(bottom=0)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    axes.grid(alpha=0.3, axis="y")


def _budget_panel(axes: Axes, steps: Sequence[StepAnalysis], policy: RolloutPolicy) -> None:
    _intervals(
        axes,
        list(range(len(steps))),
        [s.figures.candidate_p99 for s in steps],
        MS,
        color=CANDIDATE_COLOR,
        marker="D",
        label="candidate p99",
    )
    axes.axhline(
        policy.p99_budget_ms,
        color=LIMIT_COLOR,
        linestyle="--",
        label=f"budget ({policy.p99_budget_ms:g} ms)",
    )
    plain_log_axis(axes)
    axes.set_ylabel("p99 (ms, log)")
    axes.set_title("Candidate's p99 model time per row against the budget", loc="left")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    axes.grid(alpha=0.3, axis="y", which="both")


def _error_panel(axes: Axes, steps: Sequence[StepAnalysis], policy: RolloutPolicy) -> None:
    for side, color, offset in (
        ("stable", STABLE_COLOR, -OFFSET),
        ("candidate", CANDIDATE_COLOR, OFFSET),
    ):
        estimates = [
            s.figures.stable_errors if side == "stable" else s.figures.candidate_errors
            for s in steps
        ]
        _intervals(
            axes,
            [i + offset for i in range(len(steps))],
            estimates,
            PERCENT,
            color=color,
            marker="o",
            label=side,
        )
    axes.axhline(
        policy.max_error_rate * PERCENT,
        color=LIMIT_COLOR,
        linestyle="--",
        label=f"limit ({policy.max_error_rate * PERCENT:g}%)",
    )
    axes.set_ylim(bottom=0)
    axes.set_ylabel("errors (% of executions)")
    axes.set_title("Error ratio with its Wilson interval", loc="left")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    axes.grid(alpha=0.3, axis="y")


def _quantile(step: StepAnalysis, side: str, quantile: float) -> Estimate | None:
    figures = step.figures
    pairs = figures.stable_latency if side == "stable" else figures.candidate_latency
    return dict(pairs).get(quantile)


def _intervals(
    axes: Axes,
    positions: Sequence[float],
    estimates: Sequence[Estimate | None],
    scale: float,
    *,
    color: str,
    marker: str,
    label: str,
) -> None:
    """One series: each estimate at its step with its interval; a step without one is a
    gap, and an interval not yet bounded above (too few samples) is drawn to its estimate."""
    values, below, above = [], [], []
    for estimate in estimates:
        if estimate is None or not math.isfinite(estimate.value):
            values.append(math.nan)
            below.append(0.0)
            above.append(0.0)
            continue
        value = estimate.value * scale
        values.append(value)
        below.append(max(value - estimate.low * scale, 0.0))
        high = estimate.high * scale
        above.append(max(high - value, 0.0) if math.isfinite(high) else 0.0)
    axes.errorbar(
        positions,
        values,
        yerr=[below, above],
        color=color,
        marker=marker,
        linestyle="none",
        capsize=4,
        label=label,
    )
