"""The rollout analysis watches a cascade candidate's escalation share, read from the
gateway's chassis_cascade_rows_total counters."""

import dataclasses
import random

from chassis.rollout.analysis import analyze_step
from chassis.rollout.counts import VersionCounts, from_exposition, window
from chassis.rollout.policy import RolloutPolicy
from tests.unit.test_rollout_analysis import counts

POLICY = RolloutPolicy()

EXPOSITION = """# TYPE chassis_cascade_rows counter
chassis_cascade_rows_total{model="m",version="3",tier="small"} 70.0
chassis_cascade_rows_total{model="m",version="3",tier="full"} 30.0
chassis_cascade_rows_total{model="other",version="3",tier="full"} 999.0
"""


def test_tier_rows_are_read_per_version_and_windowed() -> None:
    read = from_exposition(EXPOSITION, "m")
    assert (read[3].small_rows, read[3].full_rows) == (70, 30)
    later = {3: dataclasses.replace(read[3], small_rows=90, full_rows=40)}
    step = window(later, read)[3]
    assert (step.small_rows, step.full_rows) == (20, 10)


def with_tiers(small: int, full: int) -> VersionCounts:
    rng = random.Random(4)
    base = counts(rng, POLICY.required_samples, agreement=1.0)
    return dataclasses.replace(base, small_rows=small, full_rows=full)


def check_of(analysis, name: str):
    return next(c for c in analysis.checks if c.name == name)


def test_a_cascade_escalating_far_more_than_on_validation_fails() -> None:
    stable = counts(random.Random(5), 4 * POLICY.required_samples)
    # Validation escalated 20 %; live 60 % of 2000 rows: surely above 20 % + 10 points.
    failed = analyze_step("canary 10%", with_tiers(800, 1200), stable, POLICY, escalation_share=0.2)
    assert failed.verdict == "fail"
    assert check_of(failed, "cascade escalation share").outcome == "fail"
    # Live 25 %: within the tolerance, the step passes.
    passed = analyze_step("canary 10%", with_tiers(1500, 500), stable, POLICY, escalation_share=0.2)
    assert passed.verdict == "pass", passed.reason
    # Not a cascade: no such check.
    plain = analyze_step("canary 10%", with_tiers(800, 1200), stable, POLICY)
    assert all(c.name != "cascade escalation share" for c in plain.checks)


def test_the_tolerance_is_a_policy_field() -> None:
    stable = counts(random.Random(5), 4 * POLICY.required_samples)
    loose = RolloutPolicy(max_escalation_share_increase=0.5)
    analysis = analyze_step(
        "canary 10%", with_tiers(800, 1200), stable, loose, escalation_share=0.2
    )
    assert check_of(analysis, "cascade escalation share").outcome == "ok"
