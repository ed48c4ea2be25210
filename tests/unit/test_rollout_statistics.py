"""The confidence bounds the rollout analysis rests on: checked against known answers and
against simulation, so a wrong formula fails here in milliseconds."""

import math
import random

import pytest

from chassis.rollout.statistics import (
    difference_bounds,
    quantile_bounds,
    samples_to_detect,
    wilson,
    z_for,
)

BOUNDS = tuple(2 ** (k / 4) for k in range(-64, 17))


def histogram(values: list[float]) -> tuple[int, ...]:
    import bisect

    counts = [0] * (len(BOUNDS) + 1)
    for value in values:
        counts[bisect.bisect_left(BOUNDS, value)] += 1
    return tuple(counts)


def test_z_matches_the_normal_table():
    assert z_for(0.025) == pytest.approx(1.95996, abs=1e-4)
    assert z_for(0.05) == pytest.approx(1.64485, abs=1e-4)
    with pytest.raises(ValueError, match="alpha"):
        z_for(0)


def test_wilson_matches_a_published_interval():
    # Newcombe (1998), table I: 81/263 at 95 % -> 0.2553 to 0.3662.
    lower, upper = wilson(81, 263, 1.959964)
    assert lower == pytest.approx(0.2553, abs=1e-4)
    assert upper == pytest.approx(0.3662, abs=1e-4)


def test_wilson_of_no_errors_is_not_a_point():
    lower, upper = wilson(0, 100, 1.959964)
    assert lower == 0.0
    assert upper == pytest.approx(0.037, abs=1e-3)  # the "rule of three" neighbourhood


def test_newcombe_difference_matches_the_published_example():
    # Newcombe (1998), method 10, example 56/70 - 48/80: 0.0524 to 0.3339.
    lower, upper = difference_bounds(56, 70, 48, 80, 1.959964)
    assert lower == pytest.approx(0.0524, abs=1e-3)
    assert upper == pytest.approx(0.3339, abs=1e-3)


def test_difference_bounds_cover_the_truth_as_often_as_promised():
    rng = random.Random(7)
    z, misses, trials = z_for(0.025), 0, 2000
    for _ in range(trials):
        a = sum(rng.random() < 0.03 for _ in range(400))
        b = sum(rng.random() < 0.01 for _ in range(800))
        lower, upper = difference_bounds(a, 400, b, 800, z)
        misses += not lower <= 0.02 <= upper
    assert misses / trials < 0.08  # nominal 5 %, small-count intervals run a little wide


def test_quantile_bounds_bracket_the_true_median_of_a_lognormal():
    rng = random.Random(3)
    z, misses = z_for(0.005), 0
    true_median = 1e-4
    for _ in range(200):
        values = [true_median * math.exp(rng.gauss(0, 0.3)) for _ in range(500)]
        lower, _, upper = quantile_bounds(BOUNDS, histogram(values), 0.5, z)
        misses += not lower <= true_median <= upper
    assert misses <= 4  # nominal 1 %; interpolation inside a bucket adds a little


def test_one_slow_outlier_does_not_move_the_p99_lower_bound_to_the_maximum():
    values = [1e-4] * 99 + [0.5]
    lower, _, upper = quantile_bounds(BOUNDS, histogram(values), 0.99, z_for(1e-4))
    assert lower < 2e-4
    assert math.isinf(upper)  # 100 samples cannot bound a p99 from above


def test_samples_to_detect_grows_with_confidence_and_shrinks_with_effect():
    small = samples_to_detect(0.05, 0.2, 2.0, 1.3)
    assert samples_to_detect(0.05, 0.2, 4.0, 1.3) > small
    assert samples_to_detect(0.10, 0.2, 2.0, 1.3) < small
    with pytest.raises(ValueError, match="margin"):
        samples_to_detect(0.01, 0.2, 2.0, 1.3, margin=0.02)
