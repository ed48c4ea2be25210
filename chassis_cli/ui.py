"""`chassis ui`: the Prefect UI and the MLflow UI over the same local state, until Ctrl-C."""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chassis import running_ui
from chassis.errors import ChassisError
from chassis_cli.argtypes import port
from chassis_cli.context import Context, UsageError
from chassis_cli.webhook_relay import mlflow_server_webhook_env

if TYPE_CHECKING:  # pydantic-settings is not needed for `chassis --help`
    from chassis.settings import ChassisSettings


def add_ui_parser(commands: Any) -> None:
    ui = commands.add_parser(
        "ui",
        help="start the Prefect UI and the MLflow UI on loopback",
        description="Serve the Prefect UI and the MLflow UI over Chassis's local state until "
        "Ctrl-C or SIGTERM, so the runs and versions `chassis release` made are visible. The "
        "Prefect UI is told where its API is (PREFECT_UI_API_URL) from the host and port "
        "chosen here; an explicit PREFECT_UI_API_URL (a proxy in front) is kept.",
    )
    ui.add_argument("--host", help="bind address of both UIs (default CHASSIS_UI_HOST, 127.0.0.1)")
    ui.add_argument(
        "--prefect-port",
        type=port,
        help="Prefect UI and API port (default CHASSIS_PREFECT_UI_PORT, 4200)",
    )
    ui.add_argument(
        "--mlflow-port", type=port, help="MLflow UI port (default CHASSIS_MLFLOW_UI_PORT, 5000)"
    )
    ui.add_argument(
        "--relay-port",
        type=port,
        help="webhook relay port (default CHASSIS_WEBHOOK_RELAY_PORT, 8788)",
    )
    ui.set_defaults(handler=run_ui)


def run_ui(args: argparse.Namespace, context: Context) -> int:
    settings = context.settings
    if args.host is not None:
        settings.ui_host = args.host
    if args.prefect_port is not None:
        settings.prefect_ui_port = args.prefect_port
    if args.mlflow_port is not None:
        settings.mlflow_ui_port = args.mlflow_port
    if args.relay_port is not None:
        settings.webhook_relay_port = args.relay_port
    if settings.prefect_ui_port == settings.mlflow_ui_port:
        raise UsageError(
            f"the Prefect UI and the MLflow UI cannot share port {settings.prefect_ui_port}"
        )
    settings = context.prepare()
    return serve_uis(settings)


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


def ensure_free(host: str, port: int, what: str) -> None:
    """Refuses a port another process holds, before anything starts: one line naming it,
    instead of a server's traceback and a health check that times out."""
    try:
        address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise ChassisError(f"cannot bind the UIs to host {host!r}: {error.strerror}") from None
    family, kind, protocol, _, sockaddr = address
    with socket.socket(family, kind, protocol) as probe:
        # As the servers bind: a port left in TIME_WAIT by a stopped server is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as error:
            raise ChassisError(f"{what} port {port} on {host} is taken: {error.strerror}") from None


def prefect_server_env(settings: "ChassisSettings", env: dict[str, str]) -> dict[str, str]:
    """The environment of the `prefect server` that `chassis ui` starts. The browser asks
    the server (at /ui-settings) where the API is, and Prefect answers from
    PREFECT_UI_API_URL, which it derives from PREFECT_SERVER_API_HOST/PORT, not from
    `--port`: without these the UI on any other port calls :4200 and shows "Can't connect
    to Server API". A PREFECT_UI_API_URL or PREFECT_UI_URL set by the user (a proxy in front,
    another host name) is kept."""
    server_env = {name: value for name, value in env.items() if name != "PREFECT_API_URL"}
    server_env["PREFECT_SERVER_API_HOST"] = settings.ui_host
    server_env["PREFECT_SERVER_API_PORT"] = str(settings.prefect_ui_port)
    server_env.setdefault("PREFECT_UI_URL", settings.served_prefect_ui_url())
    server_env.setdefault("PREFECT_UI_API_URL", f"{settings.served_prefect_ui_url()}/api")
    return server_env


