"""Artifacts on S3 (the `s3_env` fixture: moto over HTTP on loopback stands in for AWS). Two
modes: MLflow on SQLite writing straight to the bucket, and a real `mlflow server` process
proxying artifacts to the bucket."""

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from chassis.errors import IntegrityError
from chassis.registry import Registry
from chassis.settings import ChassisSettings
from chassis.storage import StorageError, list_keys
from flows.training import train
from tests.fixtures.mlflow_server import MlflowServer
from tests.fixtures.registries import home_registry
from tests.fixtures.s3 import BUCKET, boto_credentials


def corrupt_and_expect_refusal(
    settings: ChassisSettings, model: str, version: int, tmp: Path
) -> None:
    client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, **boto_credentials())
    key = next(
        k
        for k in list_keys(settings, f"s3://{BUCKET}/")
        if k.endswith("model.onnx") and version_model_id(model, version) in k
    )
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    client.put_object(Bucket=BUCKET, Key=key, Body=body[:-10] + b"0123456789")
    with pytest.raises(IntegrityError, match="does not match its recorded digest"):
        home_registry().fetch_version(model, version, tmp)


def version_model_id(model: str, version: int) -> str:
    """The logged model's id: its files are under .../models/<model id>/artifacts."""
    return home_registry().version_artifact_uri(model, version).rstrip("/").split("/")[-2]


def test_local_tracking_with_s3_artifacts(s3_env, monkeypatch, tmp_path):
    monkeypatch.setenv("CHASSIS_ARTIFACT_ROOT", f"s3://{BUCKET}/local")
    outcome = train(spec="tests.fixtures.specs:good")
    settings = ChassisSettings()
    keys = list_keys(settings, f"s3://{BUCKET}/local/")
    assert any(k.endswith("model.onnx") for k in keys)
    assert any(k.endswith("extra_files/model.safetensors") for k in keys)
    assert not (settings.home / "artifacts").exists()
    files = home_registry().fetch_version(outcome.model_name, outcome.version, tmp_path / "ok")
    assert files.onnx_path.stat().st_size > 0
    corrupt_and_expect_refusal(settings, outcome.model_name, outcome.version, tmp_path / "bad")


def test_missing_bucket_is_named(s3_env, monkeypatch):
    monkeypatch.setenv("CHASSIS_ARTIFACT_ROOT", "s3://no-such-bucket/x")
    with pytest.raises(StorageError, match="S3 bucket 'no-such-bucket' is not usable"):
        Registry.from_settings(ChassisSettings())


@pytest.fixture
def mlflow_server(s3_env, tmp_path) -> Iterator[str]:
    server = MlflowServer(
        [
            "--backend-store-uri",
            f"sqlite:///{tmp_path}/server.db",
            "--artifacts-destination",
            f"s3://{BUCKET}/remote",
        ],
        {"MLFLOW_S3_ENDPOINT_URL": s3_env},
        tmp_path / "server.log",
    )
    yield server.start()
    server.stop()


def test_remote_mlflow_server_with_s3_artifacts(mlflow_server, monkeypatch, tmp_path):
    monkeypatch.setenv("CHASSIS_TRACKING_URI", mlflow_server)
    outcome = train(spec="tests.fixtures.specs:good")
    settings = ChassisSettings()
    assert outcome.mlflow_version_url.startswith(mlflow_server)
    keys = list_keys(settings, f"s3://{BUCKET}/remote/")
    assert any(k.endswith("model.onnx") for k in keys), keys
    # Alias moves work through the server too (the lock is a registry object).
    home_registry().record_gate_report(outcome.model_name, outcome.version, True, "s3-test")
    change = home_registry().promote(
        outcome.model_name, outcome.version, expected_champion=None, actor="test", reason="s3"
    )
    assert change.aliases_after == {"champion": outcome.version}
    corrupt_and_expect_refusal(settings, outcome.model_name, outcome.version, tmp_path / "bad")
    assert home_registry().current_aliases(outcome.model_name) == {"champion": outcome.version}
