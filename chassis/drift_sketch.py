"""A window's numeric column as mergeable state of fixed size, and the drift tests on it.

What the streamed drift check (chassis/drift_stream.py) keeps of each column instead of its
values, so a window of any length is judged in bounded memory: per column, a histogram of
GRID_BINS equal bins over the reference's [min, max], the exact count and sum of the values
below and above that range, and the column's distinct values while it has at most
DISTINCT_LIMIT of them. Two sketches of the same column (two batches, two files, two
workers) merge by adding, so the order and the split of the reading do not matter.

The tests are the ones Evidently 0.7 picks by default for a reference of more than 1,000
rows (`_get_default_stattest`): a column with at most 5 distinct values in reference and
window together gets the Jensen-Shannon distance of the value shares (computed exactly from
the counts); any other the Wasserstein distance over the reference's standard deviation.
That distance is the area between the two CDFs: outside the reference's range it is exact
from the tails' counts and sums (the reference's CDF is 0 below, 1 above); inside, each
bin's value is taken at the bin's middle, which is off by at most half the bin's width
times the bin's mass on each side. The bound over all bins is at most one bin's width
(reported per column as `error_bound`, normed like the score): 1/65,536 of the
reference's range, about 1e-4 of a standard deviation for a normal reference of 5,000 rows,
against Evidently's threshold of 0.1.
"""

from dataclasses import dataclass, field

import numpy as np

# Bins of the histogram per column: 512 KiB of counts per column, and the Wasserstein
# distance within one bin's width of the exact one.
GRID_BINS = 65_536
# Evidently treats a column with at most this many distinct values (reference and window
# together) as categorical-like: the Jensen-Shannon distance of the value shares.
DISTINCT_LIMIT = 5
# Evidently's floor on the reference's standard deviation when it norms the distance.
SMALLEST_NORM = 0.001

WASSERSTEIN = "Wasserstein distance (normed)"
JENSEN_SHANNON = "Jensen-Shannon distance"
DEFAULT_THRESHOLD = 0.1  # both tests' own threshold in Evidently


@dataclass(frozen=True)
class Grid:
    """A column's histogram range, taken from the finite reference values."""

    low: float
    high: float

    @property
    def width(self) -> float:
        return (self.high - self.low) / GRID_BINS


@dataclass
class ColumnSketch:
    """One column's finite values of a window, as state that merges by adding."""

    grid: Grid
    counts: np.ndarray = field(default_factory=lambda: np.zeros(GRID_BINS, dtype=np.int64))
    below_count: int = 0
    below_sum: float = 0.0
    above_count: int = 0
    above_sum: float = 0.0
    # Distinct value -> count while there are at most DISTINCT_LIMIT; None after.
    distinct: dict[float, int] | None = field(default_factory=dict[float, int])

    @property
    def rows(self) -> int:
        return int(self.counts.sum()) + self.below_count + self.above_count

    def add(self, values: np.ndarray) -> None:
        """Count `values` (finite, any float dtype) in."""
        x = values.astype(np.float64, copy=False)
        low, high = self.grid.low, self.grid.high
        below, above = x < low, x > high
        if below.any():
            self.below_count += int(below.sum())
            self.below_sum += float(x[below].sum())
        if above.any():
            self.above_count += int(above.sum())
            self.above_sum += float(x[above].sum())
        inside = x[~(below | above)]
        if high > low:
            index = ((inside - low) * (GRID_BINS / (high - low))).astype(np.int64)
            np.minimum(index, GRID_BINS - 1, out=index)  # the reference's maximum itself
            self.counts += np.bincount(index, minlength=GRID_BINS)
        else:  # a constant reference: everything inside is that one value
            self.counts[0] += len(inside)
        self._count_distinct(x)

    def _count_distinct(self, x: np.ndarray) -> None:
        if self.distinct is None:
            return
        seen = np.zeros(len(x), dtype=bool)
        for value in self.distinct:  # at most DISTINCT_LIMIT comparisons a value
            same = x == value
            self.distinct[value] += int(same.sum())
            seen |= same
        new, counts = np.unique(x[~seen], return_counts=True)
        if len(self.distinct) + len(new) > DISTINCT_LIMIT:
            self.distinct = None  # continuous: the histogram alone from here on
            return
        for value, count in zip(new.tolist(), counts.tolist(), strict=True):
            self.distinct[float(value)] = int(count)

    def merge(self, other: "ColumnSketch") -> None:
        if other.grid != self.grid:
            raise ValueError("sketches of different grids cannot merge")
        self.counts += other.counts
        self.below_count += other.below_count
        self.below_sum += other.below_sum
        self.above_count += other.above_count
        self.above_sum += other.above_sum
        if self.distinct is None or other.distinct is None:
            self.distinct = None
        else:
            for value, count in other.distinct.items():
                self.distinct[value] = self.distinct.get(value, 0) + count
            if len(self.distinct) > DISTINCT_LIMIT:
                self.distinct = None


