"""The serving policy: one model for the gateway's tunables, read from the environment
(`CHASSIS_GATEWAY_*`) with `chassis serve` options over it."""

import argparse

import pytest

from chassis.errors import SettingsError
from chassis.serving.policy import ServingPolicy, serving_policy_from
from chassis_cli.policy_options import add_model_options, given_values


def test_environment_variables_set_the_policy_and_options_win_over_them(monkeypatch):
    monkeypatch.setenv("CHASSIS_GATEWAY_MAX_BATCH", "8")
    monkeypatch.setenv("CHASSIS_GATEWAY_REQUEST_TIMEOUT_SECONDS", "0.5")
    policy = serving_policy_from({})
    assert policy.max_batch == 8 and policy.request_timeout_seconds == 0.5
    assert policy.max_rows == 1024  # unset: the default
    assert serving_policy_from({"max_batch": 2}).max_batch == 2


def test_a_bad_value_names_its_environment_variable(monkeypatch):
    monkeypatch.setenv("CHASSIS_GATEWAY_MAX_BATCH", "0")
    with pytest.raises(SettingsError, match=r"^CHASSIS_GATEWAY_MAX_BATCH '0': Input should be"):
        serving_policy_from({})


def test_serve_options_are_generated_from_the_policy():
    parser = argparse.ArgumentParser(prog="serve")
    add_model_options(parser, ServingPolicy, "serving_")
    text = " ".join(parser.format_help().split())
    for name in ServingPolicy.model_fields:
        assert f"--{name.replace('_', '-')}" in text, name
    assert "(default: CHASSIS_GATEWAY_MAX_BATCH or 64)" in text
    args = parser.parse_args(["--max-batch", "16", "--drain-seconds", "1.5"])
    assert given_values(args, "serving_") == {"max_batch": 16, "drain_seconds": 1.5}
    with pytest.raises(SystemExit):
        parser.parse_args(["--max-wait-ms", "101"])  # its field allows [0, 100]
