"""Accuracy-aware selection: the best candidate whose quality stays within tolerance.

Quality is the task's primary metric in its own direction: a classifier's accuracy may fall
to a floor below the baseline's, a regressor's RMSE may rise to a ceiling above it.

Pure: takes measurements, returns the winner and a plain-language explanation. The baseline
always qualifies, so selection never fails on quality; when no compressed candidate passes,
the baseline is selected and the explanation says so.
"""

import math
from dataclasses import dataclass

from chassis.compression.measure import Measurement
from chassis.compression.policy import DEFAULT_POLICY, OBJECTIVES, TOLERANCE_MODES
from chassis.errors import SelectionPolicyError


@dataclass(frozen=True)
class SelectionPolicy:
    """tolerance: how much of the baseline's primary quality metric a candidate may lose,
    as a fraction of it (relative) or in metric units (absolute); must be in [0, 1)."""

    tolerance: float = DEFAULT_POLICY.tolerance
    mode: str = DEFAULT_POLICY.tolerance_mode
    objective: str = DEFAULT_POLICY.objective
    latency_key: str = "b1_p50"

    def __post_init__(self) -> None:
        if (
            isinstance(self.tolerance, bool)
            # Checked at run time too: the policy is built from YAML and CLI values.
            or not isinstance(self.tolerance, int | float)  # pyright: ignore[reportUnnecessaryIsInstance]
            or not math.isfinite(self.tolerance)
            or not 0.0 <= self.tolerance < 1.0
        ):
            raise SelectionPolicyError(
                f"tolerance must be a number in [0, 1), got {self.tolerance!r} "
                "(0.01 = lose at most 1% of the baseline's quality)"
            )
        if self.mode not in TOLERANCE_MODES:
            raise SelectionPolicyError(
                f"unknown tolerance mode {self.mode!r}; choose one of {', '.join(TOLERANCE_MODES)}"
            )
        if self.objective not in OBJECTIVES:
            raise SelectionPolicyError(
                f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}"
            )

    def floor(self, baseline_quality: float, greater_is_better: bool = True) -> float:
        """The worst quality a candidate may have: below the baseline's when higher is
        better, above it (a ceiling) when lower is better."""
        loss = -1.0 if greater_is_better else 1.0
        if self.mode == "relative":
            return baseline_quality * (1.0 + loss * self.tolerance)
        return baseline_quality + loss * self.tolerance

    def describe(self) -> str:
        if self.mode == "relative":
            return f"at most {self.tolerance:.2%} relative loss"
        return f"at most {self.tolerance:g} absolute loss"


@dataclass(frozen=True)
class Verdict:
    name: str
    quality: float
    passed: bool
    score: float  # objective relative to the baseline; lower is better; 1.0 = baseline
    reason: str


@dataclass(frozen=True)
class Selection:
    selected: str
    baseline: str
    fallback_to_baseline: bool  # True when no compressed candidate passed
    floor: float
    primary_metric: str
    verdicts: list[Verdict]
    explanation: str


def settled_latency_ratio(
    measurement: Measurement, baseline: Measurement, policy: SelectionPolicy
) -> float:
    """The candidate's latency over the baseline's as a decision may use it: from the
    interleaved comparison when there is one, 1.0 while its interval includes 1 (a busy
    machine's noise must not change what a release ships); else the plain ratio of the
    two measured latencies (measurements made elsewhere, e.g. by hand)."""
    if measurement.name == baseline.name:
        return 1.0
    if measurement.latency_vs_baseline is not None:
        return measurement.latency_vs_baseline.settled
    base_latency = baseline.latency_ms.get(policy.latency_key, 0.0)
    return measurement.latency_ms.get(policy.latency_key, math.inf) / max(base_latency, 1e-9)


