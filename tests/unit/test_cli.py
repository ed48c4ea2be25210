"""The `chassis` command as a user runs it: a subprocess (for argument checks, its entry point
in this process), its exit code and its output."""

import json
import re
import subprocess
import sys

import pytest

from tests.fixtures.cli import (
    assert_one_error_line_naming,
    chassis,
    chassis_commands,
    chassis_in_process,
    options,
    required_arguments,
)

COMMANDS = chassis_commands()
HEAVY_LIBRARIES = ("torch", "mlflow", "prefect", "onnxruntime")

# Runs each `--help` through the `chassis` entry point in one Python process and reports,
# after each, which heavy libraries are in sys.modules (one start instead of one per command).
HELP_PROBE = """
import contextlib, io, json, sys
from chassis_cli.main import main

heavy = set(sys.argv[2:])
answers = []
for argv in json.loads(sys.argv[1]):
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
    loaded = sorted(heavy & {name.split(".")[0] for name in sys.modules})
    answers.append({"argv": argv, "code": code, "stdout": stdout.getvalue(), "heavy": loaded})
print(json.dumps(answers))
"""


def test_help_imports_no_heavy_library_and_lists_every_command():
    # The commands this file always had: the loops below are over the real parser's list.
    assert {"release", "train", "specs", "versions", "scaffold-suite", "ui"} <= set(COMMANDS)
    invocations = [["--help"], *([name, "--help"] for name in COMMANDS)]
    probe = subprocess.run(
        [sys.executable, "-c", HELP_PROBE, json.dumps(invocations), *HEAVY_LIBRARIES],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    answers = json.loads(probe.stdout)
    for answer in answers:
        shown = "chassis " + " ".join(answer["argv"])
        assert answer["code"] == 0, shown
        assert answer["heavy"] == [], f"`{shown}` imported {answer['heavy']}"
    top, *per_command = answers
    for name in COMMANDS:
        assert re.search(rf"^\s+{re.escape(name)}\s", top["stdout"], re.MULTILINE), name
    for name, answer in zip(COMMANDS, per_command, strict=True):
        assert answer["stdout"].startswith(f"usage: chassis {name}")


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_option_exits_2_naming_it(command):
    code, _, stderr = chassis_in_process(
        command, *required_arguments(COMMANDS[command]), "--no-such-option"
    )
    assert code == 2
    assert_one_error_line_naming(stderr, "--no-such-option")


REQUIRING = {name: command for name, command in COMMANDS.items() if required_arguments(command)}


@pytest.mark.parametrize("command", REQUIRING)
def test_a_missing_required_argument_exits_2_naming_it(command):
    required = [action for action in COMMANDS[command]._actions if action.required]
    code, _, stderr = chassis_in_process(command)
    assert code == 2
    assert_one_error_line_naming(
        stderr, "the following arguments are required", *(a.option_strings[0] for a in required)
    )


CHECKED_OPTIONS = [
    pytest.param(name, action.option_strings[0], id=f"{name} {action.option_strings[0]}")
    for name, command in COMMANDS.items()
    for action in options(command)
    if action.type is not None or action.choices
]


@pytest.mark.parametrize(("command", "option"), CHECKED_OPTIONS)
def test_a_bad_value_exits_2_naming_the_option(command, option):
    code, _, stderr = chassis_in_process(
        command, *required_arguments(COMMANDS[command]), option, "%not-a-value%"
    )
    assert code == 2
    assert_one_error_line_naming(stderr, f"argument {option}")


def test_every_command_with_options_has_one_that_checks_its_value():
    # Not an empty loop: the commands known to check values are all among CHECKED_OPTIONS.
    checked = {command for command, _ in (p.values for p in CHECKED_OPTIONS)}
    assert {"release", "gates", "promote", "rollout", "compress", "traffic", "serve"} <= checked


def test_an_unknown_option_is_refused_with_the_commands_usage_and_the_closest_option():
    code, _, stderr = chassis_in_process("release", "--speck", "x")
    assert code == 2
    assert stderr.startswith("usage: chassis release ")  # not the top-level usage
    assert_one_error_line_naming(stderr, "unrecognized arguments: --speck x (did you mean --spec?)")
    code, _, stderr = chassis_in_process("versions", "--model", "m", "--jsn", "--zzz")
    assert code == 2 and stderr.startswith("usage: chassis versions ")
    assert_one_error_line_naming(
        stderr, "unrecognized arguments: --jsn --zzz (did you mean --json?)"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["release", "--epochs", "0"], "--epochs: must be at least 1"),
        (["release", "--epochs", "ten"], "expected a whole number, got 'ten'"),
        (["release", "--parity-tolerance", "5"], "must be in (0, 1]"),
        (["release", "--seed", "-3"], "must be 0 or more"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["versions"], "the following arguments are required: --model"),
        (["import"], "the following arguments are required: --spec"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args, message):
    result = chassis(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_specs_lists_bundled_specs():
    result = chassis("specs")
    assert result.returncode == 0
    assert "chassis.specs.digits:spec" in result.stdout
    assert "chassis.specs.wine:spec" in result.stdout


def test_invalid_setting_is_named(tmp_path):
    env = {"CHASSIS_HOME": str(tmp_path), "CHASSIS_PARITY_TOLERANCE": "abc"}
    result = chassis("versions", "--model", "x", env=env)
    assert result.returncode == 1
    assert "CHASSIS_PARITY_TOLERANCE" in result.stderr


def test_scaffold_suite_writes_a_loadable_suite(tmp_path):
    output = tmp_path / "suite.json"
    # In this process (torch and scikit-learn are loaded here already): it prepares no
    # environment, so nothing is left behind; the refusal below runs as a real process.
    code, _, stderr = chassis_in_process(
        "scaffold-suite", "--spec", "chassis.specs.wine:spec", "--output", str(output)
    )
    assert code == 0, stderr
    from chassis.expectations import load_suite

    assert len(load_suite(output).expectations) == 2 + 3 * 13 + 2
    written = output.read_bytes()
    again = chassis("scaffold-suite", "--spec", "chassis.specs.wine:spec", "--output", str(output))
    assert again.returncode == 1 and "exists" in again.stderr
    assert output.read_bytes() == written  # refused, not overwritten


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["promote", "--model", "m", "--version", "0"], "versions start at 1"),
        (["promote", "--model", "m", "--version", "1", "--to", "prod"], "invalid choice: 'prod'"),
        (
            ["promote", "--model", "m", "--version", "1", "--expect-champion", "x"],
            "expected a version",
        ),
        (["gates", "--model", "m", "--version", "1", "--recall-floor", "2"], "must be in [0, 1]"),
        (["gates", "--model", "m", "--version", "1", "--latency-budget-ms", "0"], "must be > 0"),
        (["rollback"], "the following arguments are required: --model"),
    ],
)
def test_registry_commands_refuse_bad_arguments(args, message):
    code, _, stderr = chassis_in_process(*args)
    assert code == 2
    assert message in stderr


