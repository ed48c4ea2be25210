"""The rollout's control flow driven with fakes: every way a rollout ends, no servers."""

import logging

import pytest

from chassis.aliases import RetiredChallenger
from chassis.errors import ChassisError
from chassis.rollout.analysis import StepAnalysis, Verdict
from chassis.rollout.counts import ModelCounts, VersionCounts
from chassis.rollout.fleet import FleetError
from chassis.rollout.lease import LeaseLost
from chassis.rollout.policy import RolloutPolicy
from chassis.rollout.record import RolloutRecord
from chassis.rollout.runner import (
    Candidate,
    Decision,
    RolloutAborted,
    RolloutFailed,
    RolloutPaused,
    Strategy,
    check_candidate,
    conclude,
    decision_markdown,
    run_steps,
    watch_window,
)

LOG = logging.getLogger("test.rollout.runner")
POLICY = RolloutPolicy(steps=[50, 100], min_percent=30, lease_seconds=1)


def candidate(strategy: Strategy = "canary", policy: RolloutPolicy = POLICY) -> Candidate:
    return Candidate("m", 2, 1, strategy, policy, "tester")


class FakeFleet:
    """Records every split and every return to the champion."""

    def __init__(self, lag: str | None = None, rollback_error: Exception | None = None) -> None:
        self.model = "m"
        self.owner = "run-1"
        self.lease_seconds = 0.0  # with_backoff: one attempt, no sleeping
        self.held: RolloutRecord | None = None
        self.committed: list[RolloutRecord] = []
        self.returned: list[int | None] = []  # the warm version of each return
        self.lag = lag
        self.rollback_error = rollback_error
        self.renewals = 0

    def commit(self, split: RolloutRecord, actor: str) -> RolloutRecord:
        self.committed.append(split)
        self.held = split
        return split

    def back_to_champion(
        self, actor: str, warm_version: int | None = None, retry_seconds: float = 0.0
    ) -> str | None:
        if self.rollback_error is not None:
            raise self.rollback_error
        self.returned.append(warm_version)
        self.held = None
        return self.lag

    def keep_lease(self) -> None:
        self.renewals += 1

    def read(self) -> list[ModelCounts]:
        return [{}]

    def window(self, now: list[ModelCounts], start: list[ModelCounts]) -> ModelCounts:
        return {}


class ScriptedSteps:
    """Each step commits its split on the fleet and answers the next scripted verdict
    (an exception is raised instead)."""

    def __init__(self, fleet: FakeFleet, *verdicts: Verdict | BaseException) -> None:
        self.fleet = fleet
        self.verdicts = list(verdicts)
        self.labels: list[str] = []
        self.compared: list[bool] = []

    def __call__(self, split: RolloutRecord, label: str, compare: bool) -> StepAnalysis:
        self.fleet.commit(split, "tester")
        self.labels.append(label)
        self.compared.append(compare)
        verdict = self.verdicts.pop(0)
        if isinstance(verdict, BaseException):
            raise verdict
        return StepAnalysis(label, verdict, reason=f"{label} was {verdict}")


class Calls:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.error = error

    def __call__(self, *args: object) -> None:
        self.calls.append(args)
        if self.error is not None:
            raise self.error


def run(
    fleet: FakeFleet,
    steps: ScriptedSteps,
    strategy: Strategy = "canary",
    promote: Calls | None = None,
    retire: Calls | None = None,
) -> tuple[Decision, Calls, Calls]:
    promote, retire = promote or Calls(), retire or Calls()
    decision = run_steps(fleet, candidate(strategy), steps, promote, retire, LOG)
    return decision, promote, retire


def test_a_healthy_canary_runs_shadow_then_every_share_and_promotes():
    fleet = FakeFleet()
    steps = ScriptedSteps(fleet, "pass", "pass", "pass")
    decision, promote, retire = run(fleet, steps)
    assert steps.labels == ["shadow", "canary 50%", "canary 100%"]
    assert [(s.mode, s.percent) for s in fleet.committed] == [
        ("shadow", 0.0),
        ("canary", 50.0),
        ("canary", 100.0),
    ]
    assert all(s.candidate_version == 2 and s.stable_version == 1 for s in fleet.committed)
    assert decision.outcome == "promoted"
    assert promote.calls == [("canary rollout passed 3 step(s)",)]
    assert fleet.returned == [None]  # canary: no warm color
    assert retire.calls == []


