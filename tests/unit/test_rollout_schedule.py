"""Step schedule (grow on health, halve on degradation) and counters read from /metrics."""

import pytest

from chassis.errors import CountsError
from chassis.rollout.counts import VersionCounts, add_models, from_exposition
from chassis.rollout.policy import RolloutPolicy
from chassis.rollout.schedule import look_points, next_share
from chassis.serving.metrics import GatewayMetrics


def test_listed_steps_are_followed_on_health():
    policy = RolloutPolicy(steps=[10, 25, 50, 100])
    assert next_share(policy, 10, "pass", 1).percent == 25
    assert next_share(policy, 50, "pass", 3).percent == 100
    assert next_share(policy, 100, "pass", 4).done


def test_growth_factor_grows_by_half_and_caps_at_100():
    policy = RolloutPolicy(steps=[10, 100], growth_factor=1.5)
    shares, percent, taken = [], 10.0, 1
    while percent is not None:
        shares.append(percent)
        step = next_share(policy, percent, "pass", taken)
        percent, taken = step.percent, taken + 1
    assert shares == [10, 15, 22.5, 33.75, 50.625, 75.9375, 100]


def test_degraded_halves_and_rolls_back_below_the_minimum_share():
    policy = RolloutPolicy(steps=[20, 100], min_percent=5)
    assert next_share(policy, 20, "degraded", 1).percent == 10
    assert next_share(policy, 10, "degraded", 2).percent == 5
    final = next_share(policy, 5, "degraded", 3)
    assert final.done and final.rollback
    assert "minimum share 5" in final.reason


def test_the_number_of_steps_is_bounded():
    policy = RolloutPolicy(steps=[10, 100], max_steps=3)
    step = next_share(policy, 10, "pass", 3)
    assert step.rollback and "allows 3" in step.reason


def test_look_points_are_early_fractions_and_the_full_sample():
    assert look_points(800) == [100, 200, 400, 800]


def test_counters_read_back_from_the_gateways_own_exposition():
    metrics = GatewayMetrics()
    for _ in range(3):
        metrics.observe("m", "1", "stable", 0.0001, [1])
    metrics.observe("m", "2", "candidate", 0.0002, [0])
    metrics.observe("m", "2", "shadow", 0.0002, [0])
    metrics.count_error("m", "2", "500")
    metrics.count_shadow("m", "2", agreed=3, compared=4)
    metrics.observe("other", "2", "stable", 0.1, [0])
    read = from_exposition(metrics.render().decode(), "m")
    assert set(read) == {1, 2}
    assert read[1].executions == 3 and read[1].answered == 3
    assert (read[2].executions, read[2].errors) == (3, 1)
    assert (read[2].compared, read[2].agreed) == (4, 3)
    assert sum(read[2].buckets) == 1  # the live answer; the mirrored run is not timed


def test_windows_subtract_and_replicas_add():
    bounds = (0.001, 0.01)
    start = VersionCounts(10, 1, 5, 5, bounds, (8, 1, 0))
    now = VersionCounts(30, 2, 15, 14, bounds, (20, 7, 1))
    window = now.since(start)
    assert (window.executions, window.errors, window.buckets) == (20, 1, (12, 6, 1))
    # A replica that restarted has smaller counters than at the start: its reading is its window.
    assert start.since(now) == start
    total = add_models([{1: window}, {1: window}])
    assert total[1].executions == 40
    with pytest.raises(CountsError, match="different buckets"):
        _ = window + VersionCounts(1, 0, 0, 0, (0.5,), (1, 0))
