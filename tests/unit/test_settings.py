import pytest
from pydantic import ValidationError

from chassis.settings import ChassisSettings


def test_defaults_live_under_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CHASSIS_HOME", str(tmp_path / "state"))
    settings = ChassisSettings()
    assert settings.resolved_tracking_uri() == f"sqlite:///{tmp_path}/state/mlflow.db"
    assert settings.resolved_artifact_root() == (tmp_path / "state" / "artifacts").as_uri()
    assert settings.prefect_home == tmp_path / "state" / "prefect"
    assert settings.mlflow_ui_url() == "http://127.0.0.1:5000"


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("CHASSIS_TRACKING_URI", "http://127.0.0.1:5555")
    monkeypatch.setenv("CHASSIS_PARITY_TOLERANCE", "0.001")
    settings = ChassisSettings()
    assert settings.parity_tolerance == 0.001
    assert settings.resolved_registry_uri() == "http://127.0.0.1:5555"
    assert settings.mlflow_ui_url() == "http://127.0.0.1:5555"


def test_out_of_range_tolerance_is_refused(monkeypatch):
    monkeypatch.setenv("CHASSIS_PARITY_TOLERANCE", "-1")
    with pytest.raises(ValidationError, match="parity_tolerance"):
        ChassisSettings()


def test_the_expectations_folder_is_the_working_directorys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert ChassisSettings().expectations_dir == tmp_path / "expectations"
    monkeypatch.setenv("CHASSIS_EXPECTATIONS_DIR", "suites")
    assert ChassisSettings().expectations_dir == tmp_path / "suites"