def test_traffic_help_shows_the_request_limit_and_every_other_default():
    code, stdout, _ = chassis_in_process("traffic", "--help")
    assert code == 0
    blocks = option_blocks(stdout)
    assert "(default: 1000)" in blocks["--requests"]
    assert re.search(r"\(default: 30(\.0)?\)", blocks["--seconds"])
    assert "(default: 4)" in blocks["--concurrency"]


def option_blocks(help_text: str) -> dict[str, str]:
    """Each option's lines in `--help`, keyed by every option string it lists."""
    blocks: dict[str, str] = {}
    current: list[str] = []
    for line in [*help_text.splitlines(), "  -end"]:
        if line.startswith("  -") or not line.startswith("   "):
            if current:
                block = " ".join(" ".join(current).split())
                head = block.split(" ")[0]
                for option in head.split(","):
                    blocks[option.strip()] = block
                current = []
            if line.startswith("  -"):
                current = [line]
        else:
            current.append(line)
    return blocks


def test_every_option_with_a_default_shows_it_in_help():
    import argparse

    from chassis_cli.main import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    checked = set()
    for name, command in commands.choices.items():
        blocks = option_blocks(command.format_help())
        for action in command._actions:
            if not action.option_strings or any(
                action.default is nothing for nothing in (None, False, argparse.SUPPRESS)
            ):
                continue  # no value to show (0 is a value: `in` would skip it as == False)
            block = blocks[action.option_strings[0]]
            assert "(default" in block, f"chassis {name} --help hides the default of: {block}"
            checked.add(name)
    # Not an empty loop: the commands with defaulted options were all looked at. (Options
    # generated from a policy model keep None as their argparse default, so that only what
    # a user gives is passed on; their defaults are checked in the tests of each policy.)
    assert {"release", "train", "promote", "traffic"} <= checked


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["gates", "--model", "m", "--version", "1", "--max-latency-ratio-vs-champion", "0.5"],
            "must be a finite number >= 1, got 0.5",
        ),
        (
            ["gates", "--model", "m", "--version", "1", "--latency-slack-ms", "-1"],
            "must be a finite number >= 0, got -1",
        ),
        (
            ["promote", "--model", "m", "--version", "1", "--allow-retired"],
            "--allow-retired applies to --to challenger only",
        ),
    ],
)
def test_new_gate_and_promotion_options_refuse_bad_values(args, message):
    code, _, stderr = chassis_in_process(*args)
    assert code == 2
    assert message in stderr


