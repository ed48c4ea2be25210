"""The drift_check flow with policy streamed: a real gateway's prediction log judged from
per-column sketches gives the verdicts the Evidently check gives on the same window."""

from datetime import UTC, datetime

import pytest

from chassis.drift import DriftPolicy
from chassis.modelspec import Dataset
from chassis.traffic import apply_drift
from flows.monitoring import drift_check
from flows.release import release
from tests.fixtures import specs
from tests.fixtures.gateway import MODEL, GatewayProcess
from tests.integration.test_drift_flow import send

# Evidently picks its large-reference tests (the ones a sketch computes) above 1,000 rows.
TRAIN_ROWS = 1500


def large_dataset() -> Dataset:
    frame = specs.blobs(rows=TRAIN_ROWS + 200)
    features = tuple(c for c in frame.columns if c != "label")
    return Dataset(
        train=frame.iloc[:TRAIN_ROWS].reset_index(drop=True),
        validation=frame.iloc[TRAIN_ROWS : TRAIN_ROWS + 100].reset_index(drop=True),
        test=frame.iloc[TRAIN_ROWS + 100 :].reset_index(drop=True),
        feature_columns=features,
        label_column="label",
    )


large = specs.make_spec(MODEL, large_dataset)


@pytest.fixture
def gateway(chassis_home, monkeypatch):
    monkeypatch.setenv("CHASSIS_PREDICTION_LOG_FLUSH_SECONDS", "0.5")
    release(spec="tests.integration.test_drift_streamed_flow:large", compression="off")
    process = GatewayProcess(chassis_home)
    process.start()
    yield process
    process.stop()


def test_a_streamed_check_gives_the_evidently_checks_verdicts_on_the_same_window(gateway):
    streamed_policy = DriftPolicy(streamed=True)
    for traffic in (specs.blob_traffic(1, rows=600), apply_drift(specs.blob_traffic(2), "shift")):
        since = datetime.now(UTC)
        send(gateway, traffic)
        streamed = drift_check(model_name=MODEL, since=since, policy=streamed_policy, emit=False)
        whole = drift_check(model_name=MODEL, since=since, emit=False)
        assert streamed.served_rows == whole.served_rows == len(traffic)
        assert (streamed.verdict, streamed.drifted_columns, streamed.judged_columns) == (
            whole.verdict,
            whole.drifted_columns,
            whole.judged_columns,
        )
        assert streamed.serving_suite == "not run"
        # The monitoring run is logged as for any check, with the per-column table.
        assert streamed.report_uri and streamed.report_uri.endswith(".html")
    assert whole.verdict == "drift"  # the last window moved: both saw it
