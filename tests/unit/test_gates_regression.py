"""Quality gates of a regressor: the task's metric, in its direction, vs baseline and
champion; the champion must have the same task."""

import pytest

from chassis.gates import GatePolicy, Measurements, evaluate_gates


def regressor(version, rmse, *, mae=None, r2=0.5):
    return Measurements(
        version=version,
        metrics={"rmse": rmse, "mae": mae if mae is not None else rmse * 0.8, "r2": r2},
        per_class_recall={},
        latency_p99_ms=1.0,
        size_bytes=1000,
        parity_max_abs_diff=1e-6,
        task="regression",
    )


def gates_of(report):
    return {r.gate: r for r in report.results}


def test_a_regressor_is_judged_on_rmse_by_default_lower_being_better():
    # RMSE 52 vs champion 54: better; vs baseline 52: equal.
    report = evaluate_gates(
        "m", regressor(3, 52.0), regressor(2, 52.0), regressor(1, 54.0), GatePolicy()
    )
    assert report.passed, report.to_markdown()
    assert "rmse vs champion v1 relative change" in gates_of(report)
    assert "per-class recall floor" not in gates_of(report)


def test_a_higher_rmse_than_the_champion_beyond_the_tolerance_fails():
    # 5 % allowed: 56.7 is 5 % above 54 -> fails; 56.6 (4.8 %) passes.
    fails = evaluate_gates("m", regressor(3, 56.75), None, regressor(1, 54.0), GatePolicy())
    passes = evaluate_gates("m", regressor(3, 56.6), None, regressor(1, 54.0), GatePolicy())
    gate = "rmse vs champion v1 relative change"
    assert not gates_of(fails)[gate].passed
    assert gates_of(passes)[gate].passed


def test_a_higher_rmse_than_the_baseline_beyond_the_tolerance_fails():
    report = evaluate_gates("m", regressor(3, 53.0), regressor(2, 52.0), None, GatePolicy())
    # +1.9 % relative, 1 % allowed vs the uncompressed baseline.
    assert not gates_of(report)["rmse vs baseline v2 relative change"].passed


def test_r2_is_higher_is_better():
    policy = GatePolicy(regression_metric="r2")
    worse = evaluate_gates(
        "m", regressor(3, 50.0, r2=0.40), None, regressor(1, 50.0, r2=0.5), policy
    )
    better = evaluate_gates(
        "m", regressor(3, 50.0, r2=0.55), None, regressor(1, 50.0, r2=0.5), policy
    )
    assert not worse.passed
    assert better.passed, better.to_markdown()


def test_mae_can_be_the_judged_metric():
    policy = GatePolicy(regression_metric="mae")
    report = evaluate_gates(
        "m", regressor(3, 50.0, mae=47.0), None, regressor(1, 50.0, mae=40.0), policy
    )
    assert not gates_of(report)["mae vs champion v1 relative change"].passed
    assert report.failures and all("mae" in r.gate for r in report.failures)


@pytest.mark.parametrize(("r2", "passes"), [(0.31, True), (0.29, False)])
def test_the_r2_floor_applies_whatever_the_judged_metric(r2, passes):
    report = evaluate_gates(
        "m", regressor(3, 50.0, r2=r2), None, None, GatePolicy(regression_r2_floor=0.3)
    )
    assert gates_of(report)["r2 threshold"].passed is passes


def test_a_champion_of_another_task_fails_the_gates_naming_both_tasks():
    classifier = Measurements(1, {"accuracy": 0.9, "macro_f1": 0.9}, {0: 0.9}, 1.0, 1000, None)
    report = evaluate_gates("m", regressor(3, 50.0), None, classifier, GatePolicy())
    gate = gates_of(report)["task vs champion v1"]
    assert not gate.passed
    assert gate.observed == "candidate is regression, champion is classification"
    assert report.champion_version == 1


def test_the_classifier_fields_do_not_judge_a_regressor():
    # quality_floor is in accuracy units (<= 1): an RMSE of 50 must not be held to it.
    policy = GatePolicy(quality_floor=0.9, min_absolute_change_vs_champion=0.5)
    report = evaluate_gates("m", regressor(3, 50.0), None, regressor(1, 50.0), policy)
    assert report.passed, report.to_markdown()
