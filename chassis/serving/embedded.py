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
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chassis.errors import ChassisError, GatewayError
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


def serving_problem(client: GatewayClient, model: str, champion: int) -> str | None:
    """Why this gateway cannot carry a rollout of `model` against `champion` (None: it can).
    A gateway still on an older champion is asked to follow the registry first."""
    try:
        status = client.status(model)
        state = status["state"]
        if state["mode"] == "stable" and state["stable_version"] != champion:
            status = client.follow_champion(model)
            state = status["state"]
    except GatewayError as error:
        return str(error)
    if state["mode"] != "stable" or state.get("candidate_version") is not None:
        return (
            f"it is in the middle of a rollout of {model} (mode {state['mode']}, candidate "
            f"v{state.get('candidate_version')}); let it finish or roll it back"
        )
    if state["stable_version"] != champion:
        return f"it serves {model} v{state['stable_version']}, but the champion is v{champion}"
    return None


def check_replicas(settings: ChassisSettings, urls: list[str], model: str, champion: int) -> None:
    """Every replica must serve `model` at its champion before anything moves."""
    problems = []
    for url in urls:
        client = GatewayClient(url, settings.admin_token(), timeout=10)
        try:
            problem = serving_problem(client, model, champion)
        finally:
            client.close()
        if problem:
            problems.append(f"{url}: {problem}")
    if problems:
        raise ChassisError(
            f"{len(problems)} of {len(urls)} replica(s) cannot roll out {model}: "
            + "; ".join(problems)
            + "; nothing was changed"
        )


@contextmanager
def gateway_for(
    settings: ChassisSettings, model: str, champion: int, explicit_url: str | None = None
) -> Generator[RunningGateway, None, None]:
    """A gateway that serves `model` at its champion, found before anything is changed.

    An explicit URL must be such a gateway, or this fails naming why. Otherwise the
    configured gateway is used if it serves the model; if it does not answer, or serves
    other models only, a gateway is started for this run.
    """
    token = settings.admin_token()
    if explicit_url:
        client = GatewayClient(explicit_url, token)
        try:
            problem = serving_problem(client, model, champion)
        finally:
            client.close()
        if problem:
            raise ChassisError(f"gateway {explicit_url} cannot roll out {model}: {problem}")
        yield RunningGateway(explicit_url, embedded=False)
        return
    configured = settings.resolved_gateway_url()
    client = GatewayClient(configured, token)
    try:
        problem = serving_problem(client, model, champion) if client.ready() else "not running"
    finally:
        client.close()
    if problem is None:
        yield RunningGateway(configured, embedded=False)
        return
    with start_gateway(settings, [model]) as started:
        yield started


@contextmanager
def start_gateway(
    settings: ChassisSettings, models: list[str]
) -> Generator[RunningGateway, None, None]:
    """`chassis serve` on a free loopback port for as long as the context lasts."""
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
