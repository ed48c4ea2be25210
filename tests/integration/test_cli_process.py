"""The `chassis` command as a user runs it, a subprocess, on paths that import MLflow, open a
real MLflow store or load a spec (torch, onnx) before they refuse: seconds of CPU each, so they
run with the integration tests (`make test`), not in `make test-fast`. The `chassis` tests that
end in the parser, and one subprocess per exit code, stay in tests/unit."""

import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.fixtures.cli import assert_one_error_line_naming, chassis, chassis_in_process
from tests.fixtures.gateway import log_events


@pytest.fixture(scope="module")
def home_without_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CHASSIS_HOME, registered-model free, shared by the tests that only ask about a
    model it lacks: the first creates its MLflow store, the others skip that second."""
    return tmp_path_factory.mktemp("home-without-models")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_package.spec:spec", "no module named 'no_such_package'"),
        ("tests.fixtures.specs:missing_builder", "missing required part(s): build_model"),
        ("tests.fixtures.broken_import:spec", "RuntimeError: database credentials missing"),
    ],
)
def test_bad_spec_fails_fast_with_one_line(spec, message):
    result = chassis("release", "--spec", spec, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: spec ")
    assert message in lines[0]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.fixtures.specs:good", "gives build_model (Chassis trains it): it trains its model"),
        ("tests.fixtures.specs:missing_builder", "missing required part(s): build_model, load_"),
        ("tests.fixtures.import_specs:not_onnx", "import_specs.py is not a valid ONNX model"),
        (
            "tests.fixtures.text_specs:missing_tokenizer",
            "no/such/tokenizer.json does not exist",
        ),
        ("tests.fixtures.text_specs:not_a_tokenizer", "not a tokenizers JSON file"),
    ],
    ids=["training-spec", "no-model", "not-onnx", "no-tokenizer", "not-a-tokenizer"],
)
def test_import_of_a_spec_it_cannot_import_fails_fast_with_one_line(spec, message):
    result = chassis("import", "--spec", spec, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: spec ")
    assert message in lines[0]


def test_versions_of_unknown_model(home_without_models):
    result = chassis("versions", "--model", "nope", env={"CHASSIS_HOME": str(home_without_models)})
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no registered model named 'nope'"


def test_serve_of_unknown_model_exits_1_at_once_naming_it(home_without_models):
    # It used to wait forever: the timeout (generous, for a busy machine's start-up) catches
    # a hang as TimeoutExpired; a gateway that starts serving nothing would never exit.
    result = chassis(
        "serve", "--model", "nope", env={"CHASSIS_HOME": str(home_without_models)}, timeout=180
    )
    assert result.returncode == 1
    *logged, error = result.stderr.strip().splitlines()
    assert error == (
        "error: cannot serve 'nope': no registered model named 'nope' (check the name and "
        "CHASSIS_TRACKING_URI, or register and promote a version); or start with "
        "--allow-missing-models to wait for it instead"
    )
    # Before it, the gateway's log: the model's state and the stop, as events.
    [state] = log_events("\n".join(logged), "model.state")
    assert (state["model"], state["state"]) == ("nope", "missing")
    [fatal] = log_events("\n".join(logged), "gateway.fatal")
    assert fatal["error"] == error.removeprefix("error: ")


def test_serve_of_a_model_without_champion_exits_1_naming_it(tmp_path):
    home = tmp_path / "chassis"
    home.mkdir()
    MlflowClient(tracking_uri=f"sqlite:///{home}/mlflow.db").create_registered_model("draft")
    result = chassis("serve", "--model", "draft", env={"CHASSIS_HOME": str(home)}, timeout=60)
    assert result.returncode == 1
    assert_one_error_line_naming(result.stderr, "cannot serve 'draft'", "has no champion alias")


def test_history_of_unknown_model(home_without_models):
    result = chassis("history", "--model", "ghost", env={"CHASSIS_HOME": str(home_without_models)})
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no registered model named 'ghost'"


def test_diagnose_refuses_an_unknown_model_and_bad_values_before_any_run(home_without_models):
    env = {"CHASSIS_HOME": str(home_without_models)}
    unknown = chassis("diagnose", "--model", "ghost", env=env)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "error: no registered model named 'ghost'"
    code, _, stderr = chassis_in_process("diagnose", "--model", "m", "--error-ratio-max", "2")
    assert code == 2 and "--error-ratio-max: must be in (0, 1), got 2" in stderr
    bad_replica = chassis("diagnose", "--model", "m", "--replica", "ftp://x", env=env)
    assert bad_replica.returncode == 1
    assert "replica 'ftp://x': expected a URL like http://host:8000" in bad_replica.stderr


def test_recover_of_an_unknown_model_is_one_line(home_without_models):
    env = {"CHASSIS_HOME": str(home_without_models)}
    result = chassis("recover", "--model", "ghost", env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no registered model named 'ghost'"


def test_a_bad_lock_lifetime_is_refused_by_name(tmp_path):
    env = {"CHASSIS_HOME": str(tmp_path), "CHASSIS_LOCK_TTL_SECONDS": "soon"}
    result = chassis("recover", "--model", "ghost", env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: CHASSIS_LOCK_TTL_SECONDS must be a number of seconds in (0, 3600], got 'soon'"
    )
    # Refused before the registry's store is opened: no database left behind.
    assert not (tmp_path / "mlflow.db").exists()


def test_the_cli_prints_one_error_line_for_an_unreachable_registry(tmp_path):
    env = {
        "CHASSIS_HOME": str(tmp_path),
        "CHASSIS_TRACKING_URI": "http://127.0.0.1:9",  # nothing listens on the discard port
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }
    result: subprocess.CompletedProcess[str] = chassis("versions", "--model", "ghost", env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: reading the versions of 'ghost': registry unreachable: ")
    assert "unexpected" not in lines[0]
