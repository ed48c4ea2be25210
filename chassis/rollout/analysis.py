"""Pure judgement of one rollout step from the counts of its window.

Every check compares the candidate with stable *in the same window*, so load that slows the
machine slows both and cancels out; each uses a confidence bound at the policy's `z`, so
one slow request, a GC pause or a small sample cannot decide a rollout:

- errors vs stable: Newcombe interval of the difference of error rates; fail when its
  lower bound exceeds the tolerated margin;
- errors, hard limit: fail when the Wilson lower bound exceeds `max_error_rate`;
- model latency vs stable: p50 and p90 of the CPU time per row of each model call, with
  distribution-free bounds; degraded when the candidate's lower bound exceeds
  `max_latency_ratio` x stable's upper bound + slack;
- latency budget: fail when the lower bound of the candidate's p99 model time per row (CPU
  time, as above) exceeds the budget. Not wall time: a request's wall time adds its wait in
  the queue, which is the fleet's capacity under the load of the moment (the rollout's own
  replay included), not the model's. Rolling back a model cannot shorten a queue, and a
  busy machine must not roll back a healthy model; queueing is watched by the latency alert
  and answered by autoscaling. The wall p99 is shown beside the judged figure;
- agreement with stable on mirrored requests: fail when its upper bound is below
  `min_agreement`. A classifier agrees on a row when the labels are equal; a regressor when
  the relative difference of the values is at most `value_agreement_tolerance`;
- a cascade's escalation share (rows its small tier sent to the full tier): fail when its
  Wilson lower bound exceeds the share on the validation split (recorded when the cascade
  was built) plus `max_escalation_share_increase`.

A step passes only with the samples that would have caught a candidate as bad as the
policy's detect_* settings; before that it is inconclusive.
"""

import math
from dataclasses import dataclass, field
from typing import Literal

from chassis.errors import RolloutPolicyError
from chassis.rollout.counts import VersionCounts
from chassis.rollout.policy import RolloutPolicy
from chassis.rollout.statistics import difference_bounds, quantile_bounds, wilson

__all__ = ["Check", "RolloutPolicy", "RolloutPolicyError", "StepAnalysis", "analyze_step"]

Verdict = Literal["pass", "degraded", "fail", "inconclusive", "paused"]
Outcome = Literal["ok", "fail", "degraded", "waiting"]
LATENCY_QUANTILES = (0.5, 0.9)


@dataclass(frozen=True)
class Check:
    name: str
    outcome: Outcome
    observed: str
    threshold: str

    @property
    def passed(self) -> bool:
        return self.outcome in ("ok", "waiting")


@dataclass(frozen=True)
class Estimate:
    """A figure the analysis judged, with the interval of its confidence bound."""

    value: float
    low: float
    high: float  # infinite while the sample is too small to bound it from above


@dataclass(frozen=True)
class StepFigures:
    """The numbers behind a step's checks, as the rollout's plot draws them: error ratios
    (Wilson intervals) and model CPU time per row in seconds (distribution-free quantile
    bounds) of candidate and stable, by quantile; the candidate's p99 as the budget check
    judges it. None where the window had nothing to estimate from."""

    candidate_errors: Estimate | None = None
    stable_errors: Estimate | None = None
    candidate_latency: tuple[tuple[float, Estimate], ...] = ()
    stable_latency: tuple[tuple[float, Estimate], ...] = ()
    candidate_p99: Estimate | None = None


@dataclass(frozen=True)
class StepAnalysis:
    step: str
    verdict: Verdict
    checks: tuple[Check, ...] = field(default_factory=tuple)
    reason: str = ""
    candidate_samples: int = 0
    samples_needed: int = 0
    # The candidate's share of live traffic in the step, percent (set by the runner, which
    # committed the split); None where unknown.
    share_percent: float | None = None
    figures: StepFigures = field(default_factory=StepFigures)

    def rows(self) -> list[dict[str, str]]:
        # The verdict before the long "observed" text: it is what a reader looks for, and a
        # wide table must not push it off-screen.
        return [
            {
                "step": self.step,
                "verdict": self.verdict,
                "check": c.name,
                "result": c.outcome,
                "threshold": c.threshold,
                "observed": c.observed,
            }
            for c in self.checks
        ] or [
            {
                "step": self.step,
                "verdict": self.verdict,
                "check": "-",
                "result": "-",
                "threshold": "-",
                "observed": self.reason,
            }
        ]


