"""Faults in the prediction log a scheduled drift check reads, and run links off port 4200.

One champion is released for the module (a real MLflow store, the session's Prefect test
harness on a free port); each scenario writes real Parquet log files, as the gateway's
writer does, into its own log folder, and runs the real `drift_check` flow on them.
"""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from prefect.settings import PREFECT_API_URL

from chassis.errors import DataQualityFailure
from chassis.serving.prediction_log import PredictionLogger
from chassis.settings import ChassisSettings
from chassis.storage import BlobStore
from flows.monitoring import DriftOutcome, drift_check
from flows.release import ReleaseOutcome, release
from tests.fixtures import specs
from tests.fixtures.fault_report import FaultReport, ScenarioResult
from tests.fixtures.gateway import MODEL
from tests.fixtures.registries import home_registry
from tests.integration.test_training_flow import latest_artifact

SUMMARY = "drift-summary-test-blobs"


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReleaseOutcome]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHASSIS_HOME", str(tmp_path_factory.mktemp("drift-faults") / "chassis"))
        yield release(spec="tests.fixtures.specs:good", compression="off")


def today() -> str:
    return f"{MODEL}/date={datetime.now(UTC):%Y-%m-%d}"


class Log:
    """The champion's prediction log in a folder of this test's own."""

    def __init__(self, root: Path) -> None:
        self.store = BlobStore(ChassisSettings(), str(root))
        self.features = home_registry().feature_columns(MODEL, 1) or []
        self.paths: list[str] = []

    def write(self, relative: str, payload: bytes) -> None:
        self.paths.append(relative)
        self.store.write(relative, payload)

    def served(self, rows: np.ndarray) -> str:
        """One file written by the gateway's own writer; returns its relative path."""
        writer = PredictionLogger(MODEL, self.features, self.write)
        writer.record(1, rows.astype(np.float32), np.zeros(len(rows), dtype=np.int64))
        writer.flush()
        return self.paths[-1]

    def raw(self, name: str, payload: bytes) -> str:
        folder = str(Path(self.paths[-1]).parent) if self.paths else today()
        relative = f"{folder}/{name}"
        self.write(relative, payload)
        return relative

    def bytes_of(self, relative: str) -> bytes:
        return self.store.read(relative)