def objective_score(
    measurement: Measurement, baseline: Measurement, policy: SelectionPolicy
) -> float:
    size_ratio = measurement.size_bytes / max(baseline.size_bytes, 1)
    latency_ratio = settled_latency_ratio(measurement, baseline, policy)
    if policy.objective == "size":
        return size_ratio
    if policy.objective == "latency":
        return latency_ratio
    return math.sqrt(size_ratio * latency_ratio)


def select_candidate(
    measurements: list[Measurement],
    baseline_name: str,
    primary_metric: str,
    policy: SelectionPolicy,
    greater_is_better: bool = True,
) -> Selection:
    by_name = {m.name: m for m in measurements}
    if baseline_name not in by_name:
        raise SelectionPolicyError(f"no measurement of the baseline {baseline_name!r}")
    baseline = by_name[baseline_name]
    if primary_metric not in baseline.quality:
        raise SelectionPolicyError(
            f"quality metric {primary_metric!r} was not measured; measured: "
            f"{', '.join(sorted(baseline.quality))}"
        )
    floor = policy.floor(baseline.quality[primary_metric], greater_is_better)
    # sign * quality is higher-is-better whatever the metric's direction.
    sign = 1.0 if greater_is_better else -1.0
    bound, beyond = ("floor", "below") if greater_is_better else ("ceiling", "above")
    within = ">=" if greater_is_better else "<="
    verdicts: list[Verdict] = []

    for m in measurements:
        quality = m.quality.get(primary_metric, -sign * math.inf)
        score = objective_score(m, baseline, policy)
        if m.name == baseline_name:
            passed, reason = True, "reference"
        elif not math.isfinite(quality) or sign * quality < sign * floor:
            passed = False
            reason = f"{primary_metric} {quality:.4f} {beyond} {bound} {floor:.4f}"
        else:
            passed = True
            reason = f"{primary_metric} {quality:.4f} {within} {bound} {floor:.4f}"
        if m.latency_vs_baseline is not None and policy.objective != "size":
            reason += f"; {m.latency_vs_baseline.describe()}"
        verdicts.append(Verdict(m.name, quality, passed, score, reason))

    passing = [v for v in verdicts if v.passed]
    # Lower objective score wins; ties go to better quality, then to the baseline.
    winner = min(
        passing, key=lambda v: (v.score, -sign * v.quality, v.name != baseline_name, v.name)
    )
    fallback = all(v.name == baseline_name for v in passing)
    explanation = explain(
        winner, baseline_name, fallback, floor, primary_metric, policy, verdicts, greater_is_better
    )
    return Selection(
        winner.name, baseline_name, fallback, floor, primary_metric, verdicts, explanation
    )


def explain(
    winner: Verdict,
    baseline_name: str,
    fallback: bool,
    floor: float,
    primary_metric: str,
    policy: SelectionPolicy,
    verdicts: list[Verdict],
    greater_is_better: bool = True,
) -> str:
    base = next(v for v in verdicts if v.name == baseline_name)
    within = ">=" if greater_is_better else "<="
    rule = (
        f"Candidates must keep {primary_metric} {within} {floor:.4f} (baseline "
        f"{base.quality:.4f}, "
        f"{policy.describe()}); among those, the lowest {policy.objective} score wins "
        f"(score relative to the baseline, which scores 1.00)."
    )
    rejected = [v for v in verdicts if not v.passed]
    rejected_text = "; ".join(f"{v.name}: {v.reason}" for v in rejected) or "none"
    if fallback:
        head = (
            f"No compressed candidate passed the quality tolerance, so the baseline "
            f"'{baseline_name}' is selected unchanged."
        )
    elif winner.name == baseline_name:
        head = (
            f"Compressed candidates passed the tolerance but none beats the baseline on "
            f"{policy.objective}, so the baseline '{baseline_name}' is selected."
        )
    else:
        head = (
            f"Selected '{winner.name}': {primary_metric} {winner.quality:.4f} (baseline "
            f"{base.quality:.4f}), {policy.objective} score {winner.score:.2f} of the baseline."
        )
    return f"{head} {rule} Rejected: {rejected_text}."
