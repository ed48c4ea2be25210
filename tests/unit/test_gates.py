import pytest

from chassis.gates import (
    GateConfig,
    GateConfigError,
    Measurements,
    MetricThreshold,
    compare_metric,
    evaluate_gates,
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
        "m", measured(3, 0.96), measured(2, 0.96), measured(1, 0.95), GateConfig()
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
        (measured(3, 0.96, p99=80.0), {"latency p99 @ batch 1"}),
        (measured(3, 0.96, size=10**10), {"ONNX size"}),
        (measured(3, 0.96, parity=0.5), {"ONNX parity"}),
        (measured(3, 0.96, recall={0: 1.0, 1: 0.2}), {"per-class recall floor"}),
    ],
    ids=["quality", "latency", "size", "parity", "recall"],
)
def test_each_gate_can_fail(candidate, failing):
    report = evaluate_gates("m", candidate, measured(2, 0.96), measured(1, 0.95), GateConfig())
    assert not report.passed
    assert {r.gate for r in report.failures} == failing
    assert "FAIL" in report.to_markdown()
    assert report.to_dict()["passed"] is False


def test_first_model_skips_comparisons_but_keeps_absolute_gates():
    report = evaluate_gates("m", measured(1, 0.5), None, None, GateConfig(quality_floor=0.9))
    assert [r.gate for r in report.failures] == ["accuracy threshold"]
    assert sum(r.skipped for r in report.results) == 2


def test_bad_config_is_refused():
    with pytest.raises(GateConfigError, match="per-class recall floor must be in"):
        GateConfig(per_class_recall_floor=1.5)
    with pytest.raises(GateConfigError, match="latency budget must be > 0"):
        GateConfig(latency_p99_ms_budget=0)
    with pytest.raises(GateConfigError, match="unknown quality metric 'auc'"):
        evaluate_gates("m", measured(1, 0.9), None, None, GateConfig(quality_metric="auc"))
