"""The diagnose flow against a real gateway process, the session's Prefect API and a real
MLflow store: a healthy model is found healthy on every branch; a replica that does not
answer fails the base-services branch and the walk stops there; an alert about a model the
registry does not know is diagnosed as such, with nothing done; under the local supervisor
(`chassis serve --replicas 2`) a replica alive but not ready is restarted, one killed
comes back by itself, and SIGTERM stops them all."""

import os
import signal
import threading
import time
from collections.abc import Iterator

import pandas as pd
import pytest

from chassis.diagnosis.policy import DiagnosisPolicy
from chassis.diagnosis.recovery import AUTOMATIC_FALLBACK
from chassis.serving.client import GatewayClient
from chassis.serving.embedded import free_port
from chassis.settings import ChassisSettings
from chassis.traffic import replay
from flows.diagnose import diagnose
from flows.promotion import promote
from flows.release import release
from tests.fixtures.gateway import MODEL, GatewayProcess, SupervisedGateways
from tests.fixtures.registries import home_registry
from tests.integration.test_training_flow import latest_artifact

# Short windows: a test cannot watch for the default 15 s on every branch.
QUICK = DiagnosisPolicy(observe_seconds=3, min_requests=10)


@pytest.fixture
def served(chassis_home, tmp_path, monkeypatch) -> Iterator[GatewayProcess]:
    monkeypatch.setenv("CHASSIS_PREDICTION_LOG_FLUSH_SECONDS", "0.5")
    release(spec="tests.fixtures.specs:good", seed=0, compression="off")
    gateway = GatewayProcess(chassis_home, env={"CHASSIS_PREDICTION_LOG_FLUSH_SECONDS": "0.5"})
    gateway.start()
    monkeypatch.setenv("CHASSIS_GATEWAY_URL", gateway.url)
    yield gateway
    gateway.stop()


def reference_rows(tmp_path) -> list[list[float]]:
    """Rows of the champion's own training reference: served data that is clean."""
    registry = home_registry()
    features = registry.feature_columns(MODEL, 1) or []
    frame = pd.read_parquet(registry.fetch_reference(MODEL, 1, tmp_path / "reference"))
    return frame[features].astype(float).values.tolist()


def test_a_healthy_model_is_found_healthy_on_every_branch(served, tmp_path):
    rows = reference_rows(tmp_path)
    stop = threading.Event()
    sender = threading.Thread(
        target=replay,
        args=(served.url, MODEL, rows),
        kwargs={"max_requests": 100_000, "max_seconds": 120, "stop": stop, "concurrency": 2},
    )
    sender.start()
    try:
        # Served rows reach the prediction log before the data branch reads it.
        log_root = served.home / "predictions"
        deadline = time.monotonic() + 60
        while not any(log_root.rglob("*.parquet")):
            assert time.monotonic() < deadline, "no prediction-log file within 60 s"
            time.sleep(0.2)
        outcome = diagnose(model_name=MODEL, policy=QUICK)
    finally:
        stop.set()
        sender.join(timeout=30)
    assert outcome.failing_branch is None, outcome.failing_checks
    assert outcome.summary == f"{MODEL}: nothing wrong found (4 branches walked)"
    assert outcome.report_uri is not None and outcome.report_uri.endswith("diagnosis/report.md")
    report = latest_artifact(f"diagnosis-{MODEL}").data
    for heading in ("base services: healthy", "model performance: healthy"):
        assert heading in report
    assert "v1 server-error ratio" in report and "values within the reference's ranges" in report


def test_a_replica_that_does_not_answer_fails_the_service_branch_and_stops_the_walk(served):
    silent = f"http://127.0.0.1:{free_port()}"
    outcome = diagnose(model_name=MODEL, replicas=[served.url, silent], policy=QUICK)
    assert outcome.failing_branch == "service"
    (failing,) = outcome.failing_checks
    assert failing.startswith(f"replica {silent} reachable: unreachable")
    report = latest_artifact(f"diagnosis-{MODEL}").data
    assert "Not walked (the tree stops at the first failing branch): model performance" in report
    # Nothing here can start it again: said, and nothing done.
    assert outcome.recovery == "none" and outcome.replicas_restarted == []
    assert f"{silent} does not answer" in outcome.recovery_explanation


def test_an_alert_about_an_unknown_model_is_diagnosed_as_such_and_nothing_is_done(chassis_home):
    outcome = diagnose(model_name="no-such-model", policy=QUICK)
    assert outcome.failing_checks == ["no-such-model is registered: no such registered model"]
    assert not home_registry().model_exists("no-such-model")  # nothing made for it either


