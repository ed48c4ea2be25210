"""A gateway process started for the length of a flow, when none is running already.

The embedded default has no long-running services; the release flow still needs a gateway
to roll a challenger out through, so it starts `chassis serve` on a free loopback port and
stops it when the rollout is decided.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chassis.errors import ChassisError
from chassis.serving.client import GatewayClient
from chassis.settings import ChassisSettings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class RunningGateway:
    url: str
    embedded: bool  # started for this run: nobody else sends it traffic


@contextmanager
def running_gateway(settings: ChassisSettings, models: list[str]) -> Iterator[RunningGateway]:
    """A ready gateway: the configured one if it answers, else one started for this run."""
    configured = settings.resolved_gateway_url()
    if GatewayClient(configured, settings.admin_token()).ready():
        yield RunningGateway(configured, embedded=False)
        return
    port = free_port()
    log_path = settings.gateway_dir / f"embedded-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "chassis_cli.main", "serve", "--port", str(port)]
    for model in models:
        command += ["--model", model]
    env = {**os.environ, "CHASSIS_HOME": str(settings.home)}
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        client = GatewayClient(url, settings.admin_token())
        deadline = time.monotonic() + 120
        while not client.ready():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = Path(log_path).read_text()[-1500:]
                raise ChassisError(f"embedded gateway did not become ready; its log ends:\n{tail}")
            time.sleep(0.2)
        yield RunningGateway(url, embedded=True)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
