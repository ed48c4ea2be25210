"""Drift checks on a real gateway's prediction log, in a real Prefect API and MLflow store."""

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse
from uuid import UUID

import httpx
import numpy as np
import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

import tasks.monitoring
from chassis.drift import DriftPolicy
from chassis.errors import DataQualityFailure, DriftInputError
from chassis.mlflow_links import MlflowLinks
from chassis.prediction_window import read_feedback
from chassis.registry import tags
from chassis.serving.embedded import free_port
from chassis.settings import ChassisSettings
from chassis.storage import BlobStore
from chassis.tracking import Tracking
from chassis.traffic import apply_drift, replay
from flows.monitoring import drift_check
from flows.release import release
from tests.fixtures import specs
from tests.fixtures.gateway import MODEL, GatewayProcess
from tests.fixtures.prediction_log import logged_rows, wait_until_logged
from tests.fixtures.pushgateway import pushed_samples, pushgateway
from tests.fixtures.registries import home_registry
from tests.integration.test_training_flow import latest_artifact


def serving(chassis_home: Path, monkeypatch: pytest.MonkeyPatch, spec: str):
    monkeypatch.setenv("CHASSIS_PREDICTION_LOG_FLUSH_SECONDS", "0.5")
    release(spec=spec, compression="off")
    gateway = GatewayProcess(chassis_home)
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture
def logging_gateway(chassis_home, monkeypatch):
    yield from serving(chassis_home, monkeypatch, "tests.fixtures.specs:good")


@pytest.fixture
def suite_gateway(chassis_home, monkeypatch):
    """A champion whose spec names a serving suite (tests/fixtures/blobs.serving.json)."""
    yield from serving(chassis_home, monkeypatch, "tests.fixtures.specs:with_serving_suite")


def send(gateway: GatewayProcess, rows: np.ndarray) -> None:
    settings = ChassisSettings(home=gateway.home)
    before = logged_rows(settings, MODEL)
    report = replay(
        gateway.url, MODEL, rows.tolist(), max_requests=len(rows), max_seconds=60, concurrency=4
    )
    assert report.failed == 0 and report.sent == len(rows)
    wait_until_logged(settings, MODEL, before + len(rows))  # the gateway flushes every 0.5 s


@pytest.fixture
def push_url(tmp_path, monkeypatch):
    """A real Pushgateway the drift checks push to (CHASSIS_PUSHGATEWAY_URL)."""
    with pushgateway(tmp_path / "pushgateway.log") as url:
        monkeypatch.setenv("CHASSIS_PUSHGATEWAY_URL", url)
        yield url


def task_run_names(flow_run_id: UUID | None) -> set[str]:
    """The task runs of one flow run, by name ("load-window test-blobs")."""
    assert flow_run_id is not None

    async def read() -> set[str]:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        return {run.name for run in runs}

    return asyncio.run(read())


