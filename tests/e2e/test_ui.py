"""`chassis ui` as a user starts it (`make ui`): both UIs and the webhook relay come up over
the local state, the MLflow webhook is registered for the relay, and Ctrl-C or SIGTERM
stops them all."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import pytest

from chassis.serving.embedded import free_port
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
