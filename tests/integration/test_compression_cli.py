"""`chassis compress` as a user runs it, on a registry that lacks the model: one line, exit 1.

The model is refused before the compress flow is called, so no Prefect server starts and no
failed flow run is left (tests/unit/test_cli_json.py checks the same for a missing version
and the other commands that run flows; tests/unit/test_compression_cli.py checks the help
and arguments)."""

import pytest

from tests.fixtures.cli import chassis


@pytest.mark.slow
def test_unknown_model_is_a_one_line_error_with_exit_1(tmp_path):
    result = chassis(
        "compress",
        "--model",
        "nope",
        "--version",
        "3",
        timeout=300,
        env={"CHASSIS_HOME": str(tmp_path / "home")},
    )
    assert result.returncode == 1
    assert result.stderr == "error: no registered model named 'nope'\n"  # no Prefect line
