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
    assert "2 window(s) (20 s)" in paused.reason and "chassis traffic" in paused.reason


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


def test_replayed_traffic_stretches_the_windows_to_its_pace_without_more_looks():
    policy = RolloutPolicy(step_seconds=10, max_extensions=2, max_replay_step_seconds=600)
    needed = policy.required_samples
    judge = WindowJudge("shadow", policy, compare=True, paced=True)
    # A heavy model on a busy machine: a tenth of the samples in the first 10 s window.
    assert judge.observe(healthy(needed // 10), healthy(needed), 10.0) is None
    # The 90 % missing need ~90 s at that pace: two windows of ~56 s (a quarter more),
    # not the 20 s that would pause it.
    assert 50 < judge.window_seconds < 60, judge.window_seconds
    assert judge.observe(healthy(needed // 2), healthy(needed), 30.0) is None
    analysis = judge.observe(healthy(needed), healthy(2 * needed), 95.0)
    assert analysis is not None and analysis.verdict == "pass"
    assert judge.looks <= policy.looks_per_step


def test_replayed_traffic_stretches_no_further_than_its_limit():
    policy = RolloutPolicy(step_seconds=10, max_extensions=1, max_replay_step_seconds=60)
    judge = WindowJudge("shadow", policy, compare=True, paced=True)
    assert judge.observe(healthy(5), healthy(100), 10.0) is None  # far too slow
    assert judge.window_seconds == 50  # the step ends at 60 s
    paused = judge.observe(healthy(30), healthy(100), 60.0)
    assert paused is not None and paused.verdict == "paused"
    assert "max_replay_step_seconds" in paused.reason


def test_live_traffic_keeps_its_windows_when_slow():
    judge = WindowJudge("canary 10%", POLICY, compare=True)
    assert judge.observe(healthy(5), healthy(100), 10.0) is None
    assert judge.window_seconds == POLICY.step_seconds
    paused = judge.observe(healthy(10), healthy(100), 20.0)
    assert paused is not None and paused.verdict == "paused"


def test_errors_fail_at_an_early_look():
    judge = WindowJudge("canary 10%", POLICY, compare=True)
    early = POLICY.required_samples // 8
    failing = VersionCounts(early, early, early, early, BOUNDS, (0, 0, 0), (0, 0, 0))
    analysis = judge.observe(failing, healthy(10 * early), 0.5)
    assert analysis is not None and analysis.verdict == "fail"
