"""`chassis recover` and `chassis retire` refuse bad input with one line and a non-zero exit."""

import pytest

from tests.fixtures.cli import chassis


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["recover"], "the following arguments are required: --model"),
        (["retire"], "the following arguments are required: --model"),
        (["retire", "--model", "m", "--version", "0"], "versions start at 1"),
    ],
)
def test_recover_and_retire_refuse_bad_arguments(args, message):
    result = chassis(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_recover_of_an_unknown_model_is_one_line(tmp_path):
    result = chassis("recover", "--model", "ghost", env={"CHASSIS_HOME": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no registered model named 'ghost'"


def test_a_bad_lock_lifetime_is_refused_by_name(tmp_path):
    env = {"CHASSIS_HOME": str(tmp_path), "CHASSIS_LOCK_TTL_SECONDS": "soon"}
    result = chassis("recover", "--model", "ghost", env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: CHASSIS_LOCK_TTL_SECONDS must be a number of seconds in (0, 3600], got 'soon'"
    )