def _ms(seconds: float) -> str:
    return "unbounded" if math.isinf(seconds) else f"{seconds * 1000:.3f} ms"


def _error_checks(
    candidate: VersionCounts, stable: VersionCounts, policy: RolloutPolicy, z: float
) -> list[Check]:
    n, errors = candidate.executions, candidate.errors
    rate = errors / n if n else 0.0
    checks: list[Check] = []
    if stable.executions:
        lower, upper = difference_bounds(errors, n, stable.errors, stable.executions, z)
        stable_rate = stable.errors / stable.executions
        checks.append(
            Check(
                "error rate vs stable",
                "fail" if lower > policy.error_rate_margin else "ok",
                f"{rate:.4f} ({errors}/{n}) vs {stable_rate:.4f} "
                f"({stable.errors}/{stable.executions}); difference in "
                f"[{lower:+.4f}, {upper:+.4f}]",
                f"difference <= {policy.error_rate_margin:g}",
            )
        )
    lower, upper = wilson(errors, n, z)
    checks.append(
        Check(
            "error rate limit",
            "fail" if lower > policy.max_error_rate else "ok",
            f"{rate:.4f} ({errors}/{n}), in [{lower:.4f}, {upper:.4f}]",
            f"<= {policy.max_error_rate:g}",
        )
    )
    return checks


def _latency_checks(
    candidate: VersionCounts, stable: VersionCounts, policy: RolloutPolicy, z: float
) -> list[Check]:
    checks: list[Check] = []
    slack = policy.latency_slack_ms / 1000
    # Model cost per row (CPU time of each call), not wall time: the version answering live
    # and the one running mirrored copies wait differently on the loop, the GIL and other
    # processes, and neither wait says anything about the model.
    if any(stable.cpu_buckets) and any(candidate.cpu_buckets):
        for q in LATENCY_QUANTILES:
            c_low, c_mid, c_high = quantile_bounds(candidate.bounds, candidate.cpu_buckets, q, z)
            s_low, s_mid, s_high = quantile_bounds(stable.bounds, stable.cpu_buckets, q, z)
            limit = policy.max_latency_ratio * s_high + slack
            checks.append(
                Check(
                    f"p{q * 100:g} model latency vs stable",
                    "degraded" if c_low > limit else "ok",
                    f"{_ms(c_mid)} in [{_ms(c_low)}, {_ms(c_high)}] vs {_ms(s_mid)} in "
                    f"[{_ms(s_low)}, {_ms(s_high)}]",
                    f"<= {policy.max_latency_ratio:g}x + {policy.latency_slack_ms:g} ms",
                )
            )
    if candidate.answered:
        checks.append(_budget_check(candidate, policy, z))
    return checks


def _budget_p99(candidate: VersionCounts, z: float) -> tuple[float, float, float]:
    """The p99 the budget is judged on: model CPU time per row; wall time from a gateway
    that reports no model CPU time (none today)."""
    judged = candidate.cpu_buckets if any(candidate.cpu_buckets) else candidate.buckets
    return quantile_bounds(candidate.bounds, judged, 0.99, z)


def _budget_check(candidate: VersionCounts, policy: RolloutPolicy, z: float) -> Check:
    wall = quantile_bounds(candidate.bounds, candidate.buckets, 0.99, z)[1]
    judged_cpu = any(candidate.cpu_buckets)
    low, mid, high = _budget_p99(candidate, z)
    observed = f"{_ms(mid)} in [{_ms(low)}, {_ms(high)}]"
    if judged_cpu:
        observed = f"model {observed} per row; requests {_ms(wall)} incl. queueing"
    else:
        observed = f"requests {observed} (wall)"
    return Check(
        "p99 latency budget",
        "fail" if low > policy.p99_budget_ms / 1000 else "ok",
        observed,
        f"<= {policy.p99_budget_ms:g} ms",
    )


