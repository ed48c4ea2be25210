"""`chassis ui`: the Prefect UI and the MLflow UI over the same local state, until Ctrl-C."""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chassis.errors import ChassisError
from chassis_cli.context import Context
from chassis_cli.webhook_relay import mlflow_server_webhook_env

if TYPE_CHECKING:  # pydantic-settings is not needed for `chassis --help`
    from chassis.settings import ChassisSettings


def add_ui_parser(commands: Any) -> None:
    ui = commands.add_parser(
        "ui",
        help="start the Prefect UI and the MLflow UI on loopback",
        description="Serve the Prefect UI and the MLflow UI over Chassis's local state until "
        "Ctrl-C, so the runs and versions `chassis release` made are visible.",
    )
    ui.set_defaults(handler=run_ui)


def run_ui(args: argparse.Namespace, context: Context) -> int:
    return serve_uis(context.prepare())


def executable(name: str) -> str:
    beside_python = Path(sys.executable).with_name(name)
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if not found:
        raise ChassisError(f"{name!r} is not installed in this environment")
    return found


def wait_healthy(url: str, process: subprocess.Popen[bytes], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def start_webhook_relay(
    settings: "ChassisSettings", env: dict[str, str]
) -> subprocess.Popen[bytes] | None:
    """`chassis webhook-relay` beside the two UIs, so a challenger set in the MLflow UI
    starts its rollout at once. Optional: without it `registry-watch` still polls."""
    relay_env = {**env, "PREFECT_API_URL": f"{settings.prefect_ui_url()}/api"}
    command = [sys.executable, "-m", "chassis_cli.main", "webhook-relay"]
    process = subprocess.Popen(command, env=relay_env)
    health = f"http://{settings.webhook_relay_host}:{settings.webhook_relay_port}/healthz"
    if wait_healthy(health, process, seconds=60):
        print(f"Webhook relay: {settings.resolved_webhook_relay_url()}", flush=True)
        return process
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)
    print(
        "Webhook relay did not start (see above); registry-watch still polls every minute.",
        flush=True,
    )
    return None


def stop_on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve_uis(settings: "ChassisSettings") -> int:
    # Ctrl-C and SIGTERM (systemd, `docker stop`) both stop every server. SIGINT is set
    # explicitly: a process started in the background by a shell inherits it ignored.
    signal.signal(signal.SIGINT, stop_on_signal)
    signal.signal(signal.SIGTERM, stop_on_signal)
    # The MLflow server delivers webhooks to the relay, which inherits the same key.
    env = {**mlflow_server_webhook_env(settings), **os.environ}
    env.pop("PREFECT_API_URL", None)  # this process *is* the server
    host = settings.ui_host
    commands: dict[str, tuple[list[str], str]] = {
        "Prefect UI": (
            [
                executable("prefect"),
                "server",
                "start",
                "--host",
                host,
                "--port",
                str(settings.prefect_ui_port),
            ],
            f"{settings.prefect_ui_url()}/api/health",
        ),
    }
    tracking_uri = settings.resolved_tracking_uri()
    if not tracking_uri.startswith(("http://", "https://")):
        artifact_root = settings.resolved_artifact_root()
        assert artifact_root is not None  # None only for a remote tracking server
        commands["MLflow UI"] = (
            [
                executable("mlflow"),
                "server",
                "--backend-store-uri",
                tracking_uri,
                "--registry-store-uri",
                settings.resolved_registry_uri(),
                "--default-artifact-root",
                artifact_root,
                "--host",
                host,
                "--port",
                str(settings.mlflow_ui_port),
                "--workers",
                "1",
            ],
            f"{settings.mlflow_ui_url()}/health",
        )
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, (command, _) in commands.items():
            processes[name] = subprocess.Popen(command, env=env)
        for name, (_, health) in commands.items():
            if not wait_healthy(health, processes[name], seconds=120):
                raise ChassisError(f"{name} did not become healthy at {health}")
        print(f"Prefect UI: {settings.prefect_ui_url()}", flush=True)
        if "MLflow UI" in processes:
            print(f"MLflow UI:  {settings.mlflow_ui_url()}", flush=True)
            relay = start_webhook_relay(settings, env)
            if relay is not None:
                processes["webhook relay"] = relay
        else:
            print(f"MLflow UI:  {settings.mlflow_ui_url()} (remote tracking server)", flush=True)
        print("Ctrl-C stops them all.", flush=True)
        while all(p.poll() is None for p in processes.values()):
            time.sleep(1)
        stopped = [n for n, p in processes.items() if p.poll() is not None]
        raise ChassisError(f"{', '.join(stopped)} stopped unexpectedly")
    except KeyboardInterrupt:
        return 0
    finally:
        for process in processes.values():
            if process.poll() is None:
                # SIGTERM, not SIGINT: the servers shut down gracefully on it, and a child
                # may have inherited SIGINT ignored.
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