def test_a_degraded_share_is_halved_then_grows_again():
    fleet = FakeFleet()
    policy = RolloutPolicy(steps=[50, 100], min_percent=20, lease_seconds=1)
    steps = ScriptedSteps(fleet, "pass", "degraded", "pass", "pass", "pass")
    decision = run_steps(fleet, candidate(policy=policy), steps, Calls(), Calls(), LOG)
    assert steps.labels == ["shadow", "canary 50%", "canary 25%", "canary 50%", "canary 100%"]
    assert decision.outcome == "promoted"


def test_degraded_where_half_is_below_the_minimum_share_rolls_back():
    fleet = FakeFleet()
    steps = ScriptedSteps(fleet, "pass", "degraded")
    decision, promote, _ = run(fleet, steps)
    assert decision.outcome == "rolled back"
    assert decision.last.verdict == "fail"
    assert "below the minimum share 30 %" in decision.last.reason
    assert decision.reason.startswith("canary rollout failed at canary 50%: canary 50% was")
    assert promote.calls == [] and fleet.returned == [None]


def test_a_failed_shadow_stops_before_any_live_share():
    fleet = FakeFleet()
    steps = ScriptedSteps(fleet, "fail")
    decision, promote, _ = run(fleet, steps)
    assert steps.labels == ["shadow"] and decision.outcome == "rolled back"
    assert promote.calls == [] and fleet.returned == [None]


def test_an_inconclusive_step_pauses_and_keeps_the_challenger():
    fleet = FakeFleet()
    steps = ScriptedSteps(fleet, "pass", "paused")
    decision, _, retire = run(fleet, steps)
    assert decision.outcome == "paused" and decision.headline == "PAUSED"
    assert fleet.returned == [None]
    published = Calls()
    with pytest.raises(RolloutPaused, match="keeps its challenger alias"):
        conclude(decision, retire, {}, published)
    assert retire.calls == [] and published.calls == [()]


def test_a_rolled_back_candidate_is_retired_before_the_decision_is_published():
    order: list[str] = []
    fleet = FakeFleet()
    decision = Decision(candidate(), [StepAnalysis("shadow", "fail", reason="agreement low")])
    with pytest.raises(RolloutFailed, match="failed at shadow: agreement low; traffic is back"):
        conclude(
            decision,
            lambda reason, evidence: order.append(f"retire: {reason} {evidence}"),
            {"flow_run": "x"},
            lambda: order.append("publish"),
        )
    assert order == [
        "retire: canary rollout failed at shadow: agreement low {'flow_run': 'x'}",
        "publish",
    ]
    assert fleet.returned == []


def test_a_lost_lease_aborts_returns_to_the_champion_and_retires_the_challenger():
    fleet = FakeFleet()
    steps = ScriptedSteps(fleet, "pass", LeaseLost("the lease passed"))
    retire = Calls()
    with pytest.raises(RolloutAborted, match="stopped mid-step on LeaseLost") as raised:
        run(fleet, steps, retire=retire)
    assert "v2 retired (its challenger alias removed)" in str(raised.value)
    assert fleet.returned == [None]
    assert retire.calls == [
        ("rollout aborted mid-step (LeaseLost: the lease passed)", {"owner": "run-1"})
    ]


def test_replicas_that_do_not_follow_pause_and_keep_the_challenger():
    fleet = FakeFleet()
    steps = ScriptedSteps(fleet, FleetError("1 of 2 replica(s) do not serve generation 3"))
    retire = Calls()
    with pytest.raises(RolloutPaused, match=r"do not serve generation 3\. Traffic is back on v1"):
        run(fleet, steps, retire=retire)
    assert retire.calls == [] and fleet.returned == [None]


def test_a_lagging_replica_after_promotion_is_a_warning_not_a_failure(caplog):
    fleet = FakeFleet(lag="replica b is down")
    steps = ScriptedSteps(fleet, "pass", "pass", "pass")
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        decision, _, _ = run(fleet, steps)
    assert decision.outcome == "promoted"
    assert "champion alone is committed; replica b is down" in caplog.text


def test_a_refused_promotion_serves_what_the_registry_says_and_is_raised():
    fleet = FakeFleet()
    steps = ScriptedSteps(fleet, "pass", "pass", "pass")
    with pytest.raises(ChassisError, match="champion moved"):
        run(fleet, steps, promote=Calls(ChassisError("champion moved")))
    assert fleet.returned == [None]


def test_a_rollback_that_cannot_be_written_names_the_lease_that_will_end_it():
    fleet = FakeFleet(rollback_error=RuntimeError("registry down"))
    steps = ScriptedSteps(fleet, RuntimeError("boom"))
    retire = Calls()
    with pytest.raises(RolloutAborted, match="record still names") as raised:
        run(fleet, steps, retire=retire)
    assert "retires v2" in str(raised.value) and retire.calls == []


