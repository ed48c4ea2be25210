"""The window judge: looks at its points, waits through windows, pauses without traffic."""

import re

from chassis.rollout.counts import VersionCounts
from chassis.rollout.policy import RolloutPolicy
from chassis.rollout.window import WindowJudge

POLICY = RolloutPolicy(step_seconds=10, max_extensions=1)
BOUNDS = (0.001, 0.01)


def healthy(n: int) -> VersionCounts:
    return VersionCounts(n, 0, n, n, BOUNDS, (n, 0, 0), (n, 0, 0))


def test_a_healthy_step_passes_at_the_last_look_point_not_before():
    judge = WindowJudge("canary 10%", POLICY, compare=True)
    needed = POLICY.required_samples
    assert judge.observe(healthy(needed - 1), healthy(5 * needed), 1.0) is None
    analysis = judge.observe(healthy(needed), healthy(5 * needed), 1.5)
    assert analysis is not None and analysis.verdict == "pass"
    assert judge.looks == 2  # 1/8, 1/4 and 1/2 passed together: one look; then all


def test_between_look_points_nothing_is_judged():
    judge = WindowJudge("canary 10%", POLICY, compare=True)
    assert judge.observe(healthy(1), healthy(10), 1.0) is None
    assert judge.looks == 0


def test_no_traffic_pauses_after_every_window_and_names_what_to_do():
    judge = WindowJudge("canary 10%", POLICY, compare=True)
    assert judge.observe(VersionCounts(), VersionCounts(), 10.0) is None  # window 1 ends
    assert judge.window_index == 1
    paused = judge.observe(VersionCounts(), VersionCounts(), 20.0)
    assert paused is not None and paused.verdict == "paused"
    assert "2 window(s) of 10 s" in paused.reason and "chassis traffic" in paused.reason


def test_slow_traffic_pauses_saying_what_step_length_its_pace_needs():
    judge = WindowJudge("canary 10%", POLICY, compare=True)
    needed = POLICY.required_samples
    quarter = needed // 4  # a quarter of the samples in two windows of 10 s
    assert judge.observe(healthy(quarter // 2), healthy(10 * quarter), 10.0) is None
    paused = judge.observe(healthy(quarter), healthy(10 * quarter), 20.0)
    assert paused is not None and paused.verdict == "paused"
    # All of them at this pace: ~80 s, so two windows of ~40 s (rounded up to tens).
    suggested = re.search(r"2 window\(s\) of about (\d+) s would collect them", paused.reason)
    assert suggested is not None, paused.reason
    assert 40 <= int(suggested.group(1)) <= 50


def test_errors_fail_at_an_early_look():
    judge = WindowJudge("canary 10%", POLICY, compare=True)
    early = POLICY.required_samples // 8
    failing = VersionCounts(early, early, early, early, BOUNDS, (0, 0, 0), (0, 0, 0))
    analysis = judge.observe(failing, healthy(10 * early), 0.5)
    assert analysis is not None and analysis.verdict == "fail"
