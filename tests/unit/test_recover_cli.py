"""`chassis recover` and `chassis retire` refuse bad input with one line and a non-zero exit."""

import pytest

from tests.fixtures.cli import chassis, chassis_in_process


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["recover"], "the following arguments are required: --model"),
        (["retire"], "the following arguments are required: --model"),
        (["retire", "--model", "m", "--version", "0"], "versions start at 1"),
    ],
)
def test_recover_and_retire_refuse_bad_arguments(args, message):
    code, _, stderr = chassis_in_process(*args)
    assert code == 2
    assert message in stderr


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
