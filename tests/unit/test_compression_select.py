"""Selection is pure: fake measurements are enough to pin down every rule."""

import math
from pathlib import Path

import pytest

from chassis.compression.measure import Measurement
from chassis.compression.select import SelectionPolicy, select_candidate
from chassis.errors import ChassisError, SelectionPolicyError


def measured(name, accuracy, size, latency):
    return Measurement(
        name=name,
        recipe={},
        quality={"accuracy": accuracy, "macro_f1": accuracy},
        latency_ms={"b1_p50": latency, "b1_p99": latency * 2},
        size_bytes=size,
        parameter_count=size // 4,
        sha256="0" * 64,
        onnx_path=Path(f"{name}.onnx"),
    )


BASELINE = measured("baseline", 0.950, 200_000, 1.0)


def test_best_passing_candidate_wins_per_objective():
    small = measured("small", 0.948, 20_000, 0.9)
    fast = measured("fast", 0.949, 150_000, 0.2)
    pool = [BASELINE, small, fast]
    assert (
        select_candidate(pool, "baseline", "accuracy", SelectionPolicy(objective="size")).selected
        == "small"
    )
    assert (
        select_candidate(
            pool, "baseline", "accuracy", SelectionPolicy(objective="latency")
        ).selected
        == "fast"
    )
    balanced = select_candidate(pool, "baseline", "accuracy", SelectionPolicy())
    # small: sqrt(0.1 * 0.9) = 0.30; fast: sqrt(0.75 * 0.2) = 0.39
    assert balanced.selected == "small" and not balanced.fallback_to_baseline
    assert "Selected 'small'" in balanced.explanation


def test_over_compressed_candidate_is_rejected_even_when_it_is_tiny():
    crushed = measured("pruned-to-1", 0.40, 1_000, 0.01)
    ok = measured("int8", 0.946, 60_000, 0.8)
    selection = select_candidate([BASELINE, crushed, ok], "baseline", "accuracy", SelectionPolicy())
    assert selection.selected == "int8"
    verdict = next(v for v in selection.verdicts if v.name == "pruned-to-1")
    assert not verdict.passed and "below floor" in verdict.reason
    assert "pruned-to-1: accuracy 0.4000 below floor 0.9405" in selection.explanation


def test_no_passing_candidate_selects_the_baseline_and_says_so():
    bad = [measured("a", 0.90, 10, 0.1), measured("b", math.nan, 10, 0.1)]
    selection = select_candidate([BASELINE, *bad], "baseline", "accuracy", SelectionPolicy())
    assert selection.selected == "baseline" and selection.fallback_to_baseline
    assert selection.explanation.startswith("No compressed candidate passed")


def test_relative_and_absolute_tolerance_differ():
    candidate = measured("c", 0.935, 10_000, 0.5)  # loses 0.015: 1.6% relative
    relative = SelectionPolicy(tolerance=0.01, mode="relative")
    absolute = SelectionPolicy(tolerance=0.02, mode="absolute")
    assert (
        select_candidate([BASELINE, candidate], "baseline", "accuracy", relative).selected
        == "baseline"
    )
    chosen = select_candidate([BASELINE, candidate], "baseline", "accuracy", absolute)
    assert chosen.selected == "c" and chosen.floor == pytest.approx(0.93)


def test_zero_tolerance_allows_equal_quality_only():
    equal = measured("equal", 0.950, 10_000, 0.5)
    worse = measured("worse", 0.9499, 5_000, 0.1)
    selection = select_candidate(
        [BASELINE, equal, worse], "baseline", "accuracy", SelectionPolicy(tolerance=0.0)
    )
    assert selection.selected == "equal"


def test_baseline_wins_when_nothing_beats_it():
    bigger = measured("bigger", 0.951, 400_000, 2.0)
    selection = select_candidate([BASELINE, bigger], "baseline", "accuracy", SelectionPolicy())
    assert selection.selected == "baseline" and not selection.fallback_to_baseline
    assert "none beats the baseline" in selection.explanation


@pytest.mark.parametrize("tolerance", [-0.01, 1.0, 1.5, math.nan, math.inf, "0.1", True])
def test_tolerance_outside_range_is_refused(tolerance):
    with pytest.raises(SelectionPolicyError, match=r"tolerance must be a number in \[0, 1\)"):
        SelectionPolicy(tolerance=tolerance)


def test_unknown_objective_and_mode_are_refused():
    with pytest.raises(SelectionPolicyError, match="unknown objective 'speed'; choose one of"):
        SelectionPolicy(objective="speed")
    with pytest.raises(SelectionPolicyError, match="unknown tolerance mode 'percent'"):
        SelectionPolicy(mode="percent")
    assert issubclass(SelectionPolicyError, ChassisError)


def test_unmeasured_metric_is_refused():
    with pytest.raises(SelectionPolicyError, match="'cosine_mean' was not measured"):
        select_candidate([BASELINE], "baseline", "cosine_mean", SelectionPolicy())


def regressor(name, rmse, size, latency):
    return Measurement(
        name=name,
        recipe={},
        quality={"rmse": rmse, "mae": rmse * 0.8, "r2": 0.5},
        latency_ms={"b1_p50": latency, "b1_p99": latency * 2},
        size_bytes=size,
        parameter_count=size // 4,
        sha256="0" * 64,
        onnx_path=Path(f"{name}.onnx"),
    )


def test_a_regressor_may_lose_rmse_up_to_a_ceiling_above_the_baseline():
    pool = [
        regressor("baseline", 50.0, 200_000, 1.0),
        regressor("small", 50.4, 20_000, 0.9),  # +0.8 %: within 1 %
        regressor("crushed", 51.0, 1_000, 0.1),  # +2 %: beyond it
    ]
    selection = select_candidate(
        pool, "baseline", "rmse", SelectionPolicy(), greater_is_better=False
    )
    assert selection.selected == "small"
    assert selection.floor == pytest.approx(50.5)
    verdicts = {v.name: v for v in selection.verdicts}
    assert verdicts["crushed"].reason == "rmse 51.0000 above ceiling 50.5000"
    assert verdicts["small"].reason == "rmse 50.4000 <= ceiling 50.5000"
    assert "keep rmse <= 50.5000" in selection.explanation


def test_a_lower_rmse_wins_a_tie_on_the_objective():
    pool = [
        regressor("baseline", 50.0, 200_000, 1.0),
        regressor("b", 49.0, 20_000, 0.5),
        regressor("a", 50.2, 20_000, 0.5),
    ]
    selection = select_candidate(
        pool, "baseline", "rmse", SelectionPolicy(), greater_is_better=False
    )
    assert selection.selected == "b"
