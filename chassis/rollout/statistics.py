"""Confidence bounds used by the rollout analysis: proportions and histogram quantiles.

Pure arithmetic on counts, so that counts summed over many gateway replicas (or read from
Prometheus) are judged the same way as one gateway's.

The bounds are two-sided at a normal quantile `z` chosen by the policy. The analysis looks at
a rollout many times (several looks per step, several steps, several checks per look); the
policy spends its false-alarm budget evenly over every look it allows (Bonferroni), so the
chance that *any* look of a rollout flags a candidate as good as stable stays below the
budget however the looks fall.
"""

import math
from collections.abc import Sequence
from statistics import NormalDist

_NORMAL = NormalDist()


def z_for(alpha: float) -> float:
    """One-sided normal quantile: P(Z > z) = alpha."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return _NORMAL.inv_cdf(1 - alpha)


def wilson(successes: int, trials: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion: honest near 0 and 1, where errors live."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z / (1 + z2 / trials) * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_bounds(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int, z: float
) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p_a - p_b (built from the two Wilson intervals)."""
    pa = successes_a / trials_a if trials_a else 0.0
    pb = successes_b / trials_b if trials_b else 0.0
    la, ua = wilson(successes_a, trials_a, z)
    lb, ub = wilson(successes_b, trials_b, z)
    difference = pa - pb
    lower = difference - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2)
    upper = difference + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)
    return max(-1.0, lower), min(1.0, upper)


def samples_to_detect(
    effect: float, spread: float, z_alpha: float, z_power: float, margin: float = 0.0
) -> int:
    """Observations a one-sided test needs to see `effect` beyond `margin` with the given
    power, for a statistic whose standard deviation per observation is `spread`."""
    if effect <= margin:
        raise ValueError(f"the effect to detect ({effect}) must exceed the margin ({margin})")
    return math.ceil(((z_alpha + z_power) * spread / (effect - margin)) ** 2)


def histogram_total(counts: Sequence[int]) -> int:
    return int(sum(counts))


def _value_at_rank(bounds: Sequence[float], counts: Sequence[int], rank: float) -> float:
    """The value of the `rank`-th smallest observation (1-based, fractional allowed), read
    from a histogram whose bucket i holds observations in (bounds[i-1], bounds[i]] and whose
    last bucket (one more than bounds) holds those above every bound.

    Inside a bucket the value is interpolated on a log scale (the buckets are spaced
    geometrically, as latencies are); the first bucket interpolates linearly from 0.
    """
    seen = 0.0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index >= len(bounds):
                return math.inf
            upper = bounds[index]
            fraction = (rank - seen) / count
            if index == 0:
                return upper * fraction
            lower = bounds[index - 1]
            return lower * (upper / lower) ** fraction
        seen += count
    return math.inf


def quantile_bounds(
    bounds: Sequence[float], counts: Sequence[int], q: float, z: float
) -> tuple[float, float, float]:
    """(lower, estimate, upper) of the q-quantile from a histogram.

    Distribution-free: the ranks of the order statistics that bracket the quantile come from
    the binomial count of observations below it (normal approximation), so a few outliers
    move the bounds by a few ranks, not to the maximum. `upper` is infinite when the sample
    is too small to bound the quantile from above (a p99 of 100 observations), which the
    analysis reads as "not yet known", never as a breach.
    """
    n = histogram_total(counts)
    if n == 0:
        return 0.0, math.nan, math.inf
    spread = z * math.sqrt(n * q * (1 - q))
    low_rank = n * q - spread
    high_rank = n * q + spread + 1
    lower = _value_at_rank(bounds, counts, low_rank) if low_rank >= 1 else 0.0
    upper = _value_at_rank(bounds, counts, high_rank) if high_rank <= n else math.inf
    estimate = _value_at_rank(bounds, counts, max(1.0, n * q))
    return lower, estimate, upper