def test_calm_traffic_fires_nothing_and_drifted_traffic_fires_the_event(
    logging_gateway, tmp_path, push_url
):
    send(logging_gateway, specs.blob_traffic(1))
    calm_state = drift_check(model_name=MODEL, window_minutes=10, return_state=True)
    calm = calm_state.result()
    assert calm.verdict == "no-drift" and not calm.event_emitted
    # A tabular model: the tokenizer task does not run at all (it would only say "none").
    ran = task_run_names(calm_state.state_details.flow_run_id)
    assert any(name.startswith("load-reference") for name in ran), ran
    assert not any(name.startswith("load-text-encoder") for name in ran), ran
    group = (("instance", ""), ("job", "chassis-drift"), ("model", MODEL))
    assert calm.metrics_pushed
    assert pushed_samples(push_url, "chassis_drift_detected") == {group: 0.0}
    assert calm.served_rows == 300
    assert (calm.judged_columns, calm.drift_share_needed) == (4, 0.5)
    description = latest_artifact("drift-summary-test-blobs").description or ""
    assert re.fullmatch(
        r"Drift check of test-blobs v1: no drift: \d+% of columns drifted \(\d of 4\), "
        r"50% needed \(2\)",
        description,
    ), description

    # `since` judges the drifted traffic alone, without the calm rows before it.
    since = datetime.now(UTC)
    send(logging_gateway, apply_drift(specs.blob_traffic(2), "shift"))
    drifted = drift_check(model_name=MODEL, since=since)
    assert drifted.verdict == "drift" and drifted.event_emitted
    assert drifted.served_rows == 300
    assert drifted.window_start == since.isoformat(timespec="milliseconds")
    assert {"f0", "f1"} <= set(drifted.drifted_columns)
    assert drifted.report_uri and drifted.report_uri.endswith(".html")
    summary = latest_artifact("drift-summary-test-blobs").data
    shared = len(drifted.drifted_columns)
    assert (
        f"**drift: {shared * 25}% of columns drifted ({shared} of 4), 50% needed (2)**" in summary
    )
    # The report is linked as its page in the MLflow UI (the run's artifacts, the file
    # open), which a browser opens from Prefect's UI; never as the store's file:// URI.
    url = drifted.report_url or ""
    page = re.fullmatch(
        re.escape(ChassisSettings().mlflow_ui_url())
        + r"/#/experiments/(\d+)/runs/([0-9a-f]+)/artifactPath/(drift/[^/]+\.html)"
        + re.escape("?workflowType=machine_learning"),
        url,
    )
    assert page, url
    assert f"[Evidently report]({url})" in summary and "file://" not in summary
    client = home_registry().client
    listed = {a.path for a in client.list_artifacts(page.group(2), "drift")}
    plot_path = "drift/drift-over-time.png"
    assert listed == {page.group(3), "drift/columns.json", plot_path}
    run = client.get_run(page.group(2))
    assert run.info.experiment_id == page.group(1)

    # The drift-over-time plot: a PNG with the check's run, embedded in the summary by the
    # URL the tracking server serves it from, drawn from both checks (each run keeps its
    # per-column results for the next check to read back).
    assert drifted.plot_uri == f"{run.info.artifact_uri}/{plot_path}"
    png = Path(client.download_artifacts(page.group(2), plot_path, str(tmp_path)))
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    image = MlflowLinks.of(ChassisSettings()).artifact_file(page.group(2), plot_path)
    assert f"![Drift of test-blobs over time]({image})" in summary
    assert drifted.plot_url and f"[The plot in MLflow]({drifted.plot_url})" in summary
    history = Tracking.from_settings(ChassisSettings()).monitoring_history(MODEL, 30)
    assert [r.params["verdict"] for r in history] == ["no-drift", "drift"]
    assert all(len(r.columns or []) == 4 for r in history)

    # The Pushgateway holds the model's latest judged check, as Prometheus scrapes it.
    assert drifted.metrics_pushed
    assert pushed_samples(push_url, "chassis_drift_detected") == {group: 1.0}
    assert pushed_samples(push_url, "chassis_drift_share_ratio") == {
        group: pytest.approx(drifted.drifted_share)
    }
    (checked_at,) = pushed_samples(push_url, "chassis_drift_check_timestamp_seconds").values()
    assert checked_at == pytest.approx(datetime.fromisoformat(drifted.window_end).timestamp())

    # Clients' labels: 150 calm rows answered, 120 of them labelled with another class than
    # the one predicted. The check judges live accuracy against v1's accuracy gate and
    # emits the accuracy event.
    since = datetime.now(UTC)
    rows = specs.blob_traffic(3)[:150].tolist()
    url = f"{logging_gateway.url}/v1/models/{MODEL}"
    answer = httpx.post(f"{url}/predict", json={"instances": rows}, timeout=30).json()
    labels = [(p + 1) % 3 if n < 120 else p for n, p in enumerate(answer["predictions"])]
    items = [{"id": i, "label": label} for i, label in zip(answer["ids"], labels, strict=True)]
    sent = httpx.post(f"{url}/feedback", json={"feedback": items}, timeout=30)
    assert sent.json()["accepted"] == 150, sent.text
    wait_until_feedback_logged(ChassisSettings(home=logging_gateway.home), 150)
    judged = drift_check(model_name=MODEL, since=since)
    [live] = judged.live_accuracy
    assert (live.version, live.rows, live.correct, live.verdict) == (1, 150, 30, "below-gate")
    assert live.gate == float(home_registry().version_tags(MODEL, 1)[tags.TAG_ACCURACY_GATE])
    assert judged.accuracy_event_emitted and judged.verdict == "no-drift"
    table = latest_artifact("live-accuracy-test-blobs").description or ""
    assert "v1: live accuracy 20.0% on 150 feedback rows" in table, table


def wait_until_feedback_logged(settings: ChassisSettings, rows: int) -> None:
    store = BlobStore(settings, settings.resolved_prediction_log_root())
    deadline = time.monotonic() + 30
    now = datetime.now(UTC)
    while (
        len(read_feedback(store, MODEL, now - timedelta(hours=1), now + timedelta(hours=1)).frame)
        < rows
    ):
        assert time.monotonic() < deadline, "the gateway did not write its feedback in 30 s"
        time.sleep(0.2)


def test_an_empty_window_is_a_data_quality_failure_never_no_drift(logging_gateway):
    with pytest.raises(DataQualityFailure, match="the window has no rows"):
        drift_check(model_name=MODEL, window_minutes=5)
    summary = latest_artifact("drift-summary-test-blobs").data
    assert "**data-quality failure: the window is unusable, drift not judged**" in summary
    assert "- the window has no rows" in summary