def test_a_cancelled_rollout_is_ended_safely_and_the_cancellation_raised():
    fleet = FakeFleet()
    steps = ScriptedSteps(fleet, KeyboardInterrupt())
    retire = Calls()
    with pytest.raises(KeyboardInterrupt):
        run(fleet, steps, retire=retire)
    assert fleet.returned == [None]
    assert retire.calls == [("rollout aborted mid-step (KeyboardInterrupt)", {"owner": "run-1"})]


def test_a_retirement_that_fails_is_reported_with_what_was_left():
    fleet = FakeFleet()
    steps = ScriptedSteps(fleet, RuntimeError("boom"))
    with pytest.raises(RolloutAborted, match="v2 could NOT be retired \\(no registry\\)"):
        run(fleet, steps, retire=Calls(RuntimeError("no registry")))


def test_blue_green_previews_switches_and_keeps_the_old_color_warm():
    fleet = FakeFleet()
    steps = ScriptedSteps(fleet, "pass", "pass")
    _, promote, _ = run(fleet, steps, strategy="blue-green")
    assert steps.labels == ["blue-green preview", "blue-green live"]
    preview, live = fleet.committed
    assert (preview.mode, preview.stable_version, preview.candidate_version) == (
        "blue-green",
        1,
        2,
    )
    assert (live.mode, live.stable_version, live.warm_version) == ("stable", 2, 1)
    assert steps.compared == [True, True]  # mirror_percent 100: the live window compares
    assert promote.calls == [("blue-green rollout passed 2 step(s)",)]
    assert fleet.returned == [1]  # the old color stays warm


def test_a_degraded_blue_green_preview_fails_without_switching():
    fleet = FakeFleet()
    steps = ScriptedSteps(fleet, "degraded")
    decision, promote, _ = run(fleet, steps, strategy="blue-green")
    assert len(fleet.committed) == 1
    assert decision.outcome == "rolled back" and decision.last.verdict == "fail"
    assert promote.calls == []


def test_the_decision_markdown_names_every_step():
    decision = Decision(
        candidate(),
        [StepAnalysis("shadow", "pass", reason="ok"), StepAnalysis("canary 50%", "paused")],
    )
    text = decision_markdown(decision)
    assert text.startswith("# Rollout of m v2 (canary): PAUSED")
    assert "| shadow | pass | ok |" in text and "| canary 50% | paused |" in text


def test_a_version_is_rolled_out_only_against_another_champion_and_never_when_retired():
    assert check_candidate("m", 2, {"champion": 1}, None, False) == 1
    with pytest.raises(ChassisError, match="no champion to roll out against"):
        check_candidate("m", 2, {}, None, False)
    with pytest.raises(ChassisError, match="v2 is already the champion"):
        check_candidate("m", 2, {"champion": 2}, None, False)
    with pytest.raises(RetiredChallenger, match=r"m retired by x; .*--allow-retired"):
        check_candidate("m", 2, {"champion": 1}, "retired by x", False)
    assert check_candidate("m", 2, {"champion": 1}, "retired by x", True) == 1


def test_a_window_without_traffic_renews_the_lease_at_every_look_then_pauses(caplog):
    fleet = FakeFleet()
    policy = RolloutPolicy(step_seconds=1, max_extensions=1)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with caplog.at_level(logging.INFO, logger=LOG.name):
        analysis = watch_window(
            fleet, 2, 1, "canary 50%", policy, True, LOG, clock=lambda: now[0], sleep=sleep
        )
    assert analysis.verdict == "paused"
    assert now[0] == pytest.approx(2.0)  # two windows of 1 s, looked at every 0.25 s
    assert fleet.renewals == 8
    assert "canary 50%: window 1 of 2 ended undecided" in caplog.text


def test_a_window_with_enough_healthy_samples_passes_at_once():
    policy = RolloutPolicy(step_seconds=60)
    n = policy.required_samples
    bounds = (0.001, 0.01)
    healthy = VersionCounts(n, 0, n, n, bounds, (n, 0, 0), (n, 0, 0))

    class Busy(FakeFleet):
        def window(self, now: list[ModelCounts], start: list[ModelCounts]) -> ModelCounts:
            return {2: healthy, 1: healthy}

    analysis = watch_window(Busy(), 2, 1, "shadow", policy, True, LOG, sleep=lambda s: None)
    assert analysis.verdict == "pass" and analysis.candidate_samples >= n