def _agreement_check(candidate: VersionCounts, policy: RolloutPolicy, z: float) -> Check:
    agreed, compared = candidate.agreement(policy.value_agreement_tolerance)
    lower, upper = wilson(agreed, compared, z)
    share = agreed / compared if compared else math.nan
    within = (
        f" within relative difference {policy.value_agreement_tolerance:g}"
        if any(candidate.difference_buckets)
        else ""
    )
    return Check(
        "agreement with stable",
        "fail" if compared and upper < policy.min_agreement else "ok",
        f"{share:.4f} over {compared} mirrored rows, in [{lower:.4f}, {upper:.4f}]",
        f">= {policy.min_agreement:g}{within}",
    )


def _escalation_check(
    candidate: VersionCounts, policy: RolloutPolicy, z: float, validation_share: float
) -> Check:
    rows, escalated = candidate.small_rows + candidate.full_rows, candidate.full_rows
    lower, upper = wilson(escalated, rows, z)
    limit = min(1.0, validation_share + policy.max_escalation_share_increase)
    share = escalated / rows if rows else math.nan
    return Check(
        "cascade escalation share",
        "fail" if rows and lower > limit else ("ok" if rows else "waiting"),
        f"{share:.4f} ({escalated}/{rows} rows), in [{lower:.4f}, {upper:.4f}]",
        f"<= {limit:.4f} (validation {validation_share:.4f} + "
        f"{policy.max_escalation_share_increase:g})",
    )


def analyze_step(
    step: str,
    candidate: VersionCounts,
    stable: VersionCounts,
    policy: RolloutPolicy,
    *,
    compare: bool = True,
    escalation_share: float | None = None,
) -> StepAnalysis:
    """Judge one window. `candidate` and `stable` are the counts of this step's window only
    (summed over replicas); `compare` says whether mirrored comparisons are expected;
    `escalation_share`: a cascade candidate's validation escalation share (None: not one)."""
    z = policy.z
    needed = policy.required_samples
    checks = _error_checks(candidate, stable, policy, z) + _latency_checks(
        candidate, stable, policy, z
    )
    if compare:
        checks.append(_agreement_check(candidate, policy, z))
    if escalation_share is not None:
        checks.append(_escalation_check(candidate, policy, z, escalation_share))
    samples = min(candidate.executions, candidate.compared) if compare else candidate.executions
    failed = [c for c in checks if c.outcome == "fail"]
    degraded = [c for c in checks if c.outcome == "degraded"]
    verdict: Verdict
    if failed:
        verdict, reason = "fail", _explain(failed)
    elif degraded:
        verdict, reason = "degraded", _explain(degraded)
    elif samples < needed:
        verdict = "inconclusive"
        reason = f"{samples} candidate samples, {needed} needed for a verdict"
    else:
        verdict, reason = "pass", f"all checks passed over {samples} candidate samples"
    figures = step_figures(candidate, stable, z)
    return StepAnalysis(step, verdict, tuple(checks), reason, samples, needed, figures=figures)


def step_figures(candidate: VersionCounts, stable: VersionCounts, z: float) -> StepFigures:
    """The estimates the checks judged, as numbers (`StepFigures`)."""

    def errors(counts: VersionCounts) -> Estimate | None:
        if not counts.executions:
            return None
        low, high = wilson(counts.errors, counts.executions, z)
        return Estimate(counts.errors / counts.executions, low, high)

    def latency(counts: VersionCounts) -> tuple[tuple[float, Estimate], ...]:
        if not any(counts.cpu_buckets):
            return ()
        return tuple(
            (q, _estimate(quantile_bounds(counts.bounds, counts.cpu_buckets, q, z)))
            for q in LATENCY_QUANTILES
        )

    p99 = _estimate(_budget_p99(candidate, z)) if candidate.answered else None
    return StepFigures(errors(candidate), errors(stable), latency(candidate), latency(stable), p99)


def _estimate(bounds: tuple[float, float, float]) -> Estimate:
    low, value, high = bounds
    return Estimate(value, low, high)


def _explain(checks: list[Check]) -> str:
    return "; ".join(f"{c.name} {c.observed} (needs {c.threshold})" for c in checks)