def test_a_champion_without_a_reference_snapshot_is_an_error_never_no_drift(chassis_home):
    release(spec="tests.fixtures.specs:good", compression="off")
    # As if v1 had been registered by another tool: its reference snapshot is not there.
    location = home_registry().version_artifact_uri(MODEL, 1)
    snapshot = Path(urlparse(location).path) / tags.REFERENCE_FILE
    assert snapshot.exists()
    snapshot.unlink()
    with pytest.raises(DriftInputError, match="v1 has no reference snapshot"):
        drift_check(model_name=MODEL, window_minutes=10)


def test_a_prediction_log_with_another_schema_is_an_error_never_no_drift(chassis_home):
    release(spec="tests.fixtures.specs:good", compression="off")
    settings = ChassisSettings()
    # A log written for another model's columns lands under this model's name.
    foreign = pd.DataFrame(specs.blob_traffic(seed=1), columns=["x0", "x1", "x2", "x3"])
    foreign["served_at"] = pd.Timestamp.now(tz="UTC")
    day = foreign["served_at"].iloc[0]
    BlobStore(settings, settings.resolved_prediction_log_root()).write(
        f"{MODEL}/date={day:%Y-%m-%d}/{day:%H%M%S}-foreign.parquet", foreign.to_parquet()
    )
    with pytest.raises(DriftInputError, match="missing column"):
        drift_check(model_name=MODEL, window_minutes=10)


def test_a_window_within_the_serving_suite_passes_it_and_the_result_is_recorded(
    suite_gateway, monkeypatch
):
    # A plot that cannot be drawn is a warning: the check and its verdict stand.
    def broken(*args, **kwargs):
        raise RuntimeError("no plot today")

    monkeypatch.setattr(tasks.monitoring, "drift_figure", broken)
    # A Pushgateway that does not answer is a warning too.
    monkeypatch.setenv("CHASSIS_PUSHGATEWAY_URL", f"http://127.0.0.1:{free_port()}")
    send(suite_gateway, specs.blob_traffic(1))
    calm = drift_check(model_name=MODEL, window_minutes=10)
    assert calm.verdict == "no-drift"
    assert calm.plot_uri is None and calm.report_uri
    assert not calm.metrics_pushed
    assert "## Over time" not in latest_artifact("drift-summary-test-blobs").data
    assert calm.serving_suite == "passed (test-blobs.serving, 10 expectations)"
    assert calm.serving_suite_failures == []
    assert (
        "Suite `test-blobs.serving`: **passed**" in latest_artifact("serving-suite-test-blobs").data
    )
    assert "passed (test-blobs.serving" in latest_artifact("drift-summary-test-blobs").data


def test_a_window_that_breaks_the_serving_suite_is_a_data_quality_failure_not_drift(
    suite_gateway,
):
    send(suite_gateway, specs.blob_traffic(1))
    # Half the window ten times too large: outside the suite's range (a unit change upstream).
    send(suite_gateway, specs.blob_traffic(2) * 10)
    with pytest.raises(
        DataQualityFailure,
        match=r"the window failed suite 'test-blobs.serving' \(4 of 10 expectations\): "
        r"expect_column_values_to_be_between\(f0\)",
    ):
        drift_check(model_name=MODEL, window_minutes=10)
    summary = latest_artifact("drift-summary-test-blobs").data
    assert "**data-quality failure: the window is unusable, drift not judged**" in summary
    assert "FAILED (test-blobs.serving, 4 of 10 expectations): data-quality failure" in summary
    assert (
        "- serving suite `test-blobs.serving`: **FAILED**, 4 of 10 expectations "
        "(a data-quality failure: drift not judged)\n  - expect_column_values_to_be_between(f"
    ) in summary
    assert "FAILED (4 failing)" in latest_artifact("serving-suite-test-blobs").data

    # The policy decides: with warn the failure is recorded and drift is judged all the same.
    warned = drift_check(
        model_name=MODEL, window_minutes=10, policy=DriftPolicy(serving_suite="warn"), emit=False
    )
    assert warned.verdict == "drift"
    assert warned.serving_suite == "FAILED (test-blobs.serving, 4 of 10 expectations): warning"
    assert len(warned.serving_suite_failures) == 4
    assert all(
        f.startswith("expect_column_values_to_be_between(f") for f in warned.serving_suite_failures
    )
    # Filed under data quality, named, with what failed; not beside the non-finite values.
    summary = latest_artifact("drift-summary-test-blobs").data
    quality = summary.split("## Data quality\n", 1)[1].split("\n\n", 1)[0]
    assert (
        "- serving suite `test-blobs.serving`: **FAILED**, 4 of 10 expectations "
        "(policy serving_suite=warn: recorded, drift judged anyway)"
    ) in quality
    assert quality.count("  - expect_column_values_to_be_between(f") == 4
    left_out = summary.split("## Left out of the distribution test", 1)[1]
    assert "test-blobs.serving" not in left_out
