"""Drift checks on a real gateway's prediction log, in a real Prefect API and MLflow store."""

import time

import numpy as np
import pytest

from chassis.traffic import apply_drift, replay
from flows.monitoring import DataQualityFailure, drift_check
from flows.release import release
from tests.fixtures import specs
from tests.fixtures.gateway import MODEL, GatewayProcess
from tests.integration.test_training_flow import latest_artifact


@pytest.fixture
def logging_gateway(chassis_home, monkeypatch):
    monkeypatch.setenv("CHASSIS_PREDICTION_LOG_FLUSH_SECONDS", "0.5")
    release(spec="tests.fixtures.specs:good", compression="off")
    gateway = GatewayProcess(chassis_home)
    gateway.start()
    yield gateway
    gateway.stop()


def send(gateway: GatewayProcess, rows: np.ndarray) -> None:
    report = replay(gateway.url, MODEL, rows, max_requests=len(rows), max_seconds=60, concurrency=4)
    assert report.failed == 0 and report.sent == len(rows)
    time.sleep(1.5)  # two flushes of the prediction log


def test_calm_traffic_fires_nothing_and_drifted_traffic_fires_the_event(logging_gateway):
    send(logging_gateway, specs.blob_traffic(1))
    calm = drift_check(model_name=MODEL, window_minutes=10)
    assert calm.verdict == "no-drift" and not calm.event_emitted
    assert calm.served_rows == 300

    send(logging_gateway, apply_drift(specs.blob_traffic(2), "shift"))
    drifted = drift_check(model_name=MODEL, window_minutes=10)
    assert drifted.verdict == "drift" and drifted.event_emitted
    assert {"f0", "f1"} <= set(drifted.drifted_columns)
    assert drifted.report_uri and drifted.report_uri.endswith(".html")
    assert "drift" in latest_artifact("test-blobs-drift-summary").data


def test_an_empty_window_is_a_data_quality_failure_never_no_drift(logging_gateway):
    with pytest.raises(DataQualityFailure, match="the window has no rows"):
        drift_check(model_name=MODEL, window_minutes=5)
    assert "data-quality-failure" in latest_artifact("test-blobs-drift-summary").data
