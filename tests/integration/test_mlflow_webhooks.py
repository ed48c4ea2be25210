"""MLflow's registry webhooks reach the relay: a real `mlflow server` on SQLite sends them.

The alias is set through the server's REST API, as the MLflow UI does. The relay runs in
this process over real HTTP and records what it would emit; the end-to-end test has it emit
to a real Prefect server whose trigger then rolls the version out.
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import mlflow
import pytest

from chassis.errors import RegistryError
from chassis.registry.webhooks import WEBHOOK_NAME
from chassis.registry_webhooks import AliasSet
from chassis.settings import ChassisSettings
from chassis.webhook_relay import WEBHOOK_PATH
from chassis_cli.webhook_relay import mlflow_server_webhook_env
from tests.fixtures.mlflow_server import MlflowServer
from tests.fixtures.registries import home_registry
from tests.fixtures.relay import running_relay

SECRET = "relay-secret"
MODEL = "hooked"
T = TypeVar("T")


@dataclass
class Relay:
    url: str  # where MLflow posts
    received: list[AliasSet]  # what it passed on
    answers: list[int]  # the status of each answer it gave MLflow, in order


@pytest.fixture
def relay() -> Iterator[Relay]:
    received: list[AliasSet] = []
    answers: list[int] = []
    with running_relay(SECRET, received.append, answers) as url:
        yield Relay(f"{url}{WEBHOOK_PATH}", received, answers)


@pytest.fixture
def webhook_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # What `chassis ui` sets for its own MLflow server (loopback receiver, plain http), with
    # a one-second cache so a webhook registered a moment ago is seen at once.
    settings = ChassisSettings(home=tmp_path / "chassis")
    server = MlflowServer(
        ["--backend-store-uri", f"sqlite:///{tmp_path}/registry.db"],
        {
            **mlflow_server_webhook_env(settings, cache_seconds=CACHE_SECONDS),
            "MLFLOW_WEBHOOK_REQUEST_MAX_RETRIES": "0",
        },
        tmp_path / "mlflow-server.log",
    )
    url = server.start()
    # The registry this test's Chassis talks to is the server (tracking and registry).
    monkeypatch.setenv("CHASSIS_TRACKING_URI", url)
    yield url
    server.stop()


def registered_version(client: mlflow.MlflowClient) -> str:
    client.create_registered_model(MODEL)
    run = client.create_run("0")
    client.log_text(run.info.run_id, "weights", "model/weights.txt")
    client.set_terminated(run.info.run_id)
    source = f"{run.info.artifact_uri}/model"
    return client.create_model_version(MODEL, source, run_id=run.info.run_id).version


def wait_for(what: str, probe: Callable[[], T], seconds: float = 30) -> T:
    deadline = time.monotonic() + seconds
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(0.1)
    return value


# MLflow's webhook cache (CACHE_SECONDS here) serves the webhooks it read before a change for
# that long: letting it pass is part of the scenario, and nothing shows it has passed.
CACHE_SECONDS = 1
PAST_THE_CACHE = CACHE_SECONDS + 0.5


def test_a_challenger_set_through_the_mlflow_server_reaches_the_relay(webhook_server, relay):
    client = home_registry().client
    version = registered_version(client)
    webhook_id = home_registry().ensure_alias_webhook(relay.url, SECRET)
    assert (
        home_registry().ensure_alias_webhook(relay.url, SECRET) == webhook_id
    )  # updated, not added
    assert [h.name for h in client.list_webhooks()] == [WEBHOOK_NAME]
    time.sleep(PAST_THE_CACHE)

    client.set_registered_model_alias(MODEL, "champion", version)  # relayed? no: ignored
    client.set_registered_model_alias(MODEL, "challenger", version)
    # Both deliveries answered: the champion alias was delivered too, and not relayed.
    wait_for("both deliveries to be answered", lambda: len(relay.answers) >= 2)
    assert sorted(relay.answers) == [200, 202]
    events = relay.received
    assert [(e.model_name, e.alias, e.version) for e in events] == [(MODEL, "challenger", 1)]


def test_a_webhook_signed_with_another_secret_is_refused(webhook_server, relay):
    client = home_registry().client
    version = registered_version(client)
    home_registry().ensure_alias_webhook(relay.url, "not-the-relay-secret")
    time.sleep(PAST_THE_CACHE)
    client.set_registered_model_alias(MODEL, "challenger", version)
    wait_for("MLflow's delivery to be answered", lambda: relay.answers)
    assert relay.answers == [401]  # refused for its signature (MLflow does not retry here)
    assert relay.received == []

    # The same delivery signed with the relay's secret goes through: the 401 was the
    # signature's doing, not a delivery that could never arrive.
    home_registry().ensure_alias_webhook(relay.url, SECRET)
    time.sleep(PAST_THE_CACHE)
    client.set_registered_model_alias(MODEL, "challenger", version)
    events = wait_for("the relayed challenger", lambda: relay.received)
    assert [(e.model_name, e.alias, e.version) for e in events] == [(MODEL, "challenger", 1)]
    # The relay hands the event on before it answers: wait for the answer it then gives.
    wait_for("the answer to the relayed delivery", lambda: len(relay.answers) >= 2)
    assert relay.answers == [401, 202]


def test_a_registry_that_cannot_hold_webhooks_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("CHASSIS_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    # This MLflow opens a file store only when asked to; opened, it cannot hold webhooks.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    with pytest.raises(RegistryError, match="SQL-backed registry only"):
        home_registry().ensure_alias_webhook("http://127.0.0.1:9/mlflow/webhook", SECRET)
