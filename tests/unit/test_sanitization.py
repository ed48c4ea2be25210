"""Sanitization: the setting derived from a reference, the gateway's clip / fill / refuse on
a request's rows, nulls read as missing values only while it is on, the diagnosis's plan
for the data branch, and the registry and CLI refusing what cannot be sanitized."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest

from chassis.diagnosis.data_checks import MISSING_CHECK, RANGE_CHECK
from chassis.diagnosis.findings import Diagnosis, Finding, walk
from chassis.diagnosis.policy import DiagnosisPolicy
from chassis.diagnosis.recovery import AUTOMATIC_FALLBACK, plan_recovery
from chassis.errors import RequestError, SanitizationError
from chassis.registry import Registry
from chassis.registry.audit import AuditRecord
from chassis.registry.tags import TAG_TEXT_INPUT
from chassis.sanitization import SANITIZATION_ON, Sanitization, derive
from chassis.serving.batching import MicroBatcher
from chassis.serving.gateway import Gateway, GatewayConfig, ServedModel, ServedVersion
from chassis.serving.metrics import GatewayMetrics
from chassis.serving.sanitizer import Sanitizer
from chassis.serving.state import RolloutState
from chassis.serving.validation import Limits, parse_instances
from tests.fixtures.cli import chassis_in_process

REFERENCE = pd.DataFrame({"a": [0.0, 1.0, 2.0, 10.0], "b": [-1.0, 0.0, 1.0, 3.0]})


def sanitizer(mode: str, metrics: GatewayMetrics | None = None) -> Sanitizer:
    metrics = metrics or GatewayMetrics()
    setting = derive(REFERENCE, ["a", "b"], mode, 1)  # type: ignore[arg-type]
    return Sanitizer(
        setting,
        lambda feature, action, n: metrics.count_sanitized("m", feature, action, n),
        lambda reason, rows: metrics.count_sanitization_refused("m", reason, rows),
    )


def test_the_setting_takes_each_features_range_and_median_from_the_reference():
    setting = derive(REFERENCE, ["a", "b"], "clip", 3)
    assert (setting.low, setting.high, setting.fill) == ([0.0, -1.0], [10.0, 3.0], [1.5, 0.5])
    assert Sanitization.from_json(setting.to_json()) == setting
    assert setting.describe() == "clip (2 features from v3's reference)"


def test_a_setting_that_cannot_be_right_is_refused_by_name():
    with pytest.raises(SanitizationError, match="has no column 'c'"):
        derive(REFERENCE, ["a", "c"], "clip", 1)
    with pytest.raises(SanitizationError, match="mode must be one of off, clip, refuse"):
        Sanitization("sometimes")  # type: ignore[arg-type]
    with pytest.raises(SanitizationError, match="unreadable sanitization setting"):
        Sanitization.from_json('{"features": []}')


def test_clip_clips_to_the_range_fills_missing_from_the_median_and_counts_by_feature():
    metrics = GatewayMetrics()
    rows = np.array([[50.0, np.nan], [-5.0, 2.0], [1.0, 1.0]], dtype=np.float32)
    raw = rows.copy()
    sanitized = sanitizer("clip", metrics).apply(rows)
    np.testing.assert_array_equal(sanitized, [[10.0, 0.5], [0.0, 2.0], [1.0, 1.0]])
    np.testing.assert_array_equal(rows, raw)  # the rows as received, for the log
    assert metrics.sanitized[("m", "a", "clipped")][0] == 2
    assert metrics.sanitized[("m", "b", "filled")][0] == 1
    assert ("m", "b", "clipped") not in metrics.sanitized  # no series for what never changed
    exposition = metrics.render().decode()
    assert 'chassis_sanitized_values_total{action="clipped",feature="a",model="m"} 2.0' in (
        exposition
    )


def test_clean_rows_are_run_as_they_came():
    rows = np.array([[0.0, 3.0], [10.0, -1.0]], dtype=np.float32)
    assert sanitizer("clip").apply(rows) is rows


def test_refuse_names_the_first_bad_row_and_feature_and_counts_rows_by_reason():
    metrics = GatewayMetrics()
    rows = np.array([[1.0, 1.0], [1.0, 7.5], [np.nan, 1.0]], dtype=np.float32)
    with pytest.raises(RequestError) as refused:
        sanitizer("refuse", metrics).apply(rows)
    assert refused.value.status == 422
    assert refused.value.message.startswith(
        "row 1 feature 'b' is 7.5, outside the reference's range [-1, 3]"
    )
    assert metrics.sanitization_refused[("m", "out_of_range")][0] == 1
    assert metrics.sanitization_refused[("m", "missing")][0] == 1
    with pytest.raises(RequestError, match="row 0 feature 'a' is missing"):
        sanitizer("refuse").apply(np.array([[np.nan, 1.0]], dtype=np.float32))


def test_a_null_is_a_missing_value_only_while_sanitization_is_on():
    body = b'{"instances": [[1, null], [2, 3]]}'
    with pytest.raises(RequestError, match="no strings, booleans, nulls or lists"):
        parse_instances(body, "application/json", 2, Limits())
    values = parse_instances(body, "application/json", 2, Limits(), True)
    assert np.isnan(values[0, 1]) and values[1].tolist() == [2.0, 3.0]
    # Anything else that is no number is still refused.
    with pytest.raises(RequestError, match="every feature value must be a number"):
        parse_instances(b'{"instances": [[1, "x"]]}', "application/json", 2, Limits(), True)


class SettingRegistry:
    """What a gateway asks the registry about sanitization: the stored setting."""

    def __init__(self) -> None:
        self.setting: Sanitization | None = None

    def read_sanitization(self, name: str) -> Sanitization | None:
        return self.setting


def test_the_gateway_follows_the_registrys_setting_and_keeps_it_when_it_does_not_fit(
    tmp_path: Path,
):
    registry = SettingRegistry()
    config = GatewayConfig(tmp_path / "state", tmp_path / "cache")
    gateway = Gateway(cast(Registry, registry), config, ["m"])
    version = ServedVersion(1, 2, "sha", cast(MicroBatcher, None), ["a", "b"])
    model = gateway.models["m"] = ServedModel("m", RolloutState(model="m", stable_version=1))
    model.versions[1] = version
    gateway.follow_sanitization("m")
    assert model.sanitizer is None and gateway.status("m")["sanitization"] == "off"
    for mode in ("clip", "refuse"):  # on, then another mode: each applied
        registry.setting = derive(REFERENCE, ["a", "b"], mode, 1)
        gateway.follow_sanitization("m")
        assert model.sanitizer is not None and model.sanitizer.setting.mode == mode
        assert gateway.metrics.sanitization_modes == {"m": mode}
    # Ranges of other features: not applied, the current setting stays, and it is said.
    registry.setting = derive(REFERENCE.rename(columns={"a": "x"}), ["x", "b"], "clip", 2)
    gateway.follow_sanitization("m")
    assert model.sanitizer.setting.mode == "refuse"
    assert "are not the served version's" in gateway.said["sanitization:m"]
    registry.setting = Sanitization("off")
    gateway.follow_sanitization("m")
    assert model.sanitizer is None and gateway.metrics.sanitization_modes == {}


# The diagnosis's plan for the data branch -------------------------------------------------

POLICY = DiagnosisPolicy()
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
ALIASES = {"champion": 2, "previous": 1}


def data(*findings: Finding) -> Diagnosis:
    return walk("m", [("service", list), ("model", list), ("data", lambda: list(findings))])


OUT_OF_RANGE = Finding(RANGE_CHECK, "failing", "a 40% outside [0, 10]", "<= 5%")
MISSING = Finding(MISSING_CHECK, "failing", "12.0% of 50 rows", "<= 1%")
CLEAN = (
    Finding(MISSING_CHECK, "healthy", "0.0% of 50 rows", "<= 1%"),
    Finding(RANGE_CHECK, "healthy", "2 features within range", "<= 5%"),
)


def plan(diagnosis: Diagnosis, policy: DiagnosisPolicy = POLICY, **state: Any):
    return plan_recovery(diagnosis, ALIASES, [], policy, NOW, **state)


def test_out_of_range_or_missing_values_switch_sanitization_on_with_the_evidence():
    decided = plan(data(OUT_OF_RANGE, MISSING))
    assert (decided.action, decided.mode, decided.sanitization) == ("sanitize", "act", "clip")
    assert decided.evidence == {
        RANGE_CHECK: OUT_OF_RANGE.observed,
        MISSING_CHECK: "12.0% of 50 rows",
    }
    refusing = POLICY.model_copy(update={"sanitize_mode": "refuse"})
    assert plan(data(MISSING), refusing).sanitization == "refuse"


@pytest.mark.parametrize(("switch", "mode"), [("off", "none"), ("suggest", "suggest")])
def test_the_sanitize_switch_turns_the_action_off_or_into_a_suggestion(switch, mode):
    decided = plan(data(OUT_OF_RANGE), POLICY.model_copy(update={"sanitize": switch}))
    assert decided.mode == mode
    if switch == "suggest":
        assert "chassis sanitize --model m --mode clip" in decided.explanation


def test_sanitization_already_on_is_not_written_again():
    decided = plan(data(OUT_OF_RANGE), sanitizing="refuse")
    assert decided.mode == "none" and "already on (refuse)" in decided.explanation


def test_a_text_model_or_a_fault_sanitization_does_not_answer_takes_no_action():
    assert plan(data(OUT_OF_RANGE), reads_text=True).mode == "none"
    suite = Finding("serving suite", "failing", "a must be below 3", "every expectation met")
    decided = plan(data(suite))
    assert decided.mode == "none" and "answers missing and out-of-range" in decided.explanation


def test_a_clean_window_switches_sanitization_off_again():
    decided = plan(data(*CLEAN), sanitizing="clip")
    assert (decided.action, decided.mode, decided.sanitization) == ("unsanitize", "act", "off")
    suggest = POLICY.model_copy(update={"sanitize": "suggest"})
    assert plan(data(*CLEAN), suggest, sanitizing="clip").mode == "suggest"
    assert (
        plan(data(*CLEAN), POLICY.model_copy(update={"sanitize": "off"}), sanitizing="clip").mode
        == "none"
    )
    # Off already: nothing wrong, nothing to do.
    assert plan(data(*CLEAN)).explanation.startswith("nothing wrong found: no action")


def test_refuse_mode_is_only_suggested_off_since_refused_rows_never_reach_the_log():
    decided = plan(data(*CLEAN), sanitizing="refuse")
    assert decided.mode == "suggest" and "refused rows are not logged" in decided.explanation


def test_a_window_not_judged_leaves_sanitization_on():
    empty = Finding("served rows", "not judged", "no row in the window", "rows to judge")
    decided = plan(data(empty), sanitizing="clip")
    assert decided.mode == "none" and "stays clip" in decided.explanation


def test_a_sanitization_switch_does_not_reset_the_fallback_cooldown():
    fallback = AuditRecord(
        1,
        (NOW - timedelta(minutes=10)).isoformat(),
        "diagnose",
        "rollback",
        [{"alias": "champion", "from": 3, "to": 2}],
        f"{AUTOMATIC_FALLBACK}: m",
        {},
    )
    switched = AuditRecord(
        2, (NOW - timedelta(minutes=5)).isoformat(), "diagnose", SANITIZATION_ON, [], "clip", {}
    )
    failing = Finding("v2 server-error ratio", "failing", "50.0% of 400", "<= 5%", 2)
    diagnosis = walk("m", [("model", lambda: [failing])])
    decided = plan_recovery(diagnosis, ALIASES, [fallback, switched], POLICY, NOW)
    assert decided.mode == "suggest" and "cooldown" in decided.explanation


# The registry and the CLI refuse what cannot be sanitized --------------------------------


class TextModelClient:
    """What `sanitization_for_champion` reads of a text model: its champion's tags."""

    def get_registered_model(self, name: str) -> Any:
        return SimpleNamespace(aliases={"champion": "1"}, tags={})

    def get_model_version(self, name: str, version: str) -> Any:
        return SimpleNamespace(tags={TAG_TEXT_INPUT: '{"max_length": 8}'})


def test_a_text_model_is_refused_before_anything_is_read_or_written():
    registry = Registry(TextModelClient(), "")  # type: ignore[arg-type]
    with pytest.raises(SanitizationError, match="m v1 reads texts: sanitization"):
        registry.sanitization_for_champion("m", "clip", by="me", reason="test")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sanitize"], "the following arguments are required: --model"),
        (["sanitize", "--model", "m", "--mode", "on"], "argument --mode: invalid choice: 'on'"),
    ],
)
def test_chassis_sanitize_refuses_bad_arguments(args, message):
    code, _, stderr = chassis_in_process(*args)
    assert code == 2 and message in stderr
