"""The rollout rule Chassis used before the statistical analysis (commit 9cd17a3), kept only
so the decision benchmark can judge the same recorded data both ways. Not used by Chassis.

A step waited for 100 candidate requests (30 s, two extensions), then compared: error rate
<= 1 %, p99 <= 50 ms, p99 <= 3x stable's p99 + 2 ms, and in the shadow step agreement
>= 0.9. The first failed comparison rolled back.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LegacyPolicy:
    min_requests: int = 100
    step_seconds: float = 30.0
    max_extensions: int = 2
    max_error_rate: float = 0.01
    p99_budget_ms: float = 50.0
    max_p99_ratio_vs_stable: float = 3.0
    p99_slack_ms: float = 2.0
    min_agreement: float = 0.9


def legacy_verdict(
    candidate_errors: int,
    candidate_requests: int,
    candidate_latencies_ms: np.ndarray,
    stable_latencies_ms: np.ndarray,
    agreement: float | None,
    policy: LegacyPolicy,
) -> tuple[str, str]:
    """("pass" | "fail" | "inconclusive", reason), as the old `analyze_step` decided."""
    if candidate_requests < policy.min_requests:
        return "inconclusive", "too few requests"
    error_rate = candidate_errors / candidate_requests
    p99 = float(np.percentile(candidate_latencies_ms, 99)) if candidate_latencies_ms.size else 0.0
    if error_rate > policy.max_error_rate:
        return "fail", "error rate"
    if p99 > policy.p99_budget_ms:
        return "fail", "p99 budget"
    if stable_latencies_ms.size:
        stable_p99 = float(np.percentile(stable_latencies_ms, 99))
        if p99 > stable_p99 * policy.max_p99_ratio_vs_stable + policy.p99_slack_ms:
            return "fail", "p99 vs stable"
    if agreement is not None and agreement < policy.min_agreement:
        return "fail", "agreement"
    return "pass", ""
