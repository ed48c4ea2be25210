"""Options generated from a policy model: each field once, its range checked as it is parsed."""

import argparse

import pytest

from chassis.compression.policy import CompressionPolicy
from chassis.drift_policy import DriftPolicy
from chassis.gates import GatePolicy
from chassis_cli.policy_options import add_model_options, given_values, range_problem


def parser_for(model, aliases=None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t", exit_on_error=False)
    add_model_options(parser, model, "p_", aliases)
    return parser


def refusal(parser: argparse.ArgumentParser, *argv: str) -> str:
    with pytest.raises(argparse.ArgumentError) as refused:
        parser.parse_args(list(argv))
    return str(refused.value)


def test_only_given_options_are_passed_on_and_each_type_is_parsed():
    parser = parser_for(DriftPolicy)
    args = parser.parse_args(
        [
            "--drift-share",
            "0.3",
            "--per-column-threshold",
            "f0=0.1,f1=0.2",
            "--method",
            "psi",
            "--serving-suite",
            "warn",
        ]
    )
    assert given_values(args, "p_") == {
        "drift_share": 0.3,
        "per_column_threshold": {"f0": 0.1, "f1": 0.2},
        "method": "psi",
        "serving_suite": "warn",
    }
    candidates = parser_for(CompressionPolicy).parse_args(
        ["--candidates", "pruned", "dynamic-int8", "--no-per-channel"]
    )
    assert given_values(candidates, "p_") == {
        "candidates": ["pruned", "dynamic-int8"],
        "per_channel": False,
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--drift-share", "0"], "--drift-share: must be in (0, 1], got 0"),
        (["--max-null-share", "1"], "must be in [0, 1), got 1"),
        (["--min-rows", "0"], "must be >= 1, got 0"),
        (["--min-rows", "2.5"], "expected a whole number, got '2.5'"),
        (["--drift-share", "nan"], "expected a number, got NaN"),
        (["--per-column-threshold", "f0"], "expected COLUMN=VALUE pairs"),
        (["--serving-suite", "ignore"], "invalid choice: 'ignore'"),
    ],
)
def test_a_value_outside_its_field_is_refused_naming_the_range(argv, message):
    assert message in refusal(parser_for(DriftPolicy), *argv)


def test_a_finite_bound_refuses_infinity_and_aliases_take_the_same_checks():
    parser = parser_for(GatePolicy, {"latency_slack_ms_vs_champion": ["--latency-slack-ms"]})
    assert "must be a finite number >= 0, got inf" in refusal(parser, "--latency-slack-ms", "inf")
    assert "must be a finite number >= 1, got 0.5" in refusal(
        parser, "--max-latency-ratio-vs-champion", "0.5"
    )


def test_range_problem_reads_bounds_inside_optional_annotations():
    # growth_factor is `Annotated[float, Field(gt=1, le=10)] | None`.
    from chassis.rollout.policy import RolloutPolicy

    parser = parser_for(RolloutPolicy)
    assert "must be in (1, 10], got 1" in refusal(parser, "--growth-factor", "1")
    assert "each value must be in (0, 100], got 120" in refusal(parser, "--steps", "10,120")
    assert range_problem(5.0, []) is None
