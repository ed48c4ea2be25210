"""Diagnose and recover with no person, every piece a real process on loopback
(tests/fixtures/self_healing.py): two gateways scraped every 5 s by Prometheus with the
shipped rules, the shipped Alertmanager route to `chassis webhook-relay`, a Prefect server
whose `diagnose` deployment (deployments/prefect.yaml) triggers on the relay's events, and
a process worker.

A version promoted by hand starts failing on live traffic: the alert fires, the event
starts a diagnosis, the diagnosis falls back to the previous champion and every replica
serves it again. Before that, the same system under alert noise, healthy, takes no action.
After it, the source starts sending values far outside the training ranges: the scheduled
drift check's result reaches Prometheus through the Pushgateway, its alert starts a
diagnosis, and the diagnosis switches sanitization on for every replica.
How long each step took is measured by benchmarks/self_healing.py (BENCHMARKS.md), not here.
"""

import time
from collections.abc import Iterator
from typing import Any

import pytest

from chassis.diagnosis.recovery import AUTOMATIC_FALLBACK, AUTOMATIC_SANITIZATION
from chassis.sanitization import SANITIZATION_ON
from tests.fixtures.gateway import MODEL
from tests.fixtures.self_healing import (
    OUTLIERS,
    SelfHealingLoop,
    clean_rows,
    shifted_rows,
    unix,
    wait_for,
)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SelfHealingLoop]:
    running = SelfHealingLoop(tmp_path_factory.mktemp("self-healing")).start()
    yield running
    running.stop()


def run_made_after(loop: SelfHealingLoop, since: float) -> dict[str, Any]:
    runs = wait_for(
        "a diagnose run made by the trigger",
        lambda: [r for r in loop.diagnose_runs() if unix(r["created"]) >= since],
        120,
    )
    return runs[0]


@pytest.mark.slow
def test_alert_noise_on_a_healthy_system_is_diagnosed_and_nothing_is_done(loop):
    registry = loop.registry()
    aliases = registry.current_aliases(MODEL)
    trail = len(registry.history(MODEL))
    assert aliases == {"champion": 2, "previous": 1}
    with loop.traffic(clean_rows()):  # v2 answers clean rows without fault
        since = time.time()
        # Noise: an alert about the model that no fault is behind (as a flapping rule, or
        # one set too tight, would send), delivered the way Prometheus delivers.
        loop.alertmanager.fire(
            {"alertname": "ChassisLatencyP99OverBudget", "model": MODEL, "severity": "page"},
            {"summary": "noise"},
        )
        run = run_made_after(loop, since)
        done = wait_for("the diagnosis to end", lambda: loop.finished(run["id"]), 300, 1)
    assert run["created_by"]["type"] == "AUTOMATION"  # the trigger, not this test
    assert run["parameters"]["model_name"] == MODEL
    assert done["state"]["type"] == "COMPLETED", loop.server.log_messages(run["id"])[-20:]
    report = loop.report(run["id"])
    assert "nothing wrong found" in report, report
    assert "v2 server-error ratio" in report  # the model branch judged the champion
    registry = loop.registry()
    assert registry.current_aliases(MODEL) == aliases
    assert len(registry.history(MODEL)) == trail  # no action, nothing audited
    assert loop.stable_versions() == [2, 2]


@pytest.mark.slow
def test_a_champion_failing_on_live_traffic_is_fallen_back_on_every_replica_with_no_person(loop):
    assert loop.registry().current_aliases(MODEL)["champion"] == 2
    # The noise's diagnosis is over and no other is queued. (Other alerts may be pending,
    # such as a latency one on a busy machine: none of them can fire within this module.)
    wait_for("no diagnosis in progress", loop.idle, 300, 2)
    fault_at = time.time()
    watch = loop.watch_recovery(fault_at, previous=1, alert="ChassisErrorSpike")
    with loop.traffic(OUTLIERS):  # from now on half the rows make v2 raise
        timeline = watch.wait_recovered(240)
    # Alert -> event -> diagnosis -> fallback, in that order, each after the fault.
    assert timeline.alert_firing_at is not None and timeline.event_at is not None
    assert timeline.diagnosis_started_at is not None and timeline.recovered_at is not None
    assert fault_at < timeline.alert_firing_at <= timeline.event_at + 5  # 5 s: one evaluation
    assert timeline.event_at <= timeline.diagnosis_started_at < timeline.recovered_at

    # The run that fell back is the one the fault's alert made.
    (run,) = wait_for("the run that fell back", loop.acting_runs, 120, 1)
    assert unix(run["created"]) >= fault_at
    assert run["created_by"]["type"] == "AUTOMATION"
    done = wait_for("the diagnosis to end", lambda: loop.finished(run["id"]), 120, 1)
    assert done["state"]["type"] == "COMPLETED", loop.server.log_messages(run["id"])[-20:]
    report = loop.report(run["id"])
    assert "## model performance: failing" in report, report
    assert "v2 server-error ratio" in report

    registry = loop.registry()
    assert registry.current_aliases(MODEL)["champion"] == 1
    record = registry.history(MODEL)[-1]
    assert record.action == "rollback" and record.reason.startswith(AUTOMATIC_FALLBACK)
    # The run that acted is named in the audit trail, by its id (every run shares its name).
    assert record.actor.endswith(f"via flow run {run['name']} ({run['id']})")
    assert "v2 server-error ratio" in record.evidence
    assert loop.stable_versions() == [1, 1]


@pytest.mark.slow
def test_a_data_quality_fault_switches_sanitization_on_for_every_replica_with_no_person(loop):
    champion = loop.registry().current_aliases(MODEL)["champion"]
    since = time.time()
    with loop.traffic(shifted_rows()):
        # The drift check as its schedule runs it: it judges the window and pushes its result.
        checked = loop.cli(
            "drift-check", "--model", MODEL, "--window-minutes", "5",
            env={"CHASSIS_PUSHGATEWAY_URL": loop.pushgateway_url},
        )  # fmt: skip
        assert ": drift: " in checked.stdout, checked.stdout
        fired = wait_for(
            "ChassisDriftDetected firing",
            lambda: loop.prometheus.firing("ChassisDriftDetected"),
            60,
        )
        assert fired[0]["labels"]["model"] == MODEL

        def drift_events() -> list[dict[str, Any]]:
            return [
                e
                for e in loop.alert_events()
                if e["resource"].get("chassis.alert.name") == "ChassisDriftDetected"
                and unix(e["occurred"]) >= since
            ]

        # Alertmanager (group_wait 5 s) and the relay turn it into an event.
        wait_for("the ChassisDriftDetected event", drift_events, 60, 1)
        # A diagnosis (this alert's, or a later one's: each finds the same window) switches
        # sanitization on, and every replica applies it.
        wait_for(
            "sanitization on every replica",
            lambda: all(s and s.startswith("clip") for s in loop.sanitization()),
            300,
            1,
        )
    registry = loop.registry()
    setting = registry.read_sanitization(MODEL)
    assert setting is not None and setting.mode == "clip" and setting.version == champion
    record = next(r for r in reversed(registry.history(MODEL)) if r.action == SANITIZATION_ON)
    assert AUTOMATIC_SANITIZATION in record.reason and record.moves == []
    assert "via flow run" in record.actor  # the diagnosis run, not a person
    runs = [r for r in loop.diagnose_runs() if f"({r['id']})" in record.actor]
    assert len(runs) == 1 and runs[0]["created_by"]["type"] == "AUTOMATION"
    assert registry.current_aliases(MODEL)["champion"] == champion  # no fallback for data
