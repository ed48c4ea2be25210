"""What each version of a model did, as cumulative counters: the analysis's only input.

Counters, not samples, so that replicas add up (a fleet is the sum of its gateways) and a
step's window is the difference of two readings, exactly as Prometheus's `increase()` reads
them. The gateway exports these on `/metrics`; `from_exposition` reads them back.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from chassis.errors import CountsError


@dataclass(frozen=True)
class VersionCounts:
    """Cumulative counts of one version: every execution, whatever answered the caller."""

    executions: int = 0  # answered + failed (live, shadow and mirrored runs alike)
    errors: int = 0
    compared: int = 0  # rows whose answer was compared with the other version's
    agreed: int = 0
    bounds: tuple[float, ...] = ()  # latency bucket upper bounds, seconds
    buckets: tuple[int, ...] = ()  # per bucket (not cumulative); one more than bounds
    # CPU seconds per row of each model call, same bounds: what the model itself costs,
    # whatever the load (see chassis.serving.batching).
    cpu_buckets: tuple[int, ...] = ()
    latency_sum: float = field(default=0.0, compare=False)
    # A regressor's mirrored rows by relative difference from the other version's answer
    # (upper bounds, and per-bucket counts with one more for above the last bound). Its
    # `compared` is their total; which of them agree depends on the policy's tolerance.
    difference_bounds: tuple[float, ...] = ()
    difference_buckets: tuple[int, ...] = ()
    # A cascade version's rows by the tier that answered them (chassis_cascade_rows_total).
    small_rows: int = 0
    full_rows: int = 0

    @property
    def answered(self) -> int:
        return int(sum(self.buckets))

    def agreement(self, value_tolerance: float) -> tuple[int, int]:
        """(agreed, compared) rows: a classifier's equal labels; a regressor's rows whose
        relative difference is at most `value_tolerance`, counted up to the largest bucket
        bound not above it, so never more rows than truly agree."""
        if not any(self.difference_buckets):
            return self.agreed, self.compared
        within = sum(
            count
            for bound, count in zip(self.difference_bounds, self.difference_buckets, strict=False)
            if bound <= value_tolerance
        )
        return within, self.compared

    def _combine(self, other: "VersionCounts", sign: int) -> "VersionCounts":
        if self.bounds and other.bounds and self.bounds != other.bounds:
            raise CountsError(
                "latency histograms with different buckets cannot be combined; "
                "run the same Chassis version on every replica"
            )
        if (
            self.difference_bounds
            and other.difference_bounds
            and self.difference_bounds != other.difference_bounds
        ):
            raise CountsError(
                "relative-difference histograms with different buckets cannot be combined; "
                "run the same Chassis version on every replica"
            )
        bounds = self.bounds or other.bounds
        empty = (0,) * (len(bounds) + 1 if bounds else 0)
        difference_bounds = self.difference_bounds or other.difference_bounds
        no_differences = (0,) * (len(difference_bounds) + 1 if difference_bounds else 0)

        def combined(
            mine: tuple[int, ...], theirs: tuple[int, ...], zero: tuple[int, ...] = empty
        ) -> tuple[int, ...]:
            mine, theirs = mine or zero, theirs or zero
            return tuple(a + sign * b for a, b in zip(mine, theirs, strict=True))

        return VersionCounts(
            executions=self.executions + sign * other.executions,
            errors=self.errors + sign * other.errors,
            compared=self.compared + sign * other.compared,
            agreed=self.agreed + sign * other.agreed,
            bounds=bounds,
            buckets=combined(self.buckets, other.buckets),
            cpu_buckets=combined(self.cpu_buckets, other.cpu_buckets),
            latency_sum=self.latency_sum + sign * other.latency_sum,
            difference_bounds=difference_bounds,
            difference_buckets=combined(
                self.difference_buckets, other.difference_buckets, no_differences
            ),
            small_rows=self.small_rows + sign * other.small_rows,
            full_rows=self.full_rows + sign * other.full_rows,
        )

    def __add__(self, other: "VersionCounts") -> "VersionCounts":
        return self._combine(other, 1)

    def since(self, earlier: "VersionCounts") -> "VersionCounts":
        """The window between two readings. A counter that went down means the process
        restarted in between: its reading now is all it did since (Prometheus's rule)."""
        window = self._combine(earlier, -1)
        if (
            window.executions < 0
            or window.errors < 0
            or window.compared < 0
            or window.small_rows < 0
            or window.full_rows < 0
            or any(b < 0 for b in window.buckets + window.cpu_buckets + window.difference_buckets)
        ):
            return self
        return window


ModelCounts = dict[int, VersionCounts]


def add_models(readings: Iterable[ModelCounts]) -> ModelCounts:
    total: ModelCounts = {}
    for reading in readings:
        for version, counts in reading.items():
            total[version] = total.get(version, VersionCounts()) + counts
    return total


def window(now: ModelCounts, start: ModelCounts) -> ModelCounts:
    return {v: c.since(start.get(v, VersionCounts())) for v, c in now.items()}


def _histogram(samples: Sequence[tuple[str, float]]) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """(bounds, per-bucket counts) from cumulative `le` samples."""
    ordered = sorted(((float(le), count) for le, count in samples), key=lambda pair: pair[0])
    bounds = tuple(le for le, _ in ordered if le != float("inf"))
    cumulative = [count for _, count in ordered]
    per_bucket = [int(c - (cumulative[i - 1] if i else 0)) for i, c in enumerate(cumulative)]
    return bounds, tuple(per_bucket)


def from_exposition(text: str, model: str) -> ModelCounts:
    """One gateway's counters for `model`, from its `/metrics` text."""
    executions: dict[int, float] = {}
    errors: dict[int, float] = {}
    compared: dict[int, float] = {}
    agreed: dict[int, float] = {}
    le_samples: dict[int, list[tuple[str, float]]] = {}
    cpu_samples: dict[int, list[tuple[str, float]]] = {}
    difference_samples: dict[int, list[tuple[str, float]]] = {}
    sums: dict[int, float] = {}
    tiers: dict[tuple[int, str], float] = {}
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as error:
        raise CountsError(f"unreadable metrics exposition: {error}") from error
    for family in families:
        for sample in family.samples:
            labels = sample.labels
            if labels.get("model") != model or "version" not in labels:
                continue
            try:
                version = int(labels["version"])
            except ValueError:
                continue
            name = sample.name
            if name == "chassis_requests_total":
                executions[version] = executions.get(version, 0) + sample.value
            elif name == "chassis_errors_total":
                errors[version] = errors.get(version, 0) + sample.value
                executions[version] = executions.get(version, 0) + sample.value
            elif name == "chassis_shadow_comparisons_total":
                compared[version] = compared.get(version, 0) + sample.value
                if labels.get("agreed") == "yes":
                    agreed[version] = agreed.get(version, 0) + sample.value
            elif name == "chassis_request_latency_seconds_bucket":
                le_samples.setdefault(version, []).append((labels["le"], sample.value))
            elif name == "chassis_model_cpu_seconds_bucket":
                cpu_samples.setdefault(version, []).append((labels["le"], sample.value))
            elif name == "chassis_shadow_relative_difference_bucket":
                difference_samples.setdefault(version, []).append((labels["le"], sample.value))
            elif name == "chassis_request_latency_seconds_sum":
                sums[version] = sample.value
            elif name == "chassis_cascade_rows_total":
                key = (version, labels.get("tier", ""))
                tiers[key] = tiers.get(key, 0) + sample.value
    versions = set(executions) | set(compared) | set(le_samples) | set(difference_samples)
    versions |= {version for version, _ in tiers}
    result: ModelCounts = {}
    for version in versions:
        bounds, buckets = _histogram(le_samples.get(version, []))
        cpu_bounds, cpu_buckets = _histogram(cpu_samples.get(version, []))
        if bounds and cpu_bounds and cpu_bounds != bounds:
            raise CountsError("the CPU and latency histograms of a version differ in buckets")
        difference_bounds, difference_buckets = _histogram(difference_samples.get(version, []))
        # A regressor's mirrored rows are counted in its difference histogram only.
        compared_rows = compared.get(version, 0) + sum(difference_buckets)
        result[version] = VersionCounts(
            executions=int(executions.get(version, 0)),
            errors=int(errors.get(version, 0)),
            compared=int(compared_rows),
            agreed=int(agreed.get(version, 0)),
            bounds=bounds or cpu_bounds,
            buckets=buckets,
            cpu_buckets=cpu_buckets,
            latency_sum=sums.get(version, 0.0),
            difference_bounds=difference_bounds,
            difference_buckets=difference_buckets,
            small_rows=int(tiers.get((version, "small"), 0)),
            full_rows=int(tiers.get((version, "full"), 0)),
        )
    return result
