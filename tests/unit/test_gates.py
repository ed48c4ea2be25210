from dataclasses import replace

import pytest

from chassis.errors import GateConfigError
from chassis.gates import (
    GatePolicy,
    Measurements,
    MetricThreshold,
    compare_metric,
    evaluate_gates,
    gate_policy_from,
    latency_budget,
)


def measured(version, accuracy, *, p99=1.0, size=1000, parity=1e-6, recall=None):
    return Measurements(
        version=version,
        metrics={"accuracy": accuracy, "macro_f1": accuracy},
        per_class_recall=recall or {0: accuracy, 1: accuracy},
        latency_p99_ms=p99,
        size_bytes=size,
        parity_max_abs_diff=parity,
    )


def test_mlflow_metric_threshold_semantics():
    rule = MetricThreshold(threshold=0.8, min_absolute_change=0.05, min_relative_change=0.05)
    results = {r.gate: r.passed for r in compare_metric("acc", 0.90, 0.84, rule)}
    # 0.90 >= 0.8; 0.90 - 0.84 = 0.06 >= 0.05; 0.06 / 0.84 = 0.071 >= 0.05
    assert results == {
        "acc threshold": True,
        "acc absolute change": True,
        "acc relative change": True,
    }
    results = {r.gate: r.passed for r in compare_metric("acc", 0.87, 0.84, rule)}
    assert results["acc absolute change"] is False and results["acc relative change"] is False


def test_lower_is_better_mirrors_the_comparison():
    rule = MetricThreshold(threshold=10.0, min_absolute_change=1.0, greater_is_better=False)
    results = {r.gate: r.passed for r in compare_metric("loss", 8.0, 9.5, rule)}
    assert results == {"loss threshold": True, "loss absolute change": True}
    assert not any(r.passed for r in compare_metric("loss", 12.0, 11.5, rule))


def test_negative_change_allows_bounded_regression():
    rule = MetricThreshold(min_relative_change=-0.01)
    assert compare_metric("acc", 0.95, 0.955, rule)[0].passed  # -0.52 % relative
    assert not compare_metric("acc", 0.93, 0.955, rule)[0].passed  # -2.6 % relative


def test_all_gates_pass_for_a_good_candidate():
    report = evaluate_gates(
        "m", measured(3, 0.96), measured(2, 0.96), measured(1, 0.95), GatePolicy()
    )
    assert report.passed, report.to_markdown()
    assert report.champion_version == 1 and report.baseline_version == 2


@pytest.mark.parametrize(
    ("candidate", "failing"),
    [
        (
            measured(3, 0.90),
            {"accuracy vs baseline v2 relative change", "accuracy vs champion v1 absolute change"},
        ),
        (measured(3, 0.96, p99=80.0), {"latency p99 @ batch 1", "latency p99 vs champion v1"}),
        (measured(3, 0.96, size=10**10), {"ONNX size"}),
        (measured(3, 0.96, parity=0.5), {"ONNX parity"}),
        (measured(3, 0.96, recall={0: 1.0, 1: 0.2}), {"per-class recall floor"}),
    ],
    ids=["quality", "latency", "size", "parity", "recall"],
)
def test_each_gate_can_fail(candidate, failing):
    report = evaluate_gates("m", candidate, measured(2, 0.96), measured(1, 0.95), GatePolicy())
    assert not report.passed
    assert {r.gate for r in report.failures} == failing
    assert "FAIL" in report.to_markdown()
    assert report.to_dict()["passed"] is False


def test_first_model_skips_comparisons_but_keeps_absolute_gates():
    report = evaluate_gates("m", measured(1, 0.5), None, None, GatePolicy(quality_floor=0.9))
    assert [r.gate for r in report.failures] == ["accuracy threshold"]
    # vs baseline, vs champion (quality) and vs champion (latency) have nothing to compare with.
    assert sum(r.skipped for r in report.results) == 3


def test_bad_config_is_refused():
    with pytest.raises(
        GateConfigError, match="per_class_recall_floor: Input should be less than or equal to 1"
    ):
        gate_policy_from({"per_class_recall_floor": 1.5})
    with pytest.raises(
        GateConfigError, match="latency_p99_ms_budget: Input should be greater than 0"
    ):
        gate_policy_from({"latency_p99_ms_budget": 0})
    with pytest.raises(GateConfigError, match="quality_metric: Input should be 'accuracy' or"):
        gate_policy_from({"quality_metric": "auc"})
    with pytest.raises(GateConfigError, match="unknown_field: Extra inputs are not permitted"):
        gate_policy_from({"unknown_field": 1})
    # A metric the policy names but the measurements lack is refused when judged.
    unmeasured = Measurements(1, {"accuracy": 0.9}, {0: 0.9}, 1.0, 1000, 1e-6)
    policy = GatePolicy(quality_metric="macro_f1")
    with pytest.raises(GateConfigError, match="unknown quality metric 'macro_f1'"):
        evaluate_gates("m", unmeasured, None, None, policy)


def test_a_version_300x_slower_than_the_champion_fails_though_under_the_budget():
    champion = measured(1, 0.95, p99=0.02)
    slow = measured(3, 0.96, p99=0.02 * 300)  # 6 ms: far under the 50 ms budget
    report = evaluate_gates("m", slow, measured(2, 0.96), champion, GatePolicy())
    assert {r.gate for r in report.failures} == {"latency p99 vs champion v1"}
    failure = report.failures[0]
    assert failure.observed == "6.000 ms vs 0.020 ms (300.0x)"
    assert failure.threshold == "<= 1.5x + 1 ms = 1.030 ms"