def test_a_champion_failing_on_live_traffic_is_fallen_back_and_every_replica_follows(
    chassis_home, tmp_path, monkeypatch
):
    release(spec="tests.fixtures.specs:good", seed=0, compression="off")  # v1
    # v2 passes every offline check and errors on live rows beyond 1,000 standard
    # deviations; promoted by hand, as a person in a hurry would.
    release(
        spec="tests.fixtures.specs:fails_on_outliers",
        rollout_strategy="none",
        compression="off",
    )
    promote(model_name=MODEL, version=2)
    assert home_registry().current_aliases(MODEL) == {"champion": 2, "previous": 1}
    gateway = GatewayProcess(chassis_home)
    gateway.start()
    monkeypatch.setenv("CHASSIS_GATEWAY_URL", gateway.url)
    stop = threading.Event()
    outliers = [[5000.0, 0.0, 0.0, 0.0], [0.5, -1.0, 2.0, 0.0]]  # half of them fail
    sender = threading.Thread(
        target=replay,
        args=(gateway.url, MODEL, outliers),
        kwargs={"max_requests": 100_000, "max_seconds": 120, "stop": stop, "concurrency": 2},
    )
    sender.start()
    try:
        outcome = diagnose(model_name=MODEL, policy=QUICK)
    finally:
        stop.set()
        sender.join(timeout=30)
    try:
        assert outcome.failing_branch == "model", outcome.failing_checks
        assert any(c.startswith("v2 server-error ratio") for c in outcome.failing_checks)
        assert outcome.recovery == "fallback"
        assert outcome.replicas_following == [gateway.url]
        assert home_registry().current_aliases(MODEL)["champion"] == 1
        status = GatewayClient(gateway.url, ChassisSettings().admin_token()).status(MODEL)
        assert status["state"]["stable_version"] == 1
    finally:
        gateway.stop()
    record = home_registry().history(MODEL)[-1]
    assert record.action == "rollback" and record.reason.startswith(AUTOMATIC_FALLBACK)
    assert "v2 server-error ratio" in record.evidence


def test_under_the_local_supervisor_a_stuck_replica_is_restarted_and_a_killed_one_comes_back(
    chassis_home,
):
    release(spec="tests.fixtures.specs:good", seed=0, compression="off")
    # Replica 1 cannot load its model at its first start (a fail point armed for it only):
    # alive, /readyz 503, retrying; a clean start serves.
    fleet = SupervisedGateways(chassis_home, env={"CHASSIS_FAILPOINTS": "gateway.load@1=fail"})
    fleet.launch()
    try:
        stuck = fleet.urls[1]
        healthy_pid = fleet.wait_for(0, ready=True)
        stuck_pid = fleet.wait_for(1, ready=False)
        assert fleet.health(1) == {
            "status": "ok",
            "pid": stuck_pid,
            "supervised": True,
            "replica": 1,
        }
        assert not fleet.ready(1)

        outcome = diagnose(model_name=MODEL, replicas=fleet.urls, policy=QUICK)
        assert outcome.failing_branch == "service", outcome.failing_checks
        failing = outcome.failing_checks[0]
        assert failing.startswith(f"replica {stuck} ready: ") and "InjectedFault" in failing
        assert outcome.recovery == "restart", outcome.recovery_explanation
        assert outcome.replicas_restarted == [stuck] and outcome.replicas_back == [stuck]
        assert fleet.ready(1) and fleet.pid(1) != stuck_pid
        assert fleet.pid(0) == healthy_pid  # the healthy one was left alone
        record = home_registry().history(MODEL)[-1]
        assert (record.action, record.moves) == ("restart", [])
        assert record.reason == f"automatic restart by diagnosis: {stuck}"
        assert list(record.evidence) == [stuck] and "InjectedFault" in record.evidence[stuck]
        assert "back, ready and verified" in latest_artifact(f"replica-restart-{MODEL}").data
        exited = fleet.events("replica.exited")
        assert [e["why"] for e in exited] == ["it was asked to restart"]

        # A replica killed outright is started again on its port, at once.
        os.kill(healthy_pid, signal.SIGKILL)
        assert fleet.wait_for(0, ready=True, not_pid=healthy_pid) != healthy_pid
        assert fleet.events("replica.exited")[-1]["exit"] == "killed by SIGKILL"
    finally:
        code = fleet.stop()
    # SIGTERM reached every replica: each drained and exited, then the supervisor did.
    assert code == 0
    assert len(fleet.events("drain.ended")) == 1 + 2  # the restart's, then both at the end
    ended = fleet.events("supervisor.ended")
    assert ended[-1]["signal"] == "SIGTERM"
    assert fleet.health(0) is None and fleet.health(1) is None
