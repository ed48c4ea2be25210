"""The diagnose flow against a real gateway process, the session's Prefect API and a real
MLflow store: a healthy model is found healthy on every branch; a replica that does not
answer fails the base-services branch and the walk stops there; an alert about a model the
registry does not know is diagnosed as such, with nothing done."""

import threading
import time
from collections.abc import Iterator

import pandas as pd
import pytest

from chassis.diagnosis.policy import DiagnosisPolicy
from chassis.serving.embedded import free_port
from chassis.traffic import replay
from flows.diagnose import diagnose
from flows.release import release
from tests.fixtures.gateway import MODEL, GatewayProcess
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


def test_an_alert_about_an_unknown_model_is_diagnosed_as_such_and_nothing_is_done(chassis_home):
    outcome = diagnose(model_name="no-such-model", policy=QUICK)
    assert outcome.failing_checks == ["no-such-model is registered: no such registered model"]
    assert not home_registry().model_exists("no-such-model")  # nothing made for it either
