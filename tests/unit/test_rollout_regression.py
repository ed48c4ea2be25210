"""A regressor's rollout agreement: the gateway counts each mirrored row's relative
difference; the analysis counts as agreeing the rows within the policy's tolerance."""

import bisect
import random

import numpy as np
import pytest

from chassis.rollout.analysis import analyze_step
from chassis.rollout.counts import VersionCounts, from_exposition
from chassis.rollout.policy import RolloutPolicy
from chassis.serving.gateway import relative_differences
from chassis.serving.metrics import DIFFERENCE_BUCKETS, LATENCY_BUCKETS, GatewayMetrics

POLICY = RolloutPolicy()


def regressor_counts(rng: random.Random, n: int, differences: list[float]) -> VersionCounts:
    latency = [0] * (len(LATENCY_BUCKETS) + 1)
    for _ in range(n):
        latency[bisect.bisect_left(LATENCY_BUCKETS, 5e-5 * rng.uniform(0.9, 1.1))] += 1
    buckets = [0] * (len(DIFFERENCE_BUCKETS) + 1)
    for value in differences:
        buckets[bisect.bisect_left(DIFFERENCE_BUCKETS, value)] += 1
    return VersionCounts(
        executions=n,
        compared=len(differences),
        bounds=LATENCY_BUCKETS,
        buckets=tuple(latency),
        cpu_buckets=tuple(latency),
        difference_bounds=DIFFERENCE_BUCKETS,
        difference_buckets=tuple(buckets),
    )


def test_relative_differences_are_taken_against_the_reference():
    values = np.array([110.0, 90.0, 0.0, 5.0], dtype=np.float32)
    reference = np.array([100.0, 100.0, 0.0, 0.0], dtype=np.float32)
    relative = relative_differences(values, reference)
    assert relative[:3].tolist() == pytest.approx([0.1, 0.1, 0.0])
    assert relative[3] > 1e6  # any difference from a zero reference is large


def test_agreement_counts_the_rows_within_the_tolerance_never_more():
    rng = random.Random(0)
    counts = regressor_counts(rng, 100, [0.0] * 50 + [0.05] * 30 + [0.2] * 20)
    assert counts.agreement(0.1) == (80, 100)
    assert counts.agreement(0.01) == (50, 100)
    assert counts.agreement(1.0) == (100, 100)
    # A row exactly at the tolerance may fall in the bucket above it: counted as disagreeing.
    assert counts.agreement(0.05)[0] <= 80


def test_a_regressor_within_the_tolerance_passes_and_one_beyond_it_fails():
    rng = random.Random(1)
    needed = POLICY.required_samples
    stable = regressor_counts(rng, 4 * needed, [])
    close = [abs(rng.gauss(0, 0.01)) for _ in range(needed * 2)]
    far = [abs(rng.gauss(0.4, 0.05)) for _ in range(needed * 2)]
    passed = analyze_step("canary", regressor_counts(rng, 2 * needed, close), stable, POLICY)
    failed = analyze_step("canary", regressor_counts(rng, 2 * needed, far), stable, POLICY)
    assert passed.verdict == "pass", passed.reason
    assert failed.verdict == "fail"
    check = next(c for c in failed.checks if c.name == "agreement with stable")
    assert check.threshold == ">= 0.95 within relative difference 0.2"
    # A looser tolerance lets the same differences agree.
    loose = RolloutPolicy(value_agreement_tolerance=1.0)
    assert (
        analyze_step("canary", regressor_counts(rng, 2 * needed, far), stable, loose).verdict
        == "pass"
    )


def test_the_gateway_exposition_carries_differences_and_values_that_sum_over_replicas():
    def replica(relative: list[float]) -> str:
        metrics = GatewayMetrics()
        tally = metrics.tally("m", "2", "candidate")
        tally.record_values(0.001, [150.0, 250.0])
        metrics.count_differences("m", "2", relative)
        return metrics.render().decode()

    first, second = replica([0.0, 0.02, 0.5]), replica([0.01])
    assert 'chassis_predicted_value_sum{model="m",version="2"} 400.0' in first
    assert 'chassis_predicted_value_count{model="m",version="2"} 2.0' in first
    total = from_exposition(first, "m")[2] + from_exposition(second, "m")[2]
    assert total.compared == 4
    assert total.agreement(0.1) == (3, 4)
    assert total.since(from_exposition(first, "m")[2]).agreement(0.1) == (1, 1)
