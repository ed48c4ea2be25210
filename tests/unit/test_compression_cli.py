"""`chassis compress` as a user runs it: help, argument checks (exit 2), clear errors."""

import pytest

from tests.fixtures.cli import chassis


def test_compress_help_names_every_option():
    result = chassis("compress", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: chassis compress")
    for option in ("--model", "--version", "--tolerance", "--tolerance-mode", "--objective"):
        assert option in result.stdout
    assert "compress" in chassis("--help").stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tolerance", "1"], "must be in [0, 1), got 1"),
        (["--tolerance", "-0.1"], "must be in [0, 1)"),
        (["--tolerance", "nan"], "NaN"),
        (["--objective", "speed"], "invalid choice: 'speed'"),
        (["--tolerance-mode", "percent"], "invalid choice: 'percent'"),
        (["--candidates", "magic"], "invalid choice: 'magic'"),
        (["--prune-fraction", "1.0"], "must be in [0, 1)"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(extra, message):
    result = chassis("compress", "--model", "m", "--version", "1", *extra)
    assert result.returncode == 2
    assert message in result.stderr


def test_missing_version_exits_2():
    result = chassis("compress", "--model", "m")
    assert result.returncode == 2 and "--version" in result.stderr


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
