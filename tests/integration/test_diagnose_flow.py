"""The diagnose flow against a real gateway process, the session's Prefect API and a real
MLflow store: a healthy model is found healthy on every branch; a replica that does not
answer fails the base-services branch and the walk stops there; an alert about a model the
registry does not know is diagnosed as such, with nothing done; out-of-range traffic
switches the gateway's sanitization on (it then clips and fills) and a clean window
switches it off again; under the local supervisor (`chassis serve --replicas 2`) a replica
alive but not ready is restarted, one killed comes back by itself, and SIGTERM stops them
all."""

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from chassis.diagnosis.data_checks import RANGE_CHECK
from chassis.diagnosis.policy import DiagnosisPolicy
from chassis.diagnosis.recovery import AUTOMATIC_FALLBACK
from chassis.errors import RecoveryFailed
from chassis.sanitization import SANITIZATION_OFF, SANITIZATION_ON
from chassis.serving.client import GatewayClient
from chassis.serving.embedded import free_port
from chassis.settings import ChassisSettings
from chassis.traffic import replay
from flows.diagnose import diagnose
from flows.promotion import promote
from flows.release import release
from tests.fixtures.cli import chassis_in_process
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


def predict(url: str, rows: Sequence[Sequence[float | None]]) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/{MODEL}/predict", json={"instances": rows}, timeout=30)


@contextlib.contextmanager
def sending(url: str, rows: list[list[float]]) -> Iterator[None]:
    """`rows` sent over and over, two at a time, while the block runs."""
    stop = threading.Event()
    sender = threading.Thread(
        target=replay,
        args=(url, MODEL, rows),
        kwargs={"max_requests": 100_000, "max_seconds": 120, "stop": stop, "concurrency": 2},
    )
    sender.start()
    try:
        yield
    finally:
        stop.set()
        sender.join(timeout=30)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within 60 s"
        time.sleep(0.2)


def logged_frames(gateway: GatewayProcess) -> dict[Path, pd.DataFrame]:
    return {p: pd.read_parquet(p) for p in (gateway.home / "predictions").rglob("*.parquet")}