@pytest.mark.parametrize(
    ("option", "exit_code", "problem"),
    [
        # One value outside its field's range: a bad argument, refused by the parser.
        (["--min-agreement", "1.5"], 2, "--min-agreement: must be in [0, 1], got 1.5"),
        (["--false-alarm-rate", "0"], 2, "--false-alarm-rate: must be in (0, 0.5), got 0"),
        # Values fine alone, inconsistent together: refused by the policy's own check.
        (["--steps", "10,50"], 1, "steps must increase and end at 100"),
        (["--min-percent", "20"], 1, "min_percent (20.0) must not exceed the first step"),
    ],
)
def test_rollout_policy_values_out_of_range_fail_before_anything_runs(
    option, exit_code, problem, tmp_path, monkeypatch
):
    monkeypatch.setenv("CHASSIS_HOME", str(tmp_path))
    code, _, stderr = chassis_in_process("rollout", "--model", "m", "--version", "2", *option)
    assert code == exit_code
    assert problem in stderr
    assert not (tmp_path / "mlflow.db").exists()  # no flow started, no registry touched


def test_rollout_policy_options_are_generated_from_the_policy_with_their_defaults():
    code, stdout, _ = chassis_in_process("rollout", "--help")
    assert code == 0
    text = " ".join(stdout.split())
    for phrase in (
        "--false-alarm-rate FALSE_ALARM_RATE",
        "(default: 0.01)",
        "--growth-factor GROWTH_FACTOR",
        "--replica URL|dns:HOST:PORT",
        "--no-shadow",
    ):
        assert phrase in text, phrase


def test_gate_options_are_generated_from_the_gate_policy_with_their_defaults():
    code, stdout, _ = chassis_in_process("gates", "--help")
    assert code == 0
    blocks = option_blocks(stdout)
    recall = blocks["--per-class-recall-floor"]
    # The name the option had before it was generated still works.
    assert "--recall-floor PER_CLASS_RECALL_FLOOR" in recall
    assert "Minimum recall of every class (empty: none) (default: 0.5)" in recall
    assert "(default: 0.01)" in blocks["--max-relative-drop-vs-baseline"]
    assert "{accuracy,macro_f1}" in blocks["--quality-metric"]
    assert "(default: accuracy)" in blocks["--quality-metric"]
