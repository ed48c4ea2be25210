"""`chassis recover` and `chassis retire` refuse bad input with one line and a non-zero exit."""

import pytest

from tests.fixtures.cli import chassis_in_process


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
