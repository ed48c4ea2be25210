"""The drift_check flow with policy streamed: a real gateway's prediction log judged from
per-column sketches gives the verdicts the Evidently check gives on the same window, also
when its files are summarized in parts by other processes."""

import asyncio
from datetime import UTC, datetime
from uuid import UUID

import numpy as np
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterName,
)
from prefect.task_runners import ProcessPoolTaskRunner

from chassis.drift import DriftPolicy
from chassis.modelspec import Dataset
from chassis.serving.prediction_log import PredictionLogger
from chassis.settings import ChassisSettings
from chassis.storage import BlobStore
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


@pytest.fixture
def released(chassis_home):
    release(spec="tests.integration.test_drift_streamed_flow:large", compression="off")
    return chassis_home


def write_log(rows: np.ndarray, files: int) -> None:
    """`rows` as the gateway writes its log (champion v1), in `files` files."""
    settings = ChassisSettings()
    store = BlobStore(settings, settings.resolved_prediction_log_root())
    features = [c for c in specs.blobs().columns if c != "label"]
    logger = PredictionLogger(MODEL, features, store.write)
    for part in np.array_split(rows, files):
        logger.record(1, part, np.zeros(len(part), dtype=np.int64))
        logger.flush()


async def task_runs_named(flow_run_id: UUID, name: str) -> int:
    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=name)),
        )
    return len(runs)


def test_a_window_summarized_in_parts_by_other_processes_gives_the_one_part_verdict(released):
    # The parts run in a process pool: what a Dask or Ray task runner would do with them
    # (their summaries cross a process boundary); those runners need a cluster, this does not.
    since = datetime.now(UTC)
    rng = np.random.default_rng(4)
    traffic = apply_drift(specs.blob_traffic(3, rows=900), "shift")
    write_log(traffic[rng.permutation(len(traffic))], files=5)
    one = drift_check(
        model_name=MODEL, since=since, policy=DriftPolicy(streamed=True, stream_parts=1), emit=False
    )
    # Prefect annotates task_runner with an invariant future type no concrete runner matches.
    runner = ProcessPoolTaskRunner(max_workers=2)
    in_processes = drift_check.with_options(task_runner=runner)  # pyright: ignore[reportArgumentType]
    state = in_processes(
        model_name=MODEL,
        since=since,
        policy=DriftPolicy(streamed=True, stream_parts=3),
        emit=False,
        return_state=True,
    )
    parts = state.result()
    assert parts.served_rows == one.served_rows == len(traffic)
    assert (parts.verdict, parts.drifted_columns, parts.drifted_share) == (
        one.verdict,
        one.drifted_columns,
        one.drifted_share,
    )
    assert one.verdict == "drift"
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    assert asyncio.run(task_runs_named(flow_run_id, "summarize-log-files")) == 3
