"""The step analysis on simulated windows: healthy candidates pass (at no more than the
false-alarm budget), bad ones fail or degrade, small samples stay inconclusive."""

import bisect
import math
import random

import pytest

from chassis.errors import RolloutPolicyError
from chassis.rollout.analysis import analyze_step
from chassis.rollout.counts import VersionCounts
from chassis.rollout.policy import RolloutPolicy, policy_from
from chassis.serving.metrics import LATENCY_BUCKETS

POLICY = RolloutPolicy()


def counts(
    rng: random.Random,
    n: int,
    *,
    error_rate: float = 0.0,
    median_s: float = 5e-5,
    spread: float = 0.4,
    agreement: float | None = None,
    outliers: tuple[float, ...] = (),
    queued_s: float = 0.0,
) -> VersionCounts:
    """`queued_s`: mean wait in the queue (exponential) added to each request's wall time,
    not to the model's CPU time."""
    buckets = [0] * (len(LATENCY_BUCKETS) + 1)
    cpu_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
    errors = 0
    for _ in range(n):
        if rng.random() < error_rate:
            errors += 1
            continue
        latency = median_s * math.exp(rng.gauss(0, spread))
        cpu_buckets[bisect.bisect_left(LATENCY_BUCKETS, latency)] += 1
        wait = rng.expovariate(1 / queued_s) if queued_s else 0.0
        buckets[bisect.bisect_left(LATENCY_BUCKETS, latency + wait)] += 1
    for latency in outliers:
        buckets[bisect.bisect_left(LATENCY_BUCKETS, latency)] += 1
        cpu_buckets[bisect.bisect_left(LATENCY_BUCKETS, latency)] += 1
    compared = n if agreement is not None else 0
    agreed = sum(rng.random() < agreement for _ in range(n)) if agreement is not None else 0
    return VersionCounts(
        executions=n + len(outliers),
        errors=errors,
        compared=compared,
        agreed=agreed,
        bounds=LATENCY_BUCKETS,
        buckets=tuple(buckets),
        cpu_buckets=tuple(cpu_buckets),  # one row per call
    )


def judge(candidate: VersionCounts, stable: VersionCounts, policy: RolloutPolicy = POLICY):
    return analyze_step("canary 10%", candidate, stable, policy, compare=candidate.compared > 0)


def test_a_healthy_candidate_passes_once_it_has_the_samples_it_needs():
    rng = random.Random(1)
    needed = POLICY.required_samples
    stable = counts(rng, 4 * needed)
    early = judge(counts(rng, needed // 4, agreement=1.0), stable)
    assert early.verdict == "inconclusive"
    assert f"{needed} needed" in early.reason
    assert judge(counts(rng, needed, agreement=1.0), stable).verdict == "pass"


def test_one_slow_request_among_a_hundred_does_not_roll_back_a_healthy_candidate():
    # What rolled back make release on a busy machine: the p99 of 100 samples is their
    # maximum, and one 4.9 ms request made the candidate "3x slower" than stable.
    rng = random.Random(2)
    stable = counts(rng, 900, median_s=1.8e-5)
    candidate = counts(rng, 99, median_s=1.8e-5, agreement=1.0, outliers=(4.91e-3,))
    analysis = judge(candidate, stable)
    assert analysis.verdict == "inconclusive", analysis.reason


def test_false_alarms_of_a_candidate_equal_to_stable_stay_within_the_budget():
    rng = random.Random(3)
    needed, alarms, trials = POLICY.required_samples, 0, 400
    for _ in range(trials):
        stable = counts(rng, 3 * needed, error_rate=0.002)
        candidate = counts(rng, needed, error_rate=0.002, agreement=0.99)
        alarms += judge(candidate, stable).verdict in ("fail", "degraded")
    assert alarms / trials <= POLICY.false_alarm_rate


@pytest.mark.parametrize(
    ("bad", "verdict", "check"),
    [
        ({"error_rate": 0.05 + 0.002}, "fail", "error rate"),
        ({"median_s": 1e-4}, "degraded", "latency vs stable"),
        ({"agreement": 0.9}, "fail", "agreement with stable"),
    ],
    ids=["errors +5pp", "latency 2x", "agreement 0.9"],
)
def test_a_bad_candidate_is_caught_in_one_step_at_least_as_often_as_the_power(bad, verdict, check):
    rng = random.Random(4)
    needed, caught, trials = POLICY.required_samples, 0, 200
    for _ in range(trials):
        stable = counts(rng, 3 * needed, error_rate=0.002)
        settings = {"error_rate": 0.002, "agreement": 0.99, "median_s": 5e-5, **bad}
        analysis = judge(counts(rng, needed, **settings), stable)
        if analysis.verdict == verdict:
            assert any(check in c.name and not c.passed for c in analysis.checks)
            caught += 1
    assert caught / trials >= POLICY.power


def test_a_candidate_surely_over_the_hard_latency_budget_fails():
    rng = random.Random(5)
    stable = counts(rng, 2000, median_s=0.04)
    analysis = judge(counts(rng, 2000, median_s=0.08, agreement=1.0), stable)
    assert analysis.verdict == "fail"
    assert "p99 latency budget" in analysis.reason


def test_queueing_on_a_busy_machine_does_not_fail_a_model_within_its_budget():
    # A 20 ms model on a saturated machine: requests wait ~300 ms in the queue, both
    # versions alike. The model costs what it costs; the wait is load.
    rng = random.Random(7)
    stable = counts(rng, 2000, median_s=0.02, spread=0.1, queued_s=0.3)
    candidate = counts(rng, 2000, median_s=0.02, spread=0.1, queued_s=0.3, agreement=1.0)
    analysis = judge(candidate, stable)
    budget = next(c for c in analysis.checks if c.name == "p99 latency budget")
    assert budget.outcome == "ok", budget.observed
    assert "incl. queueing" in budget.observed
    assert analysis.verdict == "pass"


def test_a_model_over_budget_fails_even_when_nothing_waits_in_the_queue():
    rng = random.Random(8)
    stable = counts(rng, 2000, median_s=0.04, spread=0.1)
    analysis = judge(counts(rng, 2000, median_s=0.07, spread=0.1, agreement=1.0), stable)
    assert analysis.verdict == "fail"
    assert "p99 latency budget" in analysis.reason


def test_gross_failure_is_caught_after_a_handful_of_requests():
    rng = random.Random(6)
    stable = counts(rng, 500)
    analysis = judge(counts(rng, 40, error_rate=1.0, agreement=1.0), stable)
    assert analysis.verdict == "fail"
    assert "error rate" in analysis.reason


def test_policy_errors_name_the_field():
    with pytest.raises(RolloutPolicyError, match="steps must increase and end at 100"):
        policy_from({"steps": [10, 50]})
    with pytest.raises(RolloutPolicyError, match="min_agreement"):
        policy_from({"min_agreement": 1.5})
    with pytest.raises(RolloutPolicyError, match="unknown_field"):
        policy_from({"unknown_field": 1})
    with pytest.raises(RolloutPolicyError, match="min_percent"):
        policy_from({"steps": [2, 100], "min_percent": 5})


def test_required_samples_follow_the_effect_to_detect():
    coarse = RolloutPolicy(detect_error_increase=0.2, detect_agreement_drop=0.2)
    assert coarse.required_samples < POLICY.required_samples
    assert RolloutPolicy(min_requests=5000).required_samples == 5000