def start_webhook_relay(
    settings: "ChassisSettings", env: dict[str, str]
) -> subprocess.Popen[bytes] | None:
    """`chassis webhook-relay` beside the two UIs, so a challenger set in the MLflow UI
    starts its rollout at once. Optional: without it `registry-watch` still polls."""
    try:
        ensure_free(settings.webhook_relay_host, settings.webhook_relay_port, "webhook relay")
    except ChassisError as error:
        print(f"Webhook relay not started ({error}); registry-watch still polls.", flush=True)
        return None
    # Its events go to the Prefect server started beside it, wherever the shell pointed.
    relay_env = {
        **env,
        "PREFECT_API_URL": f"{settings.served_prefect_ui_url()}/api",
        "PREFECT_UI_URL": settings.served_prefect_ui_url(),
    }
    command = [sys.executable, "-m", "chassis_cli.main", "webhook-relay"]
    # Named on its command line: a --relay-port given to `chassis ui` is not in the environment.
    command += ["--host", settings.webhook_relay_host, "--port", str(settings.webhook_relay_port)]
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


def refuse_a_second_ui(settings: "ChassisSettings") -> None:
    """One `chassis ui` per home: two Prefect servers on one database, and two records of
    where the UIs are, would leave other processes' links to chance."""
    running = settings.running_ui()
    if running is not None and running.pid != os.getpid():
        raise ChassisError(
            f"chassis ui is already running over {settings.home} (pid {running.pid}: Prefect "
            f"UI {running.prefect_ui_url}, MLflow UI {running.mlflow_ui_url}); stop it first, "
            "or set CHASSIS_HOME to another folder"
        )


def serve_uis(settings: "ChassisSettings") -> int:
    """Starts the servers, records where they are for other processes over this home
    (chassis/running_ui.py), prints where they are, and waits."""
    # Ctrl-C and SIGTERM (systemd, `docker stop`) both stop every server. SIGINT is set
    # explicitly: a process started in the background by a shell inherits it ignored.
    signal.signal(signal.SIGINT, stop_on_signal)
    signal.signal(signal.SIGTERM, stop_on_signal)
    # The MLflow server delivers webhooks to the relay, which inherits the same key.
    env = {**mlflow_server_webhook_env(settings), **os.environ}
    env.pop("PREFECT_API_URL", None)  # this process *is* the server
    host = settings.ui_host
    refuse_a_second_ui(settings)
    ensure_free(host, settings.prefect_ui_port, "the Prefect UI")
    prefect_env = prefect_server_env(settings, env)
    commands: dict[str, tuple[list[str], dict[str, str], str]] = {
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
            prefect_env,
            f"{settings.served_prefect_ui_url()}/api/health",
        ),
    }
    tracking_uri = settings.resolved_tracking_uri()
    if not tracking_uri.startswith(("http://", "https://")):
        artifact_root = settings.resolved_artifact_root()
        assert artifact_root is not None  # None only for a remote tracking server
        ensure_free(host, settings.mlflow_ui_port, "the MLflow UI")
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
            env,
            f"{settings.served_mlflow_ui_url()}/health",
        )
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, (command, command_env, _) in commands.items():
            processes[name] = subprocess.Popen(command, env=command_env)
        for name, (_, _, health) in commands.items():
            if not wait_healthy(health, processes[name], seconds=120):
                raise ChassisError(f"{name} did not become healthy at {health}")
        api = prefect_env["PREFECT_UI_API_URL"]
        print(
            f"Prefect UI: {prefect_env['PREFECT_UI_URL']} (the browser calls its API at {api})",
            flush=True,
        )
        mlflow_ui = settings.served_mlflow_ui_url()
        if "MLflow UI" in processes:
            print(f"MLflow UI:  {mlflow_ui}", flush=True)
            relay = start_webhook_relay(settings, env)
            if relay is not None:
                processes["webhook relay"] = relay
        else:
            print(f"MLflow UI:  {mlflow_ui} (remote tracking server)", flush=True)
        record = running_ui.RunningUi(
            pid=os.getpid(),
            prefect_ui_url=prefect_env["PREFECT_UI_URL"].rstrip("/"),
            prefect_api_url=f"{settings.served_prefect_ui_url()}/api",
            mlflow_ui_url=mlflow_ui,
        )
        recorded = running_ui.write_record(settings.home, record)
        print(
            f"Other chassis commands and flow runs over {settings.home} report their runs "
            f"here and link to these UIs while this runs (their addresses are in {recorded}).",
            flush=True,
        )
        print("Ctrl-C stops them all.", flush=True)
        while all(p.poll() is None for p in processes.values()):
            time.sleep(1)
        stopped = [n for n, p in processes.items() if p.poll() is not None]
        raise ChassisError(f"{', '.join(stopped)} stopped unexpectedly")
    except KeyboardInterrupt:
        return 0
    finally:
        running_ui.remove_record(settings.home, os.getpid())
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
