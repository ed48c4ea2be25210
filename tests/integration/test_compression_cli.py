"""`chassis compress` as a user runs it, on a registry that lacks the version: one line, exit 1.

The command runs the compress flow, which starts Prefect's temporary API server, so this is
not a unit test (tests/unit/test_compression_cli.py checks its help and arguments).
"""

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
    assert "error: 'nope' has no version 3" in result.stderr
