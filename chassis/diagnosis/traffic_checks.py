"""The model-performance branch: each served version's server-error ratio, p99 latency
and shadow agreement over the observation window, judged with confidence bounds so a few
unlucky requests, or a machine busy with other work, do not fail a healthy model.

The window is looked at every second, and the watch ends as soon as a version is surely
failing: a champion raising on half its requests is known after a few dozen of them, and
each second watched is a second its users get errors. Looking often must not make a
healthy version fail more often, so the policy's `alpha` is split (Bonferroni): half over
the early looks, alpha / 2 / looks each, and half for the judgement at the window's end.
Only a failing verdict ends the watch early; healthy needs the whole window.
"""

import math

from chassis.diagnosis.findings import Finding
from chassis.diagnosis.policy import DiagnosisPolicy
from chassis.rollout.counts import ModelCounts
from chassis.rollout.statistics import quantile_bounds, wilson, z_for

# How often the window is looked at.
LOOK_SECONDS = 1.0


def early_looks(policy: DiagnosisPolicy) -> int:
    """Looks before the window's end (none in a window of one look)."""
    return max(0, math.ceil(policy.observe_seconds / LOOK_SECONDS) - 1)


def early_alpha(policy: DiagnosisPolicy) -> float:
    """The false-failure chance each early look may spend."""
    return policy.alpha / 2 / max(1, early_looks(policy))


def final_alpha(policy: DiagnosisPolicy) -> float:
    return policy.alpha / 2 if early_looks(policy) else policy.alpha


def surely_failing(counts: ModelCounts, policy: DiagnosisPolicy) -> bool:
    """Whether an early look may end the watch: a version fails at the early looks' alpha."""
    return any(f.failing for f in traffic_findings(counts, policy, early_alpha(policy)))


def traffic_findings(
    counts: ModelCounts, policy: DiagnosisPolicy, alpha: float | None = None
) -> list[Finding]:
    """The findings at `alpha` (default: the policy's, for one look at the whole window)."""
    z = z_for(policy.alpha if alpha is None else alpha)
    findings: list[Finding] = []
    if not any(c.executions for c in counts.values()):
        return [
            Finding("traffic", "not judged", "no request in the window", "requests to judge by")
        ]
    for version, seen in sorted(counts.items()):
        if seen.executions < policy.min_requests:
            findings.append(
                Finding(
                    f"v{version} traffic",
                    "not judged",
                    f"{seen.executions} requests in the window",
                    f">= {policy.min_requests} requests to judge",
                )
            )
            continue
        low, _ = wilson(seen.errors, seen.executions, z)
        ratio = seen.errors / seen.executions
        findings.append(
            Finding(
                f"v{version} server-error ratio",
                "failing" if low > policy.error_ratio_max else "healthy",
                f"{ratio:.1%} of {seen.executions} (lower bound {low:.1%})",
                f"<= {policy.error_ratio_max:.0%}",
                version,
            )
        )
        if seen.answered:
            lower, estimate, _ = quantile_bounds(seen.bounds, seen.buckets, 0.99, z)
            findings.append(
                Finding(
                    f"v{version} p99 latency",
                    "failing" if lower * 1000 > policy.latency_p99_ms_max else "healthy",
                    f"{estimate * 1000:.1f} ms (lower bound {lower * 1000:.1f} ms)",
                    f"<= {policy.latency_p99_ms_max:g} ms",
                    version,
                )
            )
        # A classifier's equal labels; a regressor's answers within the tolerance.
        agreed, compared = seen.agreement(policy.value_agreement_tolerance)
        if compared >= policy.min_requests:
            _, high = wilson(agreed, compared, z)
            findings.append(
                Finding(
                    f"v{version} shadow agreement",
                    "failing" if high < policy.agreement_min else "healthy",
                    f"{agreed / compared:.1%} of {compared} compared (upper bound {high:.1%})",
                    f">= {policy.agreement_min:.0%}",
                    version,
                )
            )
    return findings
