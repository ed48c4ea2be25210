"""The troubleshooting tree's judgements, on given evidence: which branch fails, and that
a few unlucky requests or a busy machine's latency do not fail a healthy model."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from chassis.diagnosis.data_checks import data_findings
from chassis.diagnosis.findings import Diagnosis, Finding, walk
from chassis.diagnosis.fleet_checks import business_findings, service_findings
from chassis.diagnosis.policy import DiagnosisPolicy
from chassis.diagnosis.probes import ReplicaProbe, observe
from chassis.diagnosis.recovery import AUTOMATIC_FALLBACK, plan_recovery
from chassis.diagnosis.traffic_checks import (
    early_alpha,
    early_looks,
    final_alpha,
    surely_failing,
    traffic_findings,
)
from chassis.errors import GatewayError
from chassis.registry.audit import AuditRecord
from chassis.rollout.counts import VersionCounts
from chassis.rollout.record import RolloutRecord

POLICY = DiagnosisPolicy()
BOUNDS = (0.001, 0.005, 0.01, 0.05, 0.1)  # seconds


def status(stable: int = 1, generation: int = 3, loaded: list[int] | None = None) -> dict:
    return {
        "state": {"stable_version": stable, "candidate_version": None, "mode": "stable"},
        "loaded_versions": loaded if loaded is not None else [stable],
        "generation": generation,
        "record_error": None,
    }


def healthy_replica(url: str = "http://r1", **kwargs) -> ReplicaProbe:
    return ReplicaProbe(url, True, True, status(**kwargs), "")


def counts(requests: int, errors: int = 0, slow: int = 0) -> VersionCounts:
    """`requests` answered in 1-5 ms, of which `slow` took 50-100 ms, plus `errors`."""
    answered = requests - errors
    return VersionCounts(
        executions=requests,
        errors=errors,
        bounds=BOUNDS,
        buckets=(0, answered - slow, 0, 0, slow, 0),
    )


def test_the_walk_stops_at_the_first_failing_branch_and_names_it():
    ran: list[str] = []

    def branch(name: str, verdict: str):
        def check() -> list[Finding]:
            ran.append(name)
            return [Finding(f"{name} check", verdict, "seen", "wanted")]  # type: ignore[arg-type]

        return check

    diagnosis = walk(
        "m",
        [
            ("service", branch("service", "healthy")),
            ("model", branch("model", "failing")),
            ("data", branch("data", "healthy")),
        ],
    )
    assert ran == ["service", "model"] and diagnosis.failing_branch == "model"
    assert diagnosis.not_walked == ["data"]
    assert diagnosis.summary() == "m: model performance failing: model check: seen"
    healthy = walk("m", [("service", branch("service", "healthy"))])
    assert healthy.failing_branch is None and "nothing wrong found" in healthy.summary()


def test_an_unreachable_or_unready_replica_fails_the_service_branch():
    down = ReplicaProbe("http://r2", False, False, None, "unreachable: connection refused")
    unready = ReplicaProbe("http://r3", True, False, status(), "/readyz is not 200")
    findings = service_findings([healthy_replica(), down, unready], "m")
    failing = [f.check for f in findings if f.failing]
    assert failing == ["replica http://r2 reachable", "replica http://r3 ready"]
    assert not any(f.failing for f in service_findings([healthy_replica()], "m"))


def test_a_replica_whose_stable_version_is_not_loaded_fails():
    (_, serves) = service_findings([healthy_replica(loaded=[])], "m")
    assert serves.failing and "stable v1" in serves.observed


def test_a_version_failing_a_tenth_of_its_requests_fails_the_model_branch():
    findings = traffic_findings({1: counts(500), 2: counts(500, errors=60)}, POLICY)
    failing = [f.check for f in findings if f.failing]
    assert failing == ["v2 server-error ratio"]


def test_a_few_unlucky_errors_do_not_fail_a_healthy_version():
    # 3 of 40 is 7.5 %, above 5 %, but its lower 99 % bound is not: not surely failing.
    (ratio, _) = traffic_findings({1: counts(40, errors=3)}, POLICY)
    assert ratio.verdict == "healthy" and "lower bound" in ratio.observed


def test_too_few_requests_are_not_judged_rather_than_called_healthy():
    (finding,) = traffic_findings({1: counts(5, errors=5)}, POLICY)
    assert finding.verdict == "not judged"
    (nothing,) = traffic_findings({}, POLICY)
    assert nothing.verdict == "not judged"


def test_a_version_failing_half_its_requests_ends_the_watch_at_an_early_look():
    assert surely_failing({1: counts(200), 2: counts(40, errors=20)}, POLICY)
    assert not surely_failing({1: counts(200), 2: counts(200, errors=2)}, POLICY)


def test_early_looks_are_stricter_than_the_window_end_so_a_healthy_version_fails_no_more():
    # Bonferroni: half of alpha over the early looks, half at the end; together alpha.
    assert early_looks(POLICY) == 14
    assert early_alpha(POLICY) * early_looks(POLICY) + final_alpha(POLICY) == pytest.approx(
        POLICY.alpha
    )
    # 8 % errors of 500: surely above 5 % at the window's end, not yet at an early look.
    borderline = {1: counts(500, errors=40)}
    assert not surely_failing(borderline, POLICY)
    (ratio, _) = traffic_findings(borderline, POLICY, final_alpha(POLICY))
    assert ratio.failing
    one_look = POLICY.model_copy(update={"observe_seconds": 1})
    assert early_looks(one_look) == 0 and final_alpha(one_look) == one_look.alpha


class SilentClient:
    """A replica whose metrics cannot be read: observe counts nothing from it."""

    base_url = "http://silent"

    def metrics(self) -> str:
        raise GatewayError("no answer")


def test_the_watch_ends_at_the_first_look_that_settles_it_or_at_the_window_end():
    looks: list[int] = []

    def settled(seen) -> bool:
        looks.append(len(seen))
        return len(looks) == 2

    clients = [SilentClient()]
    _, early = observe(clients, "m", 5.0, settled=settled, look_seconds=0.01)  # type: ignore[arg-type]
    assert early and looks == [0, 0]
    _, early = observe(clients, "m", 0.03, settled=lambda _: False, look_seconds=0.01)  # type: ignore[arg-type]
    assert not early


def test_a_version_whose_p99_is_surely_over_budget_fails():
    (_, latency) = traffic_findings({1: counts(1000, slow=100)}, POLICY)
    assert latency.failing and latency.check == "v1 p99 latency"
    (_, fine) = traffic_findings({1: counts(1000, slow=2)}, POLICY)
    assert not fine.failing


def test_a_split_not_served_everywhere_or_orphaned_fails_the_business_branch():
    record = RolloutRecord(generation=4, mode="stable")
    behind = [healthy_replica("http://r1", generation=4), healthy_replica("http://r2")]
    failing = [f.check for f in business_findings(behind, record, 1, 0.0) if f.failing]
    assert failing == ["every replica serves the committed split"]
    moved = [healthy_replica("http://r1", stable=1, generation=4)]
    (_, champion) = business_findings(moved, record, 2, 0.0)
    assert champion.failing and "@champion v2; replicas serve v1" in champion.observed
    assert not any(f.failing for f in business_findings(moved, record, 1, 0.0))


@pytest.mark.parametrize(
    ("served", "failing_check"),
    [
        (pd.DataFrame({"a": [0.5, None, 0.2, 0.1], "b": [1.0, 2.0, 3.0, 2.0]}), "missing"),
        (pd.DataFrame({"a": [0.5, 9.0, 9.5, 0.1], "b": [1.0, 2.0, 3.0, 2.0]}), "ranges"),
        (pd.DataFrame({"a": [0.5, 0.4]}), "served columns"),
    ],
)
def test_missing_values_out_of_range_values_and_missing_columns_fail_the_data_branch(
    served, failing_check
):
    reference = pd.DataFrame({"a": [0.0, 1.0], "b": [0.0, 5.0]})
    findings = data_findings(reference, served, ["a", "b"], POLICY)
    failing = [f for f in findings if f.failing]
    assert len(failing) == 1 and failing_check in failing[0].check
    if failing_check == "ranges":
        assert "a 50% outside [0, 1]" in failing[0].observed


def test_clean_served_rows_pass_the_data_branch():
    reference = pd.DataFrame({"a": [0.0, 1.0]})
    served = pd.DataFrame({"a": [0.2, 0.8, 0.5]})
    assert not any(f.failing for f in data_findings(reference, served, ["a"], POLICY, []))


def model_failing(version: int) -> Diagnosis:
    failing = Finding(f"v{version} server-error ratio", "failing", "50.0% of 400", "<= 5%", version)
    return walk("m", [("model", lambda: [failing])])


def audit(action: str, reason: str, at: datetime) -> AuditRecord:
    moved = [{"alias": "champion", "from": 2, "to": 1}]  # every alias operation moves one
    return AuditRecord(1, at.isoformat(timespec="seconds"), "diagnose", action, moved, reason, {})


NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
ALIASES = {"champion": 2, "previous": 1}


def test_a_failing_champion_with_a_previous_is_fallen_back_with_its_evidence():
    decided = plan_recovery(model_failing(2), ALIASES, [], POLICY, NOW)
    assert (decided.action, decided.mode, decided.target) == ("fallback", "act", 1)
    assert decided.evidence == {"v2 server-error ratio": "50.0% of 400"}


def test_no_previous_makes_the_fallback_impossible_and_says_so():
    decided = plan_recovery(model_failing(2), {"champion": 2}, [], POLICY, NOW)
    assert decided.mode == "impossible" and "no @previous" in decided.explanation


def test_a_failing_candidate_or_another_branch_takes_no_action():
    assert plan_recovery(model_failing(3), ALIASES, [], POLICY, NOW).mode == "none"
    healthy = walk("m", [("service", lambda: [])])
    assert plan_recovery(healthy, ALIASES, [], POLICY, NOW).explanation.startswith("nothing")


@pytest.mark.parametrize(("switch", "mode"), [("off", "none"), ("suggest", "suggest")])
def test_the_fallback_switch_turns_the_action_off_or_into_a_suggestion(switch, mode):
    policy = POLICY.model_copy(update={"fallback": switch})
    assert plan_recovery(model_failing(2), ALIASES, [], policy, NOW).mode == mode


def test_a_second_fallback_within_the_cooldown_is_only_suggested_unless_an_alias_moved():
    recent = audit("rollback", f"{AUTOMATIC_FALLBACK}: m: ...", NOW - timedelta(minutes=10))
    decided = plan_recovery(model_failing(2), ALIASES, [recent], POLICY, NOW)
    assert decided.mode == "suggest" and "cooldown" in decided.explanation
    # A person promoted a version since: the new champion is protected again.
    promoted = audit("promote", "by hand", NOW - timedelta(minutes=5))
    assert plan_recovery(model_failing(2), ALIASES, [recent, promoted], POLICY, NOW).mode == "act"
    # Long ago: past the cooldown.
    old = audit("rollback", f"{AUTOMATIC_FALLBACK}: m", NOW - timedelta(hours=2))
    assert plan_recovery(model_failing(2), ALIASES, [old], POLICY, NOW).mode == "act"


def test_a_failing_service_branch_says_what_recovers_it_on_kubernetes():
    down = Finding("replica http://r2 reachable", "failing", "unreachable", "answers")
    decided = plan_recovery(walk("m", [("service", lambda: [down])]), ALIASES, [], POLICY, NOW)
    assert decided.mode == "none" and "liveness probe restarts" in decided.explanation


def service_failing() -> Diagnosis:
    failing = Finding("replica http://r2 ready", "failing", "/readyz is not 200", "/readyz 200")
    return walk("m", [("service", lambda: [failing])])


def stuck_replica(url: str = "http://r2", supervised: bool = True) -> ReplicaProbe:
    return ReplicaProbe(url, True, False, None, "/readyz is not 200", supervised, 42)


def restart_plan(probes: list[ReplicaProbe], switch: str = "on"):
    policy = DiagnosisPolicy(restart=switch)  # type: ignore[arg-type]
    return plan_recovery(service_failing(), ALIASES, [], policy, NOW, probes=probes)


def test_a_supervised_replica_alive_but_not_ready_is_restarted_and_a_healthy_one_is_not():
    decided = restart_plan([healthy_replica("http://r1"), stuck_replica()])
    assert (decided.action, decided.mode, decided.replicas) == ("restart", "act", ("http://r2",))
    assert decided.evidence == {"http://r2": "/readyz is not 200"}
    # Ready but its stable version not loaded (not verified): restarted too.
    unverified = ReplicaProbe("http://r3", True, True, status(stable=2, loaded=[1]), "", True)
    assert restart_plan([unverified]).replicas == ("http://r3",)


def test_the_restart_switch_suggests_or_does_nothing():
    suggested = restart_plan([stuck_replica()], "suggest")
    assert suggested.mode == "suggest" and suggested.explanation.startswith("suggested: restart")
    off = restart_plan([stuck_replica()], "off")
    assert (off.mode, off.replicas) == ("none", ())
    assert off.explanation.startswith("restart is off (policy)")


def test_a_replica_not_under_the_local_supervisor_is_not_restarted_and_kubernetes_is_named():
    decided = restart_plan([stuck_replica(supervised=False)])
    assert (decided.action, decided.mode, decided.replicas) == ("restart", "none", ())
    assert "not under the local supervisor: http://r2" in decided.explanation
    assert "on Kubernetes the readiness probe" in decided.explanation
    both = restart_plan([stuck_replica("http://a"), stuck_replica("http://b", supervised=False)])
    assert both.mode == "act" and both.replicas == ("http://a",)
    assert "not under the local supervisor: http://b" in both.explanation


def test_a_replica_that_does_not_answer_is_left_to_the_supervisor_or_a_person():
    silent = ReplicaProbe("http://r9", False, False, None, "unreachable: refused")
    decided = restart_plan([healthy_replica(), silent])
    assert (decided.action, decided.mode) == ("none", "none")
    assert "http://r9 does not answer" in decided.explanation


def test_a_restart_record_does_not_end_the_fallback_cooldown():
    trail = [
        audit("rollback", f"{AUTOMATIC_FALLBACK}: v2 failing", NOW - timedelta(minutes=5)),
        AuditRecord(2, NOW.isoformat(), "diagnose", "restart", [], "automatic restart", {}),
    ]
    decided = plan_recovery(model_failing(2), ALIASES, trail, POLICY, NOW)
    assert decided.mode == "suggest" and decided.explanation.startswith("cooldown")