@pytest.mark.parametrize(
    ("champion_p99", "candidate_p99", "passes"),
    [
        (0.010, 0.023, True),  # sub-millisecond timer noise: 2.3x, inside the slack
        (0.020, 0.020, True),  # A/A: identical bytes
        (10.0, 15.9, True),  # large models: the ratio decides (limit 16 ms)
        (10.0, 16.1, False),
        (0.5, 1.8, False),  # 3.6x and 1.3 ms more: a real regression, beyond the slack
    ],
)
def test_latency_vs_champion_is_a_ratio_plus_an_absolute_slack(champion_p99, candidate_p99, passes):
    report = evaluate_gates(
        "m",
        measured(3, 0.96, p99=candidate_p99),
        None,
        measured(1, 0.96, p99=champion_p99),
        GatePolicy(),
    )
    gate = next(r for r in report.results if r.gate == "latency p99 vs champion v1")
    assert gate.passed is passes and not gate.skipped


def test_latency_vs_champion_thresholds_are_settable_and_can_be_switched_off():
    champion, candidate = measured(1, 0.96, p99=0.02), measured(3, 0.96, p99=0.6)
    strict = GatePolicy(max_latency_ratio_vs_champion=2.0, latency_slack_ms_vs_champion=0.1)
    assert not evaluate_gates("m", candidate, None, champion, strict).passed
    assert evaluate_gates("m", candidate, None, champion, GatePolicy()).passed
    off = GatePolicy(max_latency_ratio_vs_champion=None)
    report = evaluate_gates("m", measured(3, 0.96, p99=40.0), None, champion, off)
    assert report.passed
    assert all("vs champion" not in r.gate or "accuracy" in r.gate for r in report.results)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_latency_ratio_vs_champion", 0.9, "Input should be greater than or equal to 1"),
        ("max_latency_ratio_vs_champion", float("inf"), "Input should be a finite number"),
        ("max_latency_ratio_vs_champion", float("nan"), "Input should be a finite number"),
        ("latency_slack_ms_vs_champion", -0.5, "Input should be greater than or equal to 0"),
        ("latency_slack_ms_vs_champion", float("nan"), "Input should be a finite number"),
    ],
)
def test_out_of_range_latency_ratio_settings_name_the_field(field, value, message):
    with pytest.raises(GateConfigError, match=f"invalid gate policy: {field}: {message}"):
        gate_policy_from({field: value})


def test_the_gates_flow_takes_the_policy_itself_as_its_parameter():
    from pydantic import ValidationError

    from flows.promotion import gates

    checked = gates.validate_parameters(
        {
            "model_name": "m",
            "version": 1,
            "thresholds": {
                "max_latency_ratio_vs_champion": 2.5,
                "latency_slack_ms_vs_champion": 0.25,
            },
        }
    )
    policy = checked["thresholds"]
    assert isinstance(policy, GatePolicy)  # one definition: no flow-side copy to convert
    assert policy.max_latency_ratio_vs_champion == 2.5
    assert policy.latency_slack_ms_vs_champion == 0.25
    with pytest.raises(ValidationError, match="max_latency_ratio_vs_champion"):
        GatePolicy(max_latency_ratio_vs_champion=0.5)
    with pytest.raises(ValidationError, match="latency_slack_ms_vs_champion"):
        GatePolicy(latency_slack_ms_vs_champion=-1)


def test_the_champion_comparison_uses_model_cpu_time_when_both_were_measured():
    from dataclasses import replace

    from chassis.gates import latency_vs_champion

    champion = replace(measured(1, 0.95, p99=0.019), model_cpu_p50_ms=0.010)
    # A busy machine: the candidate's wall p99 caught preemptions, its CPU cost did not.
    same_model = replace(measured(2, 0.95, p99=2.97), model_cpu_p50_ms=0.011)
    result = latency_vs_champion(same_model, champion, 1.5, 0.05)
    assert result.passed and result.gate == "model CPU p50 vs champion v1"
    slower = replace(measured(3, 0.95, p99=0.05), model_cpu_p50_ms=0.5)
    assert not latency_vs_champion(slower, champion, 1.5, 0.05).passed
    # Without CPU figures (older measurements), the wall p99s are compared.
    assert latency_vs_champion(measured(4, 0.95, p99=2.97), champion, 1.5, 1.0).gate == (
        "latency p99 vs champion v1"
    )


def test_latency_budget_judges_cpu_time_when_measured_not_a_busy_clock():
    # Preempted by other work, a call is 80 ms on the clock but costs 12 ms of CPU: the
    # budget judges the model, so it passes; a model that costs 80 ms of CPU fails.
    busy = replace(measured(3, 0.96, p99=80.0), model_cpu_p50_ms=10.0, model_cpu_p99_ms=12.0)
    result = latency_budget(busy, 50.0)
    assert result.passed and "12.000 ms CPU (wall 80.000 ms)" in result.observed
    slow = replace(busy, model_cpu_p99_ms=80.0)
    assert not latency_budget(slow, 50.0).passed
