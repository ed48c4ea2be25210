"""Feeds for timing candidates, and interleaved timing for comparing models on a busy machine.

One model's timing is chassis.runtime.time_runs_ms. Comparing two models timed one after
the other measures the machine as much as the models: on a shared 2-core machine the same
fp32 file measured 18 ms in one minute and 26 ms in the next. `time_interleaved` times the
models in alternating short blocks, so each round sees the same load for all of them, and
the speed-up is read per round (`round_ratios`) and summarized by its median.
"""

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from chassis.runtime import time_runs_ms, timed_runs_ms

if TYPE_CHECKING:
    import onnxruntime

__all__ = [
    "Feeds",
    "InterleavedTimes",
    "LatencyRatio",
    "RatioSummary",
    "batch_of",
    "median_interval",
    "round_ratios",
    "summarize_ratios",
    "time_interleaved",
    "time_runs_ms",
]

Feeds = dict[str, np.ndarray]


def batch_of(feeds: Feeds, size: int) -> Feeds:
    """`size` rows taken from the start of every input, cycling when there are fewer rows."""
    rows = len(next(iter(feeds.values())))
    index = np.arange(size) % rows
    return {name: np.ascontiguousarray(value[index]) for name, value in feeds.items()}


@dataclass(frozen=True)
class InterleavedTimes:
    """Per model: the p50 of each round's block, and every timed run (ms)."""

    round_p50_ms: dict[str, list[float]]
    runs_ms: dict[str, list[float]]

    def p50_ms(self, name: str) -> float:
        """Median over rounds of the per-round p50."""
        return statistics.median(self.round_p50_ms[name])

    def p99_ms(self, name: str) -> float:
        """p99 over every timed run of all rounds."""
        return float(np.percentile(self.runs_ms[name], 99))


def time_interleaved(
    sessions: dict[str, "onnxruntime.InferenceSession"],
    feeds: Feeds,
    *,
    rounds: int,
    runs: int,
    warmup: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> InterleavedTimes:
    """`rounds` rounds; in each, every session runs `warmup` untimed then `runs` timed calls on
    the same feeds, one session after the other, the order reversed every other round so no
    model always runs right after another. Each model keeps its own session throughout; the
    untimed calls absorb the switch (caches, the previous session's spinning threads)."""
    if rounds < 1 or runs < 1:
        raise ValueError(f"rounds and runs must be at least 1, got {rounds} and {runs}")
    names = list(sessions)
    round_p50: dict[str, list[float]] = {name: [] for name in names}
    every_run: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            block = timed_runs_ms(sessions[name], feeds, warmup=warmup, repeats=runs, clock=clock)
            round_p50[name].append(float(np.median(block)))
            every_run[name].extend(block.tolist())
    return InterleavedTimes(round_p50, every_run)


def round_ratios(times: InterleavedTimes, reference: str, other: str) -> list[float]:
    """reference p50 / other p50 in each round: the speed-up of `other`, round by round."""
    pairs = zip(times.round_p50_ms[reference], times.round_p50_ms[other], strict=True)
    return [a / b for a, b in pairs]


@dataclass(frozen=True)
class RatioSummary:
    median: float
    low: float
    high: float
    rounds: int
    at_least: int  # rounds whose ratio reached `threshold`
    threshold: float


def summarize_ratios(ratios: list[float], threshold: float = 1.5) -> RatioSummary:
    return RatioSummary(
        median=statistics.median(ratios),
        low=min(ratios),
        high=max(ratios),
        rounds=len(ratios),
        at_least=sum(r >= threshold for r in ratios),
        threshold=threshold,
    )


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median of `values`: the k-th smallest and k-th
    largest, with k the largest order whose two-sided binomial coverage reaches
    `confidence` (9 rounds: the 2nd and 8th, 96 %). Fewer values than that needs give the
    whole range, which then says little, as it should."""
    n = len(values)
    if n == 0:
        raise ValueError("no values to take a median interval of")
    ordered = sorted(values)
    k = 1  # 1-based order: the whole range
    cumulative = 0.0
    for order in range(1, n // 2 + 1):
        # P(Binomial(n, 1/2) <= order - 1): the chance the median lies below ordered[order-1]
        cumulative += math.comb(n, order - 1) / 2**n
        if 1.0 - 2.0 * cumulative < confidence:
            break
        k = order
    return ordered[k - 1], ordered[n - k]


# Latency ratios within 5 % of 1 are the same speed: smaller differences are what the
# order of timing and a busy machine produce between a model and itself (measured: the
# baseline against itself gave medians 0.97 to 1.01).
SAME_SPEED_MARGIN = 0.05


@dataclass(frozen=True)
class LatencyRatio:
    """A candidate's latency over the baseline's (below 1: faster), from interleaved rounds
    timed on the same load, with a 95 % interval for the median of the per-round ratios."""

    median: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, ratios: list[float]) -> "LatencyRatio":
        low, high = median_interval(ratios)
        return cls(statistics.median(ratios), low, high, len(ratios))

    @property
    def different(self) -> bool:
        """Surely faster or slower: the whole interval lies beyond the same-speed margin."""
        return self.high < 1.0 - SAME_SPEED_MARGIN or self.low > 1.0 + SAME_SPEED_MARGIN

    @property
    def same_speed(self) -> bool:
        """Surely within the margin: the whole interval lies inside it."""
        return self.low >= 1.0 - SAME_SPEED_MARGIN and self.high <= 1.0 + SAME_SPEED_MARGIN

    @property
    def decided(self) -> bool:
        """Whether more rounds could still change the verdict."""
        return self.different or self.same_speed

    @property
    def settled(self) -> float:
        """The ratio a decision may use: the median when surely different, else 1.0, so
        timing noise on a busy machine cannot change which candidate ships."""
        return self.median if self.different else 1.0

    def describe(self) -> str:
        interval = (
            f"{self.median:.2f}x, 95% interval {self.low:.2f}-{self.high:.2f}, {self.rounds} rounds"
        )
        if self.different:
            return f"latency {interval} of the baseline's"
        if self.same_speed:
            return f"latency the same as the baseline's ({interval})"
        return f"latency not shown to differ from the baseline's ({interval}); counted as 1.00x"