@dataclass(frozen=True)
class SketchScore:
    method: str
    score: float
    # How far the score may be from the exact one on the same values (0: exact).
    error_bound: float


def grid_of(reference: np.ndarray) -> Grid:
    return Grid(float(np.min(reference)), float(np.max(reference)))


def score(reference: np.ndarray, sketch: ColumnSketch) -> SketchScore:
    """The test Evidently picks for this column (reference of more than 1,000 rows), on
    the finite `reference` values and the window's sketch of the same column."""
    reference = reference.astype(np.float64, copy=False)
    if sketch.distinct is not None:
        keys = set(np.unique(reference).tolist()) | set(sketch.distinct)
        if len(keys) <= DISTINCT_LIMIT:
            return SketchScore(JENSEN_SHANNON, jensen_shannon(reference, sketch.distinct), 0.0)
    return wasserstein_normed(reference, sketch)


def jensen_shannon(reference: np.ndarray, current: dict[float, int]) -> float:
    keys = sorted(set(np.unique(reference).tolist()) | set(current))
    values, counts = np.unique(reference, return_counts=True)
    reference_counts = dict(zip(values.tolist(), counts.tolist(), strict=True))
    p = np.array([reference_counts.get(k, 0) for k in keys], dtype=np.float64)
    q = np.array([current.get(k, 0) for k in keys], dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    middle = (p + q) / 2
    # scipy's jensenshannon (natural log), as Evidently calls it: sqrt of the mean of the
    # two relative entropies to the middle, a share of 0 adding nothing.
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log(p / middle), 0.0)
        right = np.where(q > 0, q * np.log(q / middle), 0.0)
    return float(np.sqrt(max(float(left.sum() + right.sum()), 0.0) / 2))


def wasserstein_normed(reference: np.ndarray, sketch: ColumnSketch) -> SketchScore:
    """The area between the reference's and the window's CDFs over the reference's
    standard deviation (Evidently's `wasserstein` test), from the sketch."""
    n = sketch.rows
    norm = max(float(np.std(reference)), SMALLEST_NORM)
    grid = sketch.grid
    low, high = grid.low, grid.high
    # Outside [low, high] the reference's CDF is 0 (below) or 1 (above): the area is each
    # tail value's distance to the range, summed, exactly.
    tails = (sketch.below_count * low - sketch.below_sum) + (
        sketch.above_sum - sketch.above_count * high
    )
    if high == low:
        return SketchScore(WASSERSTEIN, tails / n / norm, 0.0)
    edges = np.linspace(low, high, GRID_BINS + 1)
    index = np.minimum(
        ((reference - low) * (GRID_BINS / (high - low))).astype(np.int64), GRID_BINS - 1
    )
    reference_mass = np.bincount(index, minlength=GRID_BINS) / len(reference)
    current_mass = sketch.counts / n
    # Each CDF at the middle of each bin, as if the bin's mass were spread evenly in it.
    reference_cdf = np.cumsum(reference_mass) - reference_mass / 2
    current_cdf = sketch.below_count / n + np.cumsum(current_mass) - current_mass / 2
    area = float(np.sum(np.abs(reference_cdf - current_cdf) * np.diff(edges)))
    # Within a bin each CDF is off its middle value by at most half the bin's mass.
    bound = grid.width * float(np.sum(reference_mass + current_mass)) / 2
    return SketchScore(WASSERSTEIN, (area + tails / n) / norm, bound / norm)
