"""`chassis ui` as a user starts it (`make ui`): both UIs and the webhook relay come up over
the local state, the MLflow webhook is registered for the relay, and Ctrl-C or SIGTERM
stops them all; on other ports, a headless Chromium reads a release's runs, artifacts and
aliases from the pages."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest

from chassis.serving.embedded import free_port
from tests.fixtures.browser import CHROMIUM, MISSING, headless_chromium
from tests.fixtures.cli import chassis
from tests.fixtures.prefect_server import REPO


def wait_for_line(log: Path, text: str, process: subprocess.Popen[bytes], seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        content = log.read_text(errors="replace") if log.exists() else ""
        if text in content:
            return content
        assert process.poll() is None, f"chassis ui exited early:\n{content[-3000:]}"
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} within {seconds:.0f} s:\n{log.read_text()[-3000:]}")


def ignore_sigint() -> None:
    """What a shell does to a command it starts in the background (`chassis ui &`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.slow
@pytest.mark.parametrize(
    "stop",
    [
        pytest.param(signal.SIGINT, id="ctrl-c, started in the background"),
        pytest.param(signal.SIGTERM, id="sigterm, as systemd or docker stop"),
    ],
)
def test_chassis_ui_serves_both_uis_and_the_webhook_relay(
    tmp_path: Path, stop: signal.Signals
) -> None:
    ports = {name: free_port() for name in ("prefect", "mlflow", "relay")}
    env = {
        **os.environ,
        "CHASSIS_HOME": str(tmp_path / "chassis"),
        "CHASSIS_PREFECT_UI_PORT": str(ports["prefect"]),
        "CHASSIS_MLFLOW_UI_PORT": str(ports["mlflow"]),
        "CHASSIS_WEBHOOK_RELAY_PORT": str(ports["relay"]),
    }
    env.pop("PREFECT_API_URL", None)
    log = tmp_path / "ui.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "chassis_cli.main", "ui"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=ignore_sigint,
        )
    try:
        printed = wait_for_line(log, "Ctrl-C stops them all.", process, 240)
        relay_url = f"http://127.0.0.1:{ports['relay']}/mlflow/webhook"
        assert f"Webhook relay: {relay_url}" in printed
        assert httpx.get(f"http://127.0.0.1:{ports['prefect']}/api/health").status_code == 200
        mlflow_url = f"http://127.0.0.1:{ports['mlflow']}"
        assert httpx.get(f"{mlflow_url}/health").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{ports['relay']}/healthz").json() == {"status": "ok"}
        # The webhook the relay registered, as the MLflow server (which must sign deliveries
        # with its secret) reads it back.
        # Both URIs named: the registry URI would otherwise be this process's global one.
        client = mlflow.MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
        hooks = client.list_webhooks()
        assert [(h.name, h.url) for h in hooks] == [("chassis-relay", relay_url)]
        assert (tmp_path / "chassis" / "webhooks" / "secret").stat().st_mode & 0o077 == 0
    finally:
        process.send_signal(stop)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    # The signal stops the UIs and the relay with it: nothing keeps the ports.
    assert process.returncode == 0
    for port in ports.values():
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


@dataclass
class Release:
    """What the Prefect and MLflow APIs say a release made: what the pages must show."""

    run_id: str
    run_name: str
    subflow_names: list[str]
    artifact_keys: list[str]
    model: str
    champion: int
    source_run_name: str


@dataclass
class MlflowRun:
    name: str
    metrics: list[str]  # a few of its test-split metrics, which its page lists


def read_run(mlflow_url: str, run_id: str) -> MlflowRun:
    answer = httpx.get(f"{mlflow_url}/api/2.0/mlflow/runs/get", params={"run_id": run_id})
    answer.raise_for_status()
    run = answer.json()["run"]
    metrics = sorted(m["key"] for m in run["data"]["metrics"] if m["key"].startswith("test_"))
    return MlflowRun(run["info"]["run_name"], metrics[:2])


