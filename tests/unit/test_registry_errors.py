"""MLflow errors reach the user as one RegistryError naming the model and version asked
about, never as a raw MlflowException (which the CLI would report as a Chassis bug)."""

from types import SimpleNamespace

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, RESOURCE_DOES_NOT_EXIST

from chassis.errors import ChassisError, RegistryError, RegistryUnreachable
from chassis.registry import Registry


class RefusingClient:
    """An MLflow client whose calls fail the way `error` says; with `writes_only`, reads
    answer (a version with no tags) and only writes (`set_*`) fail."""

    def __init__(self, error: MlflowException, writes_only: bool) -> None:
        self.error = error
        self.writes_only = writes_only

    def __getattr__(self, name: str):
        def call(*args: object, **kwargs: object) -> object:
            if self.writes_only and not name.startswith("set_"):
                return SimpleNamespace(tags={}, aliases={})
            raise self.error

        return call


def registry_failing_with(
    message: str, code: int = INTERNAL_ERROR, writes_only: bool = False
) -> Registry:
    error = MlflowException(message, error_code=code)
    return Registry(RefusingClient(error, writes_only), "k" * 32)  # type: ignore[arg-type]


def test_a_missing_version_is_named():
    registry = registry_failing_with("Model Version not found", RESOURCE_DOES_NOT_EXIST)
    with pytest.raises(RegistryError, match=r"^'digits-mlp' has no version 7$"):
        registry.version_tags("digits-mlp", 7)


def test_a_failed_write_names_what_was_written_and_why():
    registry = registry_failing_with(
        "permission denied for table model_version_tags", writes_only=True
    )
    with pytest.raises(RegistryError) as raised:
        registry.record_gate_report("digits-mlp", 3, True, "s3://reports/v3.json")
    assert str(raised.value) == (
        "recording the gate report of digits-mlp v3 failed: "
        "permission denied for table model_version_tags"
    )
    assert isinstance(raised.value, ChassisError)  # the CLI prints it as one `error:` line
    assert not isinstance(raised.value, MlflowException)


def test_an_unreachable_registry_is_said_so_with_the_model_named():
    registry = registry_failing_with(
        "API request to http://127.0.0.1:9/api/2.0/mlflow/registered-models/get failed with "
        "exception ConnectionRefusedError"
    )
    with pytest.raises(RegistryUnreachable) as raised:
        registry.current_aliases("digits-mlp")
    message = str(raised.value)
    assert message.startswith("reading the aliases of 'digits-mlp': registry unreachable: ")
    assert "ConnectionRefusedError" in message


def test_an_error_mid_alias_move_is_wrapped_naming_the_model():
    registry = registry_failing_with("database schema is newer than this MLflow")
    with pytest.raises(RegistryError, match=r"^retiring the challenger of 'm' failed: database"):
        registry.retire_challenger("m", 2, actor="test", reason="test")


class StoreRefusingLogs:
    """An MLflow client whose experiment and run exist but whose metric writes fail; it
    records how the run was ended."""

    def __init__(self) -> None:
        self.terminated: list[str] = []

    def get_experiment_by_name(self, name: str) -> SimpleNamespace:
        # Made by Chassis, with its kind (so no tag is written before the failing log).
        return SimpleNamespace(
            experiment_id="1",
            lifecycle_stage="active",
            tags={"mlflow.experimentKind": "custom_model_development"},
        )

    def create_run(self, experiment_id: str, **kwargs: object) -> SimpleNamespace:
        return SimpleNamespace(info=SimpleNamespace(run_id="r1"))

    def log_batch(self, run_id: str, **kwargs: object) -> None:
        raise MlflowException("disk I/O error", error_code=INTERNAL_ERROR)

    def set_terminated(self, run_id: str, status: str) -> None:
        self.terminated.append(status)


def test_a_failed_tracking_write_names_the_run_and_marks_it_failed(tmp_path):
    from chassis.tracking import Tracking

    client = StoreRefusingLogs()
    tracking = Tracking(client, None)  # type: ignore[arg-type]
    html = tmp_path / "drift.html"
    html.write_text("<html></html>")

    with pytest.raises(RegistryError) as raised:
        tracking.log_monitoring_run(
            "digits-mlp", metrics={"drifted_share": 0.5}, params={}, html=html
        )

    assert str(raised.value) == "logging the monitoring run of digits-mlp failed: disk I/O error"
    assert not isinstance(raised.value, MlflowException)
    assert client.terminated == ["FAILED"]


def test_an_unreachable_tracking_store_is_said_so_with_the_experiment_named():
    from chassis.tracking import Tracking

    error = MlflowException("API request to http://127.0.0.1:9/api failed with exception")
    tracking = Tracking(RefusingClient(error, writes_only=False), None)  # type: ignore[arg-type]

    with pytest.raises(RegistryUnreachable, match=r"^opening the MLflow experiment 'chassis'"):
        tracking.ensure_experiment("chassis")
