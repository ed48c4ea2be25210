"""`chassis compress` as a user runs it (its entry point, in this process): help and argument
checks (exit 2).

Its run on an unknown model starts Prefect's API server: tests/integration/test_compression_cli.py.
"""

import pytest

from tests.fixtures.cli import chassis_in_process


def test_compress_help_names_every_option():
    code, stdout, _ = chassis_in_process("compress", "--help")
    assert code == 0
    assert stdout.startswith("usage: chassis compress")
    for option in ("--model", "--version", "--tolerance", "--tolerance-mode", "--objective"):
        assert option in stdout
    assert "compress" in chassis_in_process("--help")[1]


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
    code, _, stderr = chassis_in_process("compress", "--model", "m", "--version", "1", *extra)
    assert code == 2
    assert message in stderr


def test_missing_version_exits_2():
    code, _, stderr = chassis_in_process("compress", "--model", "m")
    assert code == 2 and "--version" in stderr


def test_every_compression_setting_is_an_option_generated_from_the_policy():
    from chassis.compression.policy import CompressionPolicy

    text = " ".join(chassis_in_process("compress", "--help")[1].split())
    for name in CompressionPolicy.model_fields:
        assert f"--{name.replace('_', '-')}" in text, name
    # The epochs the command could not set before it was generated from the policy.
    assert "--finetune-epochs FINETUNE_EPOCHS Fine-tuning epochs after pruning (default: 10)" in (
        text
    )
    assert "--distill-epochs DISTILL_EPOCHS Epochs of student distillation (default: 40)" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--distill-epochs", "0"], "argument --distill-epochs: must be in [1, 10000], got 0"),
        (["--finetune-epochs", "x"], "expected a whole number, got 'x'"),
    ],
)
def test_epoch_options_refuse_bad_values(extra, message):
    code, _, stderr = chassis_in_process("compress", "--model", "m", "--version", "1", *extra)
    assert code == 2
    assert message in stderr
