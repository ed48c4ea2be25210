"""No process-wide MLflow state: every MLflow call goes through a client built from settings
(`Registry.from_settings`, `Tracking.from_settings`). A URI set globally by one caller is
what another caller (a test, a second home, the gateway) then silently talks to."""

import re
from pathlib import Path

import mlflow

from chassis.registry import Registry
from chassis.settings import ChassisSettings
from chassis.tracking import Tracking

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("chassis", "chassis_cli", "flows", "tasks")
# The fluent API keeps a global tracking URI and an active run: neither is used.
GLOBAL_STATE = re.compile(
    r"\bmlflow\.(set_tracking_uri|set_registry_uri|start_run|end_run|log_\w+|set_tag|"
    r"get_logged_model|active_run|set_experiment)\b|MlflowClient\(\)"
)


def test_no_module_sets_a_process_wide_uri_or_uses_the_fluent_api():
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if GLOBAL_STATE.search(line)
    ]
    assert found == []


def test_building_and_using_the_objects_leaves_mlflow_s_global_uri_alone(tmp_path):
    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    settings = ChassisSettings(home=tmp_path / "chassis")
    registry = Registry.from_settings(settings)
    tracking = Tracking.from_settings(settings)
    experiment = tracking.ensure_experiment("uri-check")
    assert registry.list_versions("uri-check") == []
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == before
    # ... and the objects did talk to this home's store, not the default one.
    assert registry.client.tracking_uri == f"sqlite:///{settings.mlflow_db}"
    assert tracking.client.get_experiment(experiment).name == "uri-check"
