"""The closed loop without a person, on a real `prefect server` with a process worker.

What runs, all as separate processes over loopback, as after `make ui` and `make deploy`:
the Prefect server (with its trigger service), the `retrain` deployment applied from
`deployments/prefect.yaml`, a process worker, a `chassis serve` gateway with its prediction
log, and the `chassis` command for release and drift checks. The test sends traffic, runs
the drift checks, and reads the outcome through the Prefect API and the MLflow registry.
"""

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from chassis.registry import Registry
from chassis.registry.tags import TAG_PARENT_VERSION
from chassis.serving.embedded import free_port
from chassis.settings import ChassisSettings
from chassis.traffic import apply_drift, replay
from chassis_cli.webhook_relay import mlflow_server_webhook_env
from tests.fixtures import specs
from tests.fixtures.cli import chassis
from tests.fixtures.gateway import MODEL, GatewayProcess
from tests.fixtures.mlflow_server import MlflowServer
from tests.fixtures.prediction_log import logged_rows, wait_until_logged
from tests.fixtures.prefect_server import BIN, REPO, PrefectServer, ProcessWorker

DRIFT_EVENT = "chassis.model.drift-detected"
POOL = "chassis-process"


@dataclass
class Loop:
    server: PrefectServer
    gateway: GatewayProcess
    env: dict[str, str]
    home: Path
    retrain_deployment_id: str

    def chassis(
        self, *args: str, timeout: float = 300, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = chassis(*args, timeout=timeout, env={**self.env, **(env or {})})
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def send(self, rows: Any) -> None:
        settings = ChassisSettings(home=self.home)
        before = logged_rows(settings, MODEL)
        report = replay(self.gateway.url, MODEL, rows, max_requests=len(rows), max_seconds=60)
        assert report.failed == 0 and report.sent == len(rows)
        wait_until_logged(settings, MODEL, before + len(rows))  # flushed every 0.5 s here

    def retrain_runs(self) -> list[dict[str, Any]]:
        return self.server.flow_runs(self.retrain_deployment_id)

    def versions(self) -> list[int]:
        registry = registry_of(self.home)
        return registry.list_versions(MODEL)


def registry_of(home: Path) -> Registry:
    """The loop's registry, for a few reads from this process."""
    return Registry.from_settings(ChassisSettings(home=home))


def prefect_cli(*args: str, env: dict[str, str]) -> None:
    result = subprocess.run(
        [str(BIN / "prefect"), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def wait_for(what: str, probe: Callable[[], Any], seconds: float, every: float = 1.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


def cooldown_line(messages: list[str]) -> str | None:
    return next((m for m in messages if "not retraining" in m), None)


def finished(server: PrefectServer, run_id: str) -> dict[str, Any] | None:
    run = server.get(f"/flow_runs/{run_id}")
    return run if run["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} else None


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    root = tmp_path_factory.mktemp("loop")
    server = PrefectServer(root / "prefect")
    server.start()
    home = root / "chassis"
    gateway = GatewayProcess(home)  # port chosen now; started once v1 exists
    env = {
        **os.environ,
        "PREFECT_API_URL": server.api_url,
        "CHASSIS_HOME": str(home),
        "CHASSIS_PROJECT_DIR": str(REPO),
        "CHASSIS_GATEWAY_PORT": str(gateway.port),  # flows roll out through this gateway
        "CHASSIS_PREDICTION_LOG_FLUSH_SECONDS": "0.5",
    }
    gateway.extra_env = env
    # The worker's flows see the data collected since the first release (a later draw around
    # the same centers): a retraining learns a new model. On the very same data it would
    # train the same bytes again, which a release reports as no change.
    worker = ProcessWorker(POOL, {**env, specs.DATA_DRAW_ENV: "1"}, root / "worker.log")
    try:
        first = chassis(
            "release", "--spec", "tests.fixtures.specs:collected", "--compression", "off", env=env
        )
        assert first.returncode == 0, first.stdout + first.stderr
        gateway.start()
        prefect_cli("work-pool", "create", POOL, "--type", "process", "--overwrite", env=env)
        deploy = ["--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml"]
        prefect_cli(*deploy, "--name", "retrain", env=env)
        deployment = server.get("/deployments/name/retrain/retrain")
        worker.start()
        yield Loop(server, gateway, env, home, deployment["id"])
    finally:
        worker.stop()
        gateway.stop()
        server.stop()


@pytest.mark.slow
def test_drift_retrains_a_challenger_into_production_and_the_cooldown_holds(loop: Loop) -> None:
    # 1. Traffic like the training data: the check says so and fires nothing.
    loop.send(specs.blob_traffic(seed=1))
    calm = loop.chassis("drift-check", "--model", MODEL, "--window-minutes", "10")
    assert ": no drift: " in calm.stdout
    assert "event emitted" not in calm.stdout  # the check's own account: it emitted none
    # And the server holds none (step 2 checks again once a later event has been stored).
    assert loop.server.events(DRIFT_EVENT) == []
    assert loop.retrain_runs() == []

    # 2. The world shifts. From here on, users keep sending shifted rows; they also drive
    # the canary of whatever the retraining produces.
    drifted = apply_drift(specs.blob_traffic(seed=2), "shift")
    loop.send(drifted)
    stop = threading.Event()
    users = threading.Thread(
        target=replay,
        args=(loop.gateway.url, MODEL, drifted),
        kwargs={"max_requests": 10**7, "max_seconds": 1200, "concurrency": 2, "stop": stop},
        daemon=True,
    )
    try:
        check = loop.chassis("drift-check", "--model", MODEL, "--window-minutes", "10")
        assert ": drift: " in check.stdout
        events = wait_for("the drift event", lambda: loop.server.events(DRIFT_EVENT), 30)
        # One: the server stores events in the order they arrive, so one from the calm
        # check, sent before this one, would be here too.
        assert len(events) == 1, events
        assert events[0]["resource"]["prefect.resource.id"] == f"chassis.model.{MODEL}"
        assert events[0]["payload"]["champion_version"] == 1

        # The deployment trigger, not this test, creates the retraining run.
        runs = wait_for("a retrain flow run", loop.retrain_runs, 60)
        assert len(runs) == 1
        assert runs[0]["parameters"]["model_name"] == MODEL
        assert int(runs[0]["parameters"]["champion_version"]) == 1
        users.start()
        done = wait_for("the retrain run", lambda: finished(loop.server, runs[0]["id"]), 900, 3)
        assert done["state"]["type"] == "COMPLETED", loop.server.log_messages(runs[0]["id"])[-20:]
    finally:
        stop.set()
        if users.is_alive():
            users.join(timeout=30)

    # A new version was trained (v2) and compressed; the compression flow registers v3, an
    # int8 copy of v2, only when it selects one (a choice of that flow that weighs measured
    # latencies, not what this test is about). The retraining then gated what it made, set
    # it as challenger and promoted it by canary.
    versions = loop.versions()
    registry = registry_of(loop.home)
    assert versions in ([1, 2], [1, 2, 3]), versions
    if versions == [1, 2, 3]:
        assert registry.version_tags(MODEL, 3)[TAG_PARENT_VERSION] == "2"
    retrained = versions[-1]
    assert registry.current_aliases(MODEL).get("champion") == retrained
    records = registry.history(MODEL)
    # The audit trail names the retraining run that moved the aliases.
    moves: dict[tuple[str, object, object], str] = {
        (r.action, m["alias"], m["to"]): r.actor for r in records for m in r.moves
    }
    assert "via flow run" in moves[("set-challenger", "challenger", retrained)]
    assert ("promote", "champion", retrained) in moves

    # 3. Still drifted (the same world), a second event within the cooldown: a second run is
    # created and completes, and retrains nothing.
    loop.send(apply_drift(specs.blob_traffic(seed=3), "shift"))
    loop.chassis("drift-check", "--model", MODEL, "--window-minutes", "10")
    wait_for("a second drift event", lambda: len(loop.server.events(DRIFT_EVENT)) == 2, 30)
    runs = wait_for("a second retrain run", lambda: loop.retrain_runs()[1:], 60)
    done = wait_for("the second retrain run", lambda: finished(loop.server, runs[0]["id"]), 300, 2)
    assert done["state"]["type"] == "COMPLETED"
    # The run's own log lines are shipped by Prefect's background log worker, which may flush
    # them after the final state is stored: wait for them rather than read once.
    messages = wait_for(
        "the second run's cooldown log line",
        lambda: cooldown_line(loop.server.log_messages(runs[0]["id"])),
        60,
    )
    assert "not retraining" in messages and "cooldown" in messages
    assert loop.versions() == versions  # nothing registered since the first retraining


CHALLENGER_SET_EVENT = "chassis.model.challenger-set"


@pytest.mark.slow
def test_a_challenger_set_by_hand_in_mlflow_is_rolled_out_through_the_webhook(
    loop: Loop, tmp_path: Path
) -> None:
    """A person sets `challenger` in the MLflow UI (its REST API, which the UI calls): the
    MLflow server's webhook reaches `chassis webhook-relay`, the relay's Prefect event
    triggers the registry-watch deployment, and the run rolls that version out.

    The version set by hand is the champion's twin (the very model the champion was made
    from: itself, or its parent when it is a compressed copy), so the outcome is known in
    advance: its gates pass and its canary finds no difference from the champion, so it is
    promoted."""
    registry = registry_of(loop.home)
    champion = registry.current_aliases(MODEL)["champion"]
    trained, _ = registry.lineage_root(MODEL, champion)
    records_before = len(registry.history(MODEL))
    # The champion's spec trained again on the champion's data with the same seed: training
    # is deterministic, so the new version holds the trained model's very bytes. (v1 came
    # from the first release, on data draw 0; retrainings ran on the worker, on draw 1.)
    draw = "0" if trained == 1 else "1"
    loop.chassis(
        "train", "--spec", "tests.fixtures.specs:collected", env={specs.DATA_DRAW_ENV: draw}
    )
    twin = max(loop.versions())
    registry = registry_of(loop.home)
    digests = {v: registry.version_tags(MODEL, v)["chassis.onnx_sha256"] for v in (trained, twin)}
    assert twin not in (champion, trained) and digests[twin] == digests[trained], digests

    mlflow_server = MlflowServer(
        [
            "--backend-store-uri",
            f"sqlite:///{loop.home / 'mlflow.db'}",
            "--default-artifact-root",
            (loop.home / "artifacts").as_uri(),
        ],
        # As `chassis ui` starts its MLflow server, with the relay's key for this home.
        mlflow_server_webhook_env(ChassisSettings(home=loop.home), cache_seconds=1),
        tmp_path / "mlflow-server.log",
    )
    relay_port = free_port()
    relay_env = {**loop.env, "CHASSIS_WEBHOOK_RELAY_PORT": str(relay_port)}
    relay_log = (tmp_path / "relay.log").open("ab")
    relay = subprocess.Popen(
        [str(BIN / "chassis"), "webhook-relay"], env=relay_env, stdout=relay_log, stderr=relay_log
    )
    stop_users = threading.Event()
    users = threading.Thread(
        target=replay,
        args=(loop.gateway.url, MODEL, specs.blob_traffic(seed=5)),
        kwargs={"max_requests": 10**7, "max_seconds": 600, "concurrency": 2, "stop": stop_users},
        daemon=True,
    )
    try:
        prefect_cli(
            "--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml",
            "--name", "registry-watch", env=loop.env,
        )  # fmt: skip
        url = mlflow_server.start()
        wait_for("the relay", lambda: healthy(f"http://127.0.0.1:{relay_port}/healthz"), 60, 0.5)
        # The MLflow server's webhook cache (1 s here) may hold the list read before the
        # relay registered its webhook: nothing shows it has expired, so let it pass.
        time.sleep(2)
        users.start()

        response = httpx.post(
            f"{url}/api/2.0/mlflow/registered-models/alias",
            json={"name": MODEL, "alias": "challenger", "version": str(twin)},
            timeout=30,
        )
        assert response.status_code == 200, response.text

        events = wait_for("the relayed event", lambda: loop.server.events(CHALLENGER_SET_EVENT), 30)
        assert events[0]["payload"]["model_name"] == MODEL
        assert events[0]["payload"]["version"] == twin
        # The trigger, not the every-minute schedule (which watches digits-mlp), made this run.
        deployment = loop.server.get("/deployments/name/registry_watch/registry-watch")
        try:
            runs = wait_for(
                "a registry-watch run for the model",
                lambda: [
                    r
                    for r in loop.server.flow_runs(deployment["id"])
                    if r["parameters"].get("model_names") == MODEL
                ],
                60,
            )
        except AssertionError as error:
            automations = [
                (a["name"], a["trigger"].get("expect"), a["actions"])
                for a in loop.server.post("/automations/filter", {})
            ]
            body = {"filter": {"event": {"prefix": ["prefect.automation"]}}}
            fired = [
                (e["event"], e["payload"], e["resource"])
                for e in loop.server.post("/events/filter", body)["events"]
            ]
            raise AssertionError(f"{error}; automations: {automations}; fired: {fired}") from None
        assert runs[0]["created_by"]["type"] == "AUTOMATION"
        done = wait_for("the rollout run", lambda: finished(loop.server, runs[0]["id"]), 600, 2)
        messages = wait_for(
            "the run's hand-set log line",
            lambda: [m for m in loop.server.log_messages(runs[0]["id"]) if "set by hand" in m],
            60,
        )
        assert f"challenger v{twin} was set by hand" in messages[0]
    finally:
        stop_users.set()
        relay.terminate()
        relay.wait(timeout=30)
        mlflow_server.stop()
        if users.is_alive():
            users.join(timeout=30)

    # Promoted through Chassis's audited moves, and no alias is left pointing at a split.
    assert done["state"]["type"] == "COMPLETED", loop.server.log_messages(runs[0]["id"])[-20:]
    registry = registry_of(loop.home)
    aliases = registry.current_aliases(MODEL)
    new_records = registry.history(MODEL)[records_before:]
    assert registry.unaudited_challenger(MODEL) is None
    assert "challenger" not in aliases
    moved = {(r.action, m["alias"], m["to"]) for r in new_records for m in r.moves}
    assert aliases["champion"] == twin and ("promote", "champion", twin) in moved, moved


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False