def test_a_healthy_model_is_found_healthy_then_bad_rows_switch_sanitization_on_till_clean(
    served, tmp_path
):
    rows = reference_rows(tmp_path)
    with sending(served.url, rows):
        # Served rows reach the prediction log before the data branch reads it.
        wait_for(lambda: bool(logged_frames(served)), "prediction-log file")
        outcome = diagnose(model_name=MODEL, policy=QUICK)
    assert outcome.failing_branch is None, outcome.failing_checks
    assert outcome.summary == f"{MODEL}: nothing wrong found (4 branches walked)"
    assert outcome.report_uri is not None and outcome.report_uri.endswith("diagnosis/report.md")
    report = latest_artifact(f"diagnosis-{MODEL}").data
    for heading in ("base services: healthy", "model performance: healthy"):
        assert heading in report
    assert "v1 server-error ratio" in report and "values within the reference's ranges" in report

    # Then the source sends rows far out of range: sanitization is switched on, the gateway
    # clips, and a later clean window switches it off again (one release for both stories).
    registry = home_registry()
    features = registry.feature_columns(MODEL, 1) or []
    clean = rows
    high = max(max(row) for row in clean)
    bad = [[high * 10 + 100, *row[1:]] for row in clean]  # the first feature far out of range
    client = GatewayClient(served.url, ChassisSettings().admin_token())
    # While sanitization is off a null is refused, as it always was.
    assert predict(served.url, [[None, *clean[0][1:]]]).status_code == 422

    # Traffic flows while the diagnosis watches it (the model branch judges it healthy).
    with sending(served.url, bad):
        wait_for(
            lambda: any((f[features[0]] > high).any() for f in logged_frames(served).values()),
            "prediction-log file with the bad rows",
        )
        switched_on = diagnose(model_name=MODEL, policy=QUICK)
    assert switched_on.failing_branch == "data", switched_on.failing_checks
    assert switched_on.recovery == "sanitize", switched_on.recovery_explanation
    assert switched_on.replicas_following == [served.url]
    assert switched_on.sanitization == "clip (4 features from v1's reference)"
    setting = registry.read_sanitization(MODEL)
    assert setting is not None and setting.mode == "clip" and setting.features == features
    record = registry.history(MODEL)[-1]
    assert record.action == SANITIZATION_ON and record.reason.startswith("clip")
    assert RANGE_CHECK in record.evidence and record.moves == []
    assert client.status(MODEL)["sanitization"] == switched_on.sanitization

    # The gateway clips and fills: an out-of-range row is answered as its clipped row, a
    # row with a null as the row filled with the reference's median.
    low, top, fill = (
        np.asarray(v, dtype=np.float32) for v in (setting.low, setting.high, setting.fill)
    )
    clipped = np.clip(np.asarray(bad[:20], dtype=np.float32), low, top).tolist()
    answered = predict(served.url, bad[:20]).json()["predictions"]
    assert answered == predict(served.url, clipped).json()["predictions"]
    filled = predict(served.url, [[None, *clean[0][1:]]])
    assert filled.status_code == 200, filled.text
    by_hand = predict(served.url, [[float(fill[0]), *clean[0][1:]]]).json()["predictions"]
    assert filled.json()["predictions"] == by_hand
    metrics = client.metrics()
    first = features[0]
    series = f'chassis_sanitized_values_total{{action="clipped",feature="{first}",model="{MODEL}"}}'
    clipped_count = re.search(rf"{re.escape(series)} (\S+)", metrics)
    assert clipped_count is not None and float(clipped_count.group(1)) >= 20
    assert (
        f'chassis_sanitized_values_total{{action="filled",feature="{first}",model="{MODEL}"}} 1.0'
        in metrics
    )
    assert f'chassis_sanitization_on{{mode="clip",model="{MODEL}"}} 1.0' in metrics

    # The source is clean again. The next window holds clean rows only: the files with
    # bad rows are removed as the passing of the window would, until two looks a second
    # apart (two flushes of the log each) find none written since: every bad row queued
    # before the clean ones has reached a file by then, and been removed.
    def remove_bad_files() -> int:
        # Bad: a null, or the far value (the log keeps float32: a clean row's maximum may
        # read a hair above the reference's float64 one, so compare with a margin).
        bad_files = [
            path
            for path, frame in logged_frames(served).items()
            if frame[features].isna().any(axis=None) or (frame[first] > high + 1).any()
        ]
        for path in bad_files:
            path.unlink()
        return len(bad_files)

    with sending(served.url, clean):
        clean_looks = 0
        deadline = time.monotonic() + 60
        while clean_looks < 2 or not logged_frames(served):
            assert time.monotonic() < deadline, "bad rows still reach the log after 60 s"
            clean_looks = 0 if remove_bad_files() else clean_looks + 1
            time.sleep(1.0)  # a look every second: two flushes of the log in between
        switched_off = diagnose(model_name=MODEL, policy=QUICK)
    assert switched_off.failing_branch is None, switched_off.failing_checks
    assert switched_off.recovery == "unsanitize", switched_off.recovery_explanation
    assert switched_off.sanitization == "off"
    assert registry.history(MODEL)[-1].action == SANITIZATION_OFF
    assert client.status(MODEL)["sanitization"] == "off"
    assert predict(served.url, [[None, *clean[0][1:]]]).status_code == 422

    # By hand: the CLI shows it, refuses a model the registry does not know (nothing
    # written), and writes nothing when asked for what is already set.
    code, _, stderr = chassis_in_process("sanitize", "--model", "ghost", "--mode", "clip")
    assert (code, stderr.strip()) == (1, "error: no registered model named 'ghost'")
    trail = len(registry.history(MODEL))
    code, stdout, _ = chassis_in_process("sanitize", "--model", MODEL, "--mode", "off")
    assert code == 0 and "off (already so: nothing written)" in stdout
    assert len(registry.history(MODEL)) == trail


def test_a_champion_surely_below_its_accuracy_gate_on_live_feedback_fails_the_model_branch(
    served, tmp_path
):
    rows = (reference_rows(tmp_path) * 10)[:200]  # the reference holds fewer
    answer = httpx.post(
        f"{served.url}/v1/models/{MODEL}/predict", json={"instances": rows}, timeout=30
    ).json()
    # Every label says the answer was wrong: live accuracy 0 % on 200 rows.
    wrong = [
        {"id": i, "label": 0 if p != 0 else 1}
        for i, p in zip(answer["ids"], answer["predictions"], strict=True)
    ]
    sent = httpx.post(
        f"{served.url}/v1/models/{MODEL}/feedback", json={"feedback": wrong}, timeout=30
    )
    assert sent.status_code == 200, sent.text
    # The champion is at fault and there is no @previous: the run fails saying so.
    with pytest.raises(RecoveryFailed, match="no @previous"):
        diagnose(model_name=MODEL, policy=QUICK)
    report = latest_artifact(f"diagnosis-{MODEL}").data
    assert "## model performance: failing" in report
    assert "| v1 live accuracy | FAILING | 0.0% of 200 feedback rows" in report
    assert home_registry().current_aliases(MODEL) == {"champion": 1}  # nothing changed


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
        health = fleet.health(1)
        assert health is not None
        assert {k: v for k, v in health.items() if k != "replica"} == {
            "status": "ok",
            "pid": stuck_pid,
            "supervised": True,
            "supervised_replica": 1,
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
