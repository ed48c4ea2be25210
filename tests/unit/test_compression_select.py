"""Selection is pure: fake measurements are enough to pin down every rule."""

import dataclasses
import math
from pathlib import Path

import pytest

from chassis.compression.latency import LatencyRatio, median_interval
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


def compared(name, size, ratios):
    """A candidate of baseline quality whose one-row latency was compared with the
    baseline's in interleaved rounds (its own b1_p50, timed alone, says 1.5x slower)."""
    return dataclasses.replace(
        measured(name, 0.950, size, 1.5), latency_vs_baseline=LatencyRatio.of(ratios)
    )


def test_a_latency_ratio_whose_interval_includes_one_counts_as_no_change():
    # Nine rounds straddling 1: the 96 % interval (2nd to 8th smallest) includes 1.
    noisy = compared("int8", 186_000, [0.8, 0.9, 0.95, 1.0, 1.02, 1.05, 1.1, 1.2, 1.3])
    selection = select_candidate([BASELINE, noisy], "baseline", "accuracy", SelectionPolicy())
    verdict = next(v for v in selection.verdicts if v.name == "int8")
    # Only the size counts: sqrt(0.93 * 1.0), whatever the separately timed p50s say.
    assert verdict.score == pytest.approx(math.sqrt(0.93))
    assert selection.selected == "int8"
    assert "latency not shown to differ from the baseline's" in verdict.reason


def test_a_latency_ratio_surely_above_one_counts_against_the_candidate():
    slower = compared("int8", 186_000, [1.3, 1.35, 1.4, 1.4, 1.45, 1.5, 1.5, 1.6, 1.7])
    selection = select_candidate([BASELINE, slower], "baseline", "accuracy", SelectionPolicy())
    verdict = next(v for v in selection.verdicts if v.name == "int8")
    assert verdict.score == pytest.approx(math.sqrt(0.93 * 1.45))
    assert selection.selected == "baseline"
    assert "latency 1.45x, 95% interval 1.35-1.60, 9 rounds of the baseline's" in verdict.reason


def test_a_ratio_surely_within_five_percent_of_one_is_the_same_speed():
    close = LatencyRatio.of([0.97, 0.98, 0.98, 0.99, 0.99, 0.99, 1.0, 1.0, 1.01])
    assert close.same_speed and close.decided and not close.different
    assert close.settled == 1.0
    # Surely faster, but by less than the margin: still the same speed.
    assert LatencyRatio.of([0.96, 0.97, 0.97, 0.97, 0.98, 0.98, 0.98, 0.98, 0.99]).settled == 1.0
    # Straddling the margin's edge: undecided, so the comparison takes more rounds.
    assert not LatencyRatio.of([1.0, 1.02, 1.03, 1.04, 1.05, 1.06, 1.07, 1.08, 1.1]).decided


def test_the_median_interval_of_nine_rounds_is_the_second_to_the_eighth_smallest():
    assert median_interval([9, 1, 8, 2, 7, 3, 6, 4, 5]) == (2, 8)
    # Too few rounds for 95 %: the whole range, which includes 1 unless all rounds agree.
    assert median_interval([0.9, 1.1, 1.0]) == (0.9, 1.1)
    with pytest.raises(ValueError, match="no values"):
        median_interval([])


@pytest.mark.parametrize("n", [5, 6, 9, 15, 30, 61])
def test_the_median_interval_covers_at_least_95_percent(n):
    """Its coverage, from the binomial law: the median lies outside only when fewer than k
    values fall on one side."""
    low, high = median_interval([float(i) for i in range(n)])
    k = int(low) + 1  # the order statistic the interval starts at
    outside = 2 * sum(math.comb(n, i) for i in range(k)) / 2**n
    assert high == n - k
    assert 1 - outside >= 0.95 or k == 1  # k == 1: as wide as the values allow