@pytest.fixture
def log(champion: ReleaseOutcome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Log:
    monkeypatch.setenv("CHASSIS_PREDICTION_LOG_ROOT", str(tmp_path / "log"))
    return Log(tmp_path / "log")


def check() -> DriftOutcome | Exception:
    """The scheduled check's flow; what it raised is returned, so the row is recorded
    whatever happened (a crash included) before the test asserts."""
    try:
        return drift_check(model_name=MODEL, window_minutes=10)
    except Exception as error:
        return error


def lost(result: DriftOutcome | Exception, expected: type, handled: str = "nothing") -> str:
    """The table's "lost" cell: `handled` when the check ended as the scenario expects,
    else what went wrong (a verdict on unusable data, or a crash)."""
    if isinstance(result, expected):
        return handled
    if isinstance(result, DriftOutcome):
        return f"unusable data judged {result.verdict!r}"
    return f"check crashed: {type(result).__name__}"


def record(report: FaultReport, scenario: str, lost: str) -> None:
    report.add(
        ScenarioResult(
            scenario=scenario,
            sent=0,
            answered=0,
            good_failed=0,
            alias_matches_served=None,
            unvalidated_served=0,
            lost=lost,
        )
    )


def skipped_paths(outcome: DriftOutcome) -> list[str]:
    return [s.split(" (")[0] for s in outcome.skipped_files]


def test_infinite_values_beyond_the_allowed_share_fail_quality_not_no_drift(log, fault_report):
    log.served(specs.blob_traffic(1))
    spiked = specs.blob_traffic(2)
    spiked[:20, 1], spiked[20:30, 1] = np.inf, -np.inf  # 30 of 600 window values of f1
    log.served(spiked)
    result = check()
    record(fault_report, "prediction log with infinite values", lost(result, DataQualityFailure))
    assert isinstance(result, DataQualityFailure), result  # before: a verdict on the rest
    column = log.features[1]
    assert f"column {column!r} has 30 infinite value(s), 5.0% " in str(result)
    assert "(0 null, 20 +inf, 10 -inf of 600 rows; limit 0.0%)" in str(result)
    summary = latest_artifact(SUMMARY).data
    assert "**data-quality failure: the window is unusable" in summary
    assert f"- column {column!r} has 30 infinite value(s)" in summary.split("## Data quality")[1]


def test_an_all_infinite_column_is_named_as_such_not_a_value_error(log, fault_report):
    rows = specs.blob_traffic(1)
    rows[:, 2] = np.where(np.arange(len(rows)) % 2, np.inf, -np.inf)
    log.served(rows)
    result = check()
    record(
        fault_report, "prediction log with an all-infinite column", lost(result, DataQualityFailure)
    )
    assert isinstance(result, DataQualityFailure), result  # before: Evidently's ValueError
    assert (
        f"column {log.features[2]!r} is entirely infinite (0 null, 150 +inf, 150 -inf of 300 rows)"
    ) in str(result)


def test_a_corrupt_file_is_skipped_reported_and_the_rest_judged(log, fault_report):
    log.served(specs.blob_traffic(1))
    corrupt = log.raw("corrupt.parquet", np.random.default_rng(7).bytes(8192))
    outcome = check()
    record(
        fault_report,
        "corrupt prediction-log file (random bytes)",
        lost(outcome, DriftOutcome, "1 corrupt file skipped (reported)"),
    )
    assert isinstance(outcome, DriftOutcome), outcome  # before: ArrowInvalid ended the check
    assert outcome.verdict == "no-drift" and outcome.served_rows == 300
    assert skipped_paths(outcome) == [corrupt]
    assert "ArrowInvalid" in outcome.skipped_files[0]
    summary = latest_artifact(SUMMARY).data
    assert "**no drift: " in summary
    assert f"1 unreadable prediction-log file(s) skipped: {corrupt} (ArrowInvalid: " in summary


def test_a_truncated_file_is_skipped_reported_and_the_rest_judged(log, fault_report):
    log.served(specs.blob_traffic(1))
    payload = log.bytes_of(log.served(specs.blob_traffic(2)))
    truncated = log.raw("truncated.parquet", payload[: len(payload) * 2 // 3])
    outcome = check()
    record(
        fault_report,
        "truncated prediction-log file",
        lost(outcome, DriftOutcome, "1 truncated file skipped (reported)"),
    )
    assert isinstance(outcome, DriftOutcome), outcome
    # Both whole files (600 rows) are judged; only the truncated copy is left out.
    assert outcome.verdict == "no-drift" and outcome.served_rows == 600
    assert skipped_paths(outcome) == [truncated]
    summary = latest_artifact(SUMMARY).data
    assert f"1 unreadable prediction-log file(s) skipped: {truncated}" in summary


def test_no_readable_file_is_a_failure_naming_every_file(log, fault_report):
    payload = log.bytes_of(log.served(specs.blob_traffic(1)))
    truncated = log.raw("truncated.parquet", payload[:100])
    corrupt = log.raw("corrupt.parquet", np.random.default_rng(8).bytes(1024))
    (Path(log.store.root) / log.paths[0]).unlink()  # only the bad files are left
    result = check()
    record(
        fault_report,
        "prediction log with no readable file",
        lost(result, DataQualityFailure, "2 unreadable files skipped (reported); no verdict"),
    )
    assert isinstance(result, DataQualityFailure), result
    message = str(result)
    assert "the window has no rows: 2 prediction-log file(s) in it could not be read: " in message
    assert f"{corrupt} (ArrowInvalid: " in message and f"{truncated} (ArrowInvalid: " in message
    assert "**data-quality failure: the window is unusable" in latest_artifact(SUMMARY).data


def test_audit_links_name_the_prefect_server_in_use_not_port_4200(champion, fault_report):
    harness = urlparse(PREFECT_API_URL.value())
    audit = home_registry().history(MODEL)[-1]
    link = audit.evidence["flow_run"]
    record(fault_report, "Prefect API on a non-default port (audit link)", "nothing")
    assert harness.port != 4200
    assert urlparse(link).netloc == harness.netloc
    assert link == champion.prefect_flow_run_url
    assert link.startswith(f"http://{harness.netloc}/runs/flow-run/")
