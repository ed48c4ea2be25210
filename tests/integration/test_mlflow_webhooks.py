"""MLflow's registry webhooks reach the relay: a real `mlflow server` on SQLite sends them.

The alias is set through the server's REST API, as the MLflow UI does. The relay runs in
this process over real HTTP and records what it would emit; the end-to-end test has it emit
to a real Prefect server whose trigger then rolls the version out.
"""

import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from chassis import registry
from chassis.errors import RegistryError
from chassis.registry_webhooks import AliasSet
from chassis.settings import ChassisSettings
from chassis.webhook_relay import WEBHOOK_PATH
from chassis_cli.webhook_relay import mlflow_server_webhook_env
from tests.fixtures.mlflow_server import MlflowServer
from tests.fixtures.relay import running_relay

SECRET = "relay-secret"
MODEL = "hooked"


@pytest.fixture(autouse=True)
def restore_mlflow_uris() -> Iterator[None]:
    """These tests point MLflow's process-wide URIs at their own stores; put them back."""
    tracking, registry_uri = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry_uri)


@pytest.fixture
def relay() -> Iterator[tuple[str, list[AliasSet]]]:
    received: list[AliasSet] = []
    with running_relay(SECRET, received.append) as url:
        yield f"{url}{WEBHOOK_PATH}", received


@pytest.fixture
def webhook_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # What `chassis ui` sets for its own MLflow server (loopback receiver, plain http), with
    # a one-second cache so a webhook registered a moment ago is seen at once.
    settings = ChassisSettings(home=tmp_path / "chassis")
    server = MlflowServer(
        ["--backend-store-uri", f"sqlite:///{tmp_path}/registry.db"],
        {
            **mlflow_server_webhook_env(settings, cache_seconds=1),
            "MLFLOW_WEBHOOK_REQUEST_MAX_RETRIES": "0",
        },
        tmp_path / "mlflow-server.log",
    )
    url = server.start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    yield url
    server.stop()


def registered_version(client: mlflow.MlflowClient) -> str:
    client.create_registered_model(MODEL)
    with mlflow.start_run() as run:
        mlflow.log_text("weights", "model/weights.txt")
    source = f"{run.info.artifact_uri}/model"
    return client.create_model_version(MODEL, source, run_id=run.info.run_id).version


def wait_for(received: list[AliasSet], count: int, seconds: float = 30) -> list[AliasSet]:
    deadline = time.monotonic() + seconds
    while len(received) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return received


def test_a_challenger_set_through_the_mlflow_server_reaches_the_relay(webhook_server, relay):
    relay_url, received = relay
    client = mlflow.MlflowClient()
    version = registered_version(client)
    webhook_id = registry.ensure_alias_webhook(relay_url, SECRET)
    assert registry.ensure_alias_webhook(relay_url, SECRET) == webhook_id  # updated, not added
    assert [h.name for h in client.list_webhooks()] == [registry.WEBHOOK_NAME]
    time.sleep(1.5)  # the server's webhook cache (1 s here)

    client.set_registered_model_alias(MODEL, "champion", version)  # relayed? no: ignored
    client.set_registered_model_alias(MODEL, "challenger", version)
    events = wait_for(received, 1)
    assert [(e.model_name, e.alias, e.version) for e in events] == [(MODEL, "challenger", 1)]
    time.sleep(1)
    assert len(received) == 1  # the champion alias was delivered too, and not relayed


def test_a_webhook_signed_with_another_secret_is_refused(webhook_server, relay):
    relay_url, received = relay
    client = mlflow.MlflowClient()
    version = registered_version(client)
    registry.ensure_alias_webhook(relay_url, "not-the-relay-secret")
    time.sleep(1.5)
    client.set_registered_model_alias(MODEL, "challenger", version)
    time.sleep(3)
    assert received == []


def test_a_registry_that_cannot_hold_webhooks_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("CHASSIS_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    mlflow.set_registry_uri((tmp_path / "mlruns").as_uri())
    with pytest.raises(RegistryError, match="SQL-backed registry only"):
        registry.ensure_alias_webhook("http://127.0.0.1:9/mlflow/webhook", SECRET)