def read_release(prefect_api: str, mlflow_url: str, model: str) -> Release:
    def prefect(path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        answer = httpx.post(f"{prefect_api}{path}", json=body, timeout=30)
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()
        return found

    def mlflow_get(path: str, **params: str) -> dict[str, Any]:
        answer = httpx.get(f"{mlflow_url}/api/2.0/mlflow/{path}", params=params, timeout=30)
        answer.raise_for_status()
        found: dict[str, Any] = answer.json()
        return found

    top = {"parent_task_run_id": {"is_null_": True}}
    [run] = prefect(
        "/flow_runs/filter", {"flows": {"name": {"any_": ["release"]}}, "flow_runs": top}
    )
    children = {"parent_flow_run_id": {"any_": [run["id"]]}}
    subflows = prefect("/flow_runs/filter", {"flow_runs": children})
    artifacts = prefect("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}})
    # The run's own artifacts: those its tasks made are listed further down the same tab.
    keys = [a["key"] for a in artifacts if a["key"] and a["task_run_id"] is None]
    aliases = mlflow_get("registered-models/get", name=model)["registered_model"]["aliases"]
    champion = next(int(a["version"]) for a in aliases if a["alias"] == "champion")
    version = mlflow_get("model-versions/get", name=model, version=str(champion))
    source = mlflow_get("runs/get", run_id=version["model_version"]["run_id"])
    return Release(
        run_id=run["id"],
        run_name=run["name"],
        subflow_names=[s["name"] for s in subflows],
        artifact_keys=keys,
        model=model,
        champion=champion,
        source_run_name=source["run"]["info"]["run_name"],
    )


# What MLflow's GenAI view shows of an experiment or run, and its machine-learning view not.
GENAI_VIEW_TEXTS = ("Token Usage", "Evaluation runs", "Sessions")


def assert_machine_learning_view(shown: str) -> None:
    assert not [text for text in GENAI_VIEW_TEXTS if text in shown], shown[:3000]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason=MISSING)
def test_the_uis_on_other_ports_show_a_releases_runs_artifacts_and_aliases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 6 of issue 14: after a release, a browser opens the Prefect flow-run page and the
    MLflow model pages of `chassis ui` started on ports that are not the defaults (where the
    Prefect UI used to call its API on :4200 and showed "Can't connect to Server API"), and
    reads the runs, artifacts and aliases from the DOM. The release runs in another process
    told nothing of those ports: it finds both servers through `chassis ui`'s record, and
    every MLflow link it gives opens the machine-learning view on the port in use (MLflow
    3's UI otherwise opens the experiment in its GenAI view, traces and token usage)."""
    ports = {name: free_port() for name in ("prefect", "mlflow", "relay")}
    home = tmp_path / "chassis"
    # The release below is told where the UIs are by nothing but the record.
    for name in ("PREFECT_API_URL", "PREFECT_UI_URL", "CHASSIS_PREFECT_UI_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("CHASSIS_MLFLOW_UI_PORT", raising=False)
    env = {**os.environ, "CHASSIS_HOME": str(home)}
    log = tmp_path / "ui.log"
    options = ["--prefect-port", str(ports["prefect"]), "--mlflow-port", str(ports["mlflow"])]
    options += ["--relay-port", str(ports["relay"])]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "chassis_cli.main", "ui", *options],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    prefect_url = f"http://127.0.0.1:{ports['prefect']}"
    mlflow_url = f"http://127.0.0.1:{ports['mlflow']}"
    shots = Path(os.environ.get("UI_SCREENSHOTS_DIR") or tmp_path / "screenshots")
    try:
        printed = wait_for_line(log, "Ctrl-C stops them all.", process, 240)
        api = f"{prefect_url}/api"
        assert f"Prefect UI: {prefect_url} (the browser calls its API at {api})" in printed
        assert f"MLflow UI:  {mlflow_url}" in printed
        # The ports were options: other processes over this home find them in its record.
        record = json.loads((home / "ui.json").read_text())
        assert record == {
            "pid": process.pid,
            "prefect_ui_url": prefect_url,
            "prefect_api_url": api,
            "mlflow_ui_url": mlflow_url,
        }
        assert f"their addresses are in {home / 'ui.json'}" in printed
        # What the browser is told, before any browser asks.
        assert httpx.get(f"{prefect_url}/ui-settings").json()["api_url"] == api

        # The fastest release the suite has, in another process that knows only the home.
        spec = ["--spec", "tests.fixtures.specs:collected", "--compression", "off", "--json"]
        result = chassis("release", *spec, timeout=600, env={"CHASSIS_HOME": str(home)})
        assert result.returncode == 0, result.stdout + result.stderr
        document = json.loads(result.stdout)
        # Reported live to this Prefect server (read_release finds it there), linked there.
        release = read_release(api, mlflow_url, "test-blobs")
        assert release.subflow_names and release.artifact_keys, release
        assert document["prefect_flow_run_url"] == f"{prefect_url}/runs/flow-run/{release.run_id}"
        training = document["training"]
        pages = ("mlflow_experiment_url", "mlflow_run_url", "mlflow_version_url")
        links = {page: training[page] for page in pages}
        for link in links.values():
            assert link.startswith(f"{mlflow_url}/#/"), links
            assert link.endswith("?workflowType=machine_learning"), links
        training_run = read_run(mlflow_url, training["run_id"])
        assert training_run.metrics, training_run

        with headless_chromium() as page:
            page.open(f"{prefect_url}/runs/flow-run/{release.run_id}")
            page.wait_for_text([release.run_name, "Completed"])
            page.select_tab("Subflow Runs")
            page.wait_for_text(release.subflow_names)
            page.select_tab("Artifacts")
            page.wait_for_text(release.artifact_keys)
            page.screenshot(shots / "prefect-flow-run.png")

            # The experiment through Chassis's link: its runs table, not the GenAI overview.
            page.open(links["mlflow_experiment_url"])
            shown = page.wait_for_text(["Run Name", training_run.name, "matching run"])
            assert_machine_learning_view(shown)
            page.screenshot(shots / "mlflow-experiment.png")

            # The training run through Chassis's link: its metrics, under "Runs".
            page.open(links["mlflow_run_url"])
            shown = page.wait_for_text([training_run.name, "Metrics", *training_run.metrics])
            assert_machine_learning_view(shown)
            page.screenshot(shots / "mlflow-run.png")

            page.open(f"{mlflow_url}/#/models/{release.model}")
            page.wait_for_text([release.model, f"Version {release.champion}", "@ champion"])
            # The alias is on its version's row of the versions table.
            rows = page.row_texts()
            assert any(
                row.startswith(f"Version {release.champion} ") and "@ champion" in row
                for row in rows
            ), rows
            page.screenshot(shots / "mlflow-model.png")

            page.open(links["mlflow_version_url"])
            shown = page.wait_for_text(["Source Run", release.source_run_name, "@ champion"])
            assert "Can't connect" not in shown
            assert_machine_learning_view(shown)
            page.screenshot(shots / "mlflow-version.png")
            # Everything the pages loaded came from this machine: the UIs work offline.
            assert page.requested and page.off_loopback() == []
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0
    # Stopped, it leaves no record behind: links go back to the settings' ports.
    assert not (home / "ui.json").exists()
