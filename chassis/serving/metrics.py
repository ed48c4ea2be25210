"""Prometheus metrics per model version, on a registry of the gateway's own.

A request adds to plain numbers: its (model, version, role) tally and the latency buckets
and class counts (a regressor: the sum and count of its predicted values) of its version.
The Prometheus families are built from those numbers when /metrics is scraped.
prometheus_client's labelled children take a lock and a few Python calls per update, and
four updates a request cost ~6 us, more than half the model itself. Updates and scrapes
all run on the event loop's thread, so nothing needs a lock. The exposition (names,
labels, `_created` series) is what Counter and Histogram give. What is not counted per
request (readiness, rollout generation, versions served, prediction-log drops) is read from
the gateway when scraped (`Readings`). Every family is listed in docs/metrics.md.
"""

import os
import platform
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from chassis import __version__
from chassis.task import REGRESSION, Task

# Four buckets per doubling, 15 us to 16 s: a 2x slowdown moves a quantile four buckets, so
# the rollout analysis can compare quantiles of two versions from these counts alone (and
# from their sum over replicas, or Prometheus's). The hot path's bisect costs the same.
LATENCY_BUCKETS = tuple(2 ** (k / 4) for k in range(-64, 17))
BUCKET_LABELS = [*(floatToGoString(bound) for bound in LATENCY_BUCKETS), "+Inf"]
# A regressor's mirrored predictions are compared by relative difference |a - b| / |b|:
# four buckets per doubling from ~1e-6 to 16, so the rollout analysis counts the rows within
# its policy's tolerance from these counts alone (the bucket at or below it; see
# rollout/counts.py), summed over replicas like every other counter.
DIFFERENCE_BUCKETS = tuple(2 ** (k / 4) for k in range(-80, 17))
DIFFERENCE_LABELS = [*(floatToGoString(bound) for bound in DIFFERENCE_BUCKETS), "+Inf"]
# A classifier's confidence (the top class's softmax probability of each row) lies in
# [1/classes, 1]: tenths, and finer near 1 where a confident model's rows pile up.
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
CONFIDENCE_LABELS = [*(floatToGoString(bound) for bound in CONFIDENCE_BUCKETS), "+Inf"]
# The softmax behind a confidence costs ~6 us a request, 15-20 % of the gateway's own CPU for
# a digits-sized MLP (32 us a request in process): one live answer in this many is observed,
# a sample whose distribution is the traffic's (its count is not the requests').
CONFIDENCE_SAMPLE = 16


@dataclass(frozen=True)
class LiveReading:
    """One version's live scores on this replica: its last feedback rows and their mean
    (a classifier's accuracy, a regressor's mean absolute error)."""

    model: str
    version: int
    task: Task
    rows: int
    mean: float


@dataclass
class Readings:
    """What the gateway holds elsewhere and /metrics reads when scraped (no hot-path cost):
    its readiness, each model's rollout generation, the versions it serves and its
    prediction log's dropped rows."""

    ready: bool = False  # what /readyz says: 200 (models serve, not draining) or 503
    generations: dict[str, int] = field(default_factory=dict[str, int])
    # (model, version, role): stable, candidate (canary, shadow, blue-green idle), warm.
    served: list[tuple[str, int, str]] = field(default_factory=list[tuple[str, int, str]])
    log_dropped_rows: dict[str, int] = field(default_factory=dict[str, int])
    live: list[LiveReading] = field(default_factory=list[LiveReading])
    # (model, version) -> the live accuracy its gates ask for (tag chassis.accuracy_gate).
    accuracy_gates: dict[tuple[str, int], float] = field(
        default_factory=dict[tuple[str, int], float]
    )


def code_class(status: int) -> str:
    """ "4xx" or "5xx": the class alert rules and dashboards group statuses by."""
    return f"{status // 100}xx"


def created_series_enabled() -> bool:
    # The switch prometheus_client's own Counter and Histogram read.
    flag = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False")
    return flag.lower() not in ("true", "1", "t")


class VersionSeries:
    """What one (model, version) has answered: latency histogram, classes, errors, shadow."""

    __slots__ = (
        "buckets",
        "classes",
        "confidence",
        "confidence_countdown",
        "confidence_sum",
        "cpu_buckets",
        "cpu_sum",
        "created",
        "difference_sum",
        "differences",
        "errors",
        "labels",
        "latency_sum",
        "queue_buckets",
        "queue_sum",
        "shadow",
        "value_count",
        "value_sum",
    )

    def __init__(self, model: str, version: str) -> None:
        self.labels = [model, version]
        self.created = time.time()
        # buckets[i]: requests with latency <= LATENCY_BUCKETS[i] and above the bound before
        # (the last one: above every bound); cumulated at scrape time.
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        # CPU seconds per row of each model call (one observation per call).
        self.cpu_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.cpu_sum = 0.0
        self.classes: dict[int, list[float]] = {}  # label -> [count, created]
        # Each answered row's confidence (CONFIDENCE_BUCKETS), a classifier's only.
        self.confidence = [0] * (len(CONFIDENCE_BUCKETS) + 1)
        self.confidence_sum = 0.0
        self.confidence_countdown = 1  # the first answer is observed, then one in a sample
        # Each queued request's wait for its batch (LATENCY_BUCKETS); inline answers wait
        # for nothing and are not observed (the hot path stays as it was).
        self.queue_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.queue_sum = 0.0
        self.errors: dict[str, list[float]] = {}  # status -> [count, created]
        self.shadow: dict[str, list[float]] = {}  # "yes"/"no" -> [count, created]
        # A regressor's predicted values (live answers), and the relative differences of its
        # mirrored predictions from the other version's (per bucket, see DIFFERENCE_BUCKETS).
        self.value_sum = 0.0
        self.value_count = 0
        self.differences = [0] * (len(DIFFERENCE_BUCKETS) + 1)
        self.difference_sum = 0.0

    def record_cpu(self, rows: int, cpu_seconds: float) -> None:
        per_row = cpu_seconds / rows if rows else cpu_seconds
        self.cpu_buckets[bisect_left(LATENCY_BUCKETS, per_row)] += 1
        self.cpu_sum += per_row

    def record_wait(self, seconds: float) -> None:
        self.queue_buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.queue_sum += seconds


class RoleTally:
    """The requests one (model, version) answered in one role; `record` is the hot path."""

    __slots__ = ("created", "labels", "live", "requests", "series")

    def __init__(self, series: VersionSeries, role: str) -> None:
        self.labels = [*series.labels, role]
        self.created = time.time()
        self.requests = 0
        self.series = series
        # Mirrored runs ("shadow") are counted, but their latency (they wait behind live
        # work, off the request path) and their classes (nobody received them) are not
        # what users see, so only answers given feed the histogram and the class counts.
        self.live = role != "shadow"

    def record(self, seconds: float, predictions: list[int], logits: np.ndarray | None) -> None:
        self.requests += 1
        if not self.live:
            return
        series = self.series
        # bisect_left: the first bound >= seconds, Prometheus's `le` (less or equal).
        series.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        series.latency_sum += seconds
        classes = series.classes
        for label in predictions:
            tally = classes.get(label)
            if tally is None:
                classes[label] = [1, time.time()]
            else:
                tally[0] += 1
        series.confidence_countdown -= 1
        if logits is None or series.confidence_countdown:
            return
        series.confidence_countdown = CONFIDENCE_SAMPLE
        # The top class's softmax probability is 1 / sum(exp(logit - top logit)).
        shifted = logits - logits.max(axis=1, keepdims=True)
        confidences: list[float] = (1.0 / np.exp(shifted).sum(axis=1)).tolist()
        buckets = series.confidence
        for confidence in confidences:
            buckets[bisect_left(CONFIDENCE_BUCKETS, confidence)] += 1
        series.confidence_sum += sum(confidences)

    def record_values(self, seconds: float, values: list[float]) -> None:
        """`record` for a regressor: its predicted values instead of classes."""
        self.requests += 1
        if not self.live:
            return
        series = self.series
        series.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        series.latency_sum += seconds
        series.value_sum += sum(values)
        series.value_count += len(values)


K = TypeVar("K")


def count_into(tallies: dict[K, list[float]], key: K, amount: int) -> None:
    """Add `amount` to a counter kept as [value, created]: the collectors' shared form (a
    plain list, no prometheus_client Counter per label set on the hot path)."""
    tally = tallies.get(key)
    if tally is None:
        tallies[key] = [amount, time.time()]
    else:
        tally[0] += amount


class GatewayMetrics(Collector):
    def __init__(self) -> None:
        self.series: dict[tuple[str, str], VersionSeries] = {}
        # Every error answer by (model, status): refusals before any version ran (4xx from
        # validation, 404, 401, limits) as well as versions' failures. Model "" when the
        # path names no served model (a client's path is not a label value).
        self.answered_errors: dict[tuple[str, str], list[float]] = {}
        # Models whose champion alias names a version this gateway refused to serve.
        self.champion_mismatch: dict[str, tuple[int, int, str]] = {}
        # Each named model's readiness state (serving, loading, retrying, missing).
        self.model_states: dict[str, str] = {}
        self.tallies: dict[tuple[str, str, str], RoleTally] = {}
        # A text model's refused texts by (model, reason): too_long, empty, not_text.
        self.text_refused: dict[tuple[str, str], list[float]] = {}
        # Predict requests being answered now, by model (the autoscaler's signal).
        self.in_flight: dict[str, int] = {}
        # Failed loads and verifications, by "model\0version\0check".
        self.load_failures: dict[str, list[float]] = {}
        # Feedback joined with its prediction, by (model, version, outcome): correct, wrong
        # (a classifier's), scored (a regressor's); with a regressor's absolute errors summed
        # by (model, version). Refused feedback by (model, reason).
        self.feedback: dict[tuple[str, str, str], list[float]] = {}
        self.feedback_errors: dict[tuple[str, str], list[float]] = {}
        self.feedback_refused: dict[tuple[str, str], list[float]] = {}
        # Feedback items this replica received and the replica that answered joined, by model.
        self.feedback_forwarded: dict[str, list[float]] = {}
        # Sanitization (serving/sanitizer.py): values changed by (model, feature, action:
        # clipped, filled), rows refused by (model, reason: missing, out_of_range), and each
        # model's mode while it is on. Features are the model's own inputs (bounded), only
        # those ever changed get a series.
        self.sanitized: dict[tuple[str, str, str], list[float]] = {}
        self.sanitization_refused: dict[tuple[str, str], list[float]] = {}
        self.sanitization_modes: dict[str, str] = {}
        # Set by the gateway: what /metrics reads from it when scraped.
        self.readings: Callable[[], Readings] = Readings
        self.registry = CollectorRegistry()
        self.registry.register(self)
        # The process's CPU seconds and resident memory (process_*, read from /proc when
        # scraped; nothing on other systems): what the system dashboard shows per replica.
        ProcessCollector(registry=self.registry)

    def version(self, model: str, version: str) -> VersionSeries:
        series = self.series.get((model, version))
        if series is None:
            series = self.series[(model, version)] = VersionSeries(model, version)
        return series

    def tally(self, model: str, version: str, role: str) -> RoleTally:
        """The tally to `record` a request in; callers keep it, the lookup is not free."""
        tally = self.tallies.get((model, version, role))
        if tally is None:
            tally = RoleTally(self.version(model, version), role)
            self.tallies[(model, version, role)] = tally
        return tally

    def observe(
        self,
        model: str,
        version: str,
        role: str,
        seconds: float,
        predictions: list[int],
        logits: np.ndarray | None = None,
    ) -> None:
        """One answered request (the hot path keeps its tally and calls `record`)."""
        self.tally(model, version, role).record(seconds, predictions, logits)

    def count_load_failure(self, model: str, version: int, check: str) -> None:
        """A version that failed to load or verify: `check` is gates (no passed, signed
        verdict), sha256 (bytes unlike their digest) or load (the store or runtime failed)."""
        count_into(self.load_failures, f"{model}\0{version}\0{check}", 1)

    def count_error(self, model: str, version: str, status: str) -> None:
        count_into(self.version(model, version).errors, status, 1)

    def set_champion_mismatch(self, model: str, mismatch: tuple[int, int, str] | None) -> None:
        """(champion alias, version served, why not followed), or None when they agree."""
        if mismatch is None:
            self.champion_mismatch.pop(model, None)
        else:
            self.champion_mismatch[model] = mismatch

    def set_model_state(self, model: str, state: str) -> None:
        self.model_states[model] = state

    def count_error_answer(self, model: str, status: int) -> None:
        tally = self.answered_errors.get((model, str(status)))
        if tally is None:
            self.answered_errors[(model, str(status))] = [1, time.time()]
        else:
            tally[0] += 1

    def count_text_refused(self, model: str, reason: str) -> None:
        tally = self.text_refused.get((model, reason))
        if tally is None:
            self.text_refused[(model, reason)] = [1, time.time()]
        else:
            tally[0] += 1

    def count_shadow(self, model: str, version: str, agreed: int, compared: int) -> None:
        shadow = self.version(model, version).shadow
        count_into(shadow, "yes", agreed)
        count_into(shadow, "no", compared - agreed)

    def count_differences(self, model: str, version: str, relative: list[float]) -> None:
        """A regressor's mirrored rows: each one's relative difference from the other's."""
        series = self.version(model, version)
        differences = series.differences
        for value in relative:
            differences[bisect_left(DIFFERENCE_BUCKETS, value)] += 1
        series.difference_sum += sum(relative)

    def count_feedback(self, model: str, version: str, outcome: str, score: float) -> None:
        """One accepted feedback row; a regressor's `score` is its absolute error."""
        count_into(self.feedback, (model, version, outcome), 1)
        if outcome == "scored":
            errors = self.feedback_errors.get((model, version))
            if errors is None:
                self.feedback_errors[(model, version)] = [score, 1]
            else:
                errors[0] += score
                errors[1] += 1

    def count_feedback_refused(self, model: str, reason: str) -> None:
        count_into(self.feedback_refused, (model, reason), 1)

    def count_feedback_forwarded(self, model: str, items: int) -> None:
        count_into(self.feedback_forwarded, model, items)

    def count_sanitized(self, model: str, feature: str, action: str, values: int) -> None:
        count_into(self.sanitized, (model, feature, action), values)

    def count_sanitization_refused(self, model: str, reason: str, rows: int) -> None:
        count_into(self.sanitization_refused, (model, reason), rows)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        created = created_series_enabled()
        requests = CounterMetricFamily(
            "chassis_requests", "Predict requests answered", labels=["model", "version", "role"]
        )
        for tally in self.tallies.values():
            requests.add_metric(
                tally.labels, tally.requests, created=tally.created if created else None
            )
        errors = CounterMetricFamily(
            "chassis_errors",
            "Predict requests that failed, by status",
            labels=["model", "version", "status"],
        )
        latency = HistogramMetricFamily(
            "chassis_request_latency_seconds",
            "Predict latency in the gateway",
            labels=["model", "version"],
        )
        cpu = HistogramMetricFamily(
            "chassis_model_cpu_seconds",
            "CPU time per row of each model call, on the calling thread (load-independent)",
            labels=["model", "version"],
        )
        queue = HistogramMetricFamily(
            "chassis_queue_wait_seconds",
            "Wait of each queued predict request for its batch to start (requests answered "
            "at once, with nothing queued, waited for nothing and are not observed)",
            labels=["model", "version"],
        )
        classes = CounterMetricFamily(
            "chassis_predicted_class", "Predicted classes", labels=["model", "version", "label"]
        )
        confidence = HistogramMetricFamily(
            "chassis_prediction_confidence_ratio",
            "A classifier's confidence in each answered row: the top class's softmax "
            "probability of the model's logits",
            labels=["model", "version"],
        )
        shadow = CounterMetricFamily(
            "chassis_shadow_comparisons",
            "Shadow predictions compared with the stable answer",
            labels=["model", "version", "agreed"],
        )
        values = SummaryMetricFamily(
            "chassis_predicted_value",
            "A regressor's predicted values (sum and count of the answers given)",
            labels=["model", "version"],
        )
        differences = HistogramMetricFamily(
            "chassis_shadow_relative_difference",
            "A regressor's mirrored predictions: |this - other| / |other| per row",
            labels=["model", "version"],
        )
        for series in self.series.values():
            for family, tallies in (
                (errors, series.errors),
                (classes, series.classes),
                (shadow, series.shadow),
            ):
                for key, (count, since) in tallies.items():
                    family.add_metric(
                        [*series.labels, str(key)], count, created=since if created else None
                    )
            for family, counts, total, bucket_labels in (
                (latency, series.buckets, series.latency_sum, BUCKET_LABELS),
                (cpu, series.cpu_buckets, series.cpu_sum, BUCKET_LABELS),
                (queue, series.queue_buckets, series.queue_sum, BUCKET_LABELS),
                (confidence, series.confidence, series.confidence_sum, CONFIDENCE_LABELS),
            ):
                if not any(counts):
                    continue  # a version with errors only has no latency series, as before
                _add_histogram(family, series, counts, total, created, bucket_labels)
            if series.value_count:
                values.add_metric(series.labels, series.value_count, series.value_sum)
            if any(series.differences):
                _add_histogram(
                    differences,
                    series,
                    series.differences,
                    series.difference_sum,
                    created,
                    DIFFERENCE_LABELS,
                )
        answered_errors = CounterMetricFamily(
            "chassis_http_errors",
            "Requests answered with an error status, by status and its class (4xx, 5xx; "
            "client errors included; the rollout analysis reads chassis_errors_total, which "
            "counts versions' failures only)",
            labels=["model", "status", "code_class"],
        )
        for (model, status), (count, since) in self.answered_errors.items():
            answered_errors.add_metric(
                [model, status, code_class(int(status))],
                count,
                created=since if created else None,
            )
        mismatch = GaugeMetricFamily(
            "chassis_champion_mismatch",
            "1 while the champion alias names a version this gateway refuses to serve "
            "(failed gates or digest); it keeps serving the version labelled served",
            labels=["model", "champion", "served"],
        )
        for model, (champion, served, _) in self.champion_mismatch.items():
            mismatch.add_metric([model, str(champion), str(served)], 1)
        serving = GaugeMetricFamily(
            "chassis_model_serving",
            "1 while the model serves; 0 while it is not, labelled with why (loading, "
            "retrying: the registry or artifact store did not answer, missing: not "
            "registered, no champion or its version refused)",
            labels=["model", "state"],
        )
        for model, state in self.model_states.items():
            serving.add_metric([model, state], 1 if state == "serving" else 0)
        refused = CounterMetricFamily(
            "chassis_text_refused",
            "Requests to a text model refused (422) before the model ran, by reason: too_long "
            "(more tokens than the answering version reads), empty, not_text",
            labels=["model", "reason"],
        )
        for (model, reason), (count, since) in self.text_refused.items():
            refused.add_metric([model, reason], count, created=since if created else None)
        yield from self._gateway_families(created)
        yield from _feedback_families(self, created)
        yield from _sanitization_families(self, created)
        yield from (
            requests,
            errors,
            latency,
            cpu,
            queue,
            confidence,
            classes,
            shadow,
            answered_errors,
            mismatch,
            serving,
            values,
            differences,
            refused,
        )

    def _gateway_families(self, created: bool) -> Iterator[Metric]:
        """The families that are not per version: build, in-flight requests, load failures,
        rollout generations and prediction-log drops."""
        build = GaugeMetricFamily(
            "chassis_build_info",
            "Always 1: the Chassis and Python versions this gateway runs",
            labels=["chassis_version", "python_version"],
        )
        build.add_metric([__version__, platform.python_version()], 1)
        in_flight = GaugeMetricFamily(
            "chassis_requests_in_flight",
            "Predict requests being answered now (queued or running), by model",
            labels=["model"],
        )
        for model, count in self.in_flight.items():
            in_flight.add_metric([model], count)
        failures = CounterMetricFamily(
            "chassis_model_load_failures",
            "Versions that failed to load or verify, by check: gates (no passed, signed "
            "gate verdict), sha256 (bytes unlike their digest), load (store or runtime)",
            labels=["model", "version", "check"],
        )
        # Loads run on a thread of their own: a copy (atomic under the GIL) is iterated.
        for key, (count, since) in list(self.load_failures.items()):
            failures.add_metric(key.split("\0"), count, created=since if created else None)
        readings = self.readings()
        ready = GaugeMetricFamily(
            "chassis_gateway_ready",
            "1 while /readyz answers 200 (its models serve and it is not draining), else 0",
        )
        ready.add_metric([], 1 if readings.ready else 0)
        generation = GaugeMetricFamily(
            "chassis_rollout_generation",
            "The rollout generation this replica serves, by model (equal on every replica "
            "once they follow the same rollout record)",
            labels=["model"],
        )
        for model, number in readings.generations.items():
            generation.add_metric([model], number)
        served = GaugeMetricFamily(
            "chassis_model_version_info",
            "1 for each version this replica holds ready, by role: stable, candidate "
            "(canary, shadow or blue-green idle color) or warm (the previous color, kept for "
            "a fast rollback)",
            labels=["model", "version", "role"],
        )
        for model, version, role in readings.served:
            served.add_metric([model, str(version), role], 1)
        dropped = CounterMetricFamily(
            "chassis_prediction_log_dropped_rows",
            "Prediction-log rows dropped because the log's buffer was full (a slow or "
            "stuck store): drift checks see fewer rows than were answered",
            labels=["model"],
        )
        for model, rows in readings.log_dropped_rows.items():
            dropped.add_metric([model], rows)
        yield from (build, ready, in_flight, failures, generation, served, dropped)


def _feedback_families(metrics: GatewayMetrics, created: bool) -> Iterator[Metric]:
    """Ground truth: feedback counted and refused, live scores, accuracy gates."""
    feedback = CounterMetricFamily(
        "chassis_feedback",
        "Feedback joined with its prediction, by outcome: correct or wrong (a classifier's "
        "answer), scored (a regressor's, see chassis_feedback_absolute_error)",
        labels=["model", "version", "outcome"],
    )
    for (model, version, outcome), (count, since) in metrics.feedback.items():
        feedback.add_metric([model, version, outcome], count, created=since if created else None)
    errors = SummaryMetricFamily(
        "chassis_feedback_absolute_error",
        "A regressor's feedback: sum and count of |prediction - label| (the target's units)",
        labels=["model", "version"],
    )
    for (model, version), (total, count) in metrics.feedback_errors.items():
        errors.add_metric([model, version], int(count), total)
    refused = CounterMetricFamily(
        "chassis_feedback_refused",
        "Feedback refused (4xx, nothing counted), by reason: malformed, unknown_id, too_late, "
        "duplicate, bad_label; peer_unavailable (503: the replica that answered did not)",
        labels=["model", "reason"],
    )
    for (model, reason), (count, since) in metrics.feedback_refused.items():
        refused.add_metric([model, reason], count, created=since if created else None)
    forwarded = CounterMetricFamily(
        "chassis_feedback_forwarded",
        "Feedback items received here about another replica's predictions and joined there "
        "(counted in that replica's chassis_feedback_total)",
        labels=["model"],
    )
    for model, (count, since) in metrics.feedback_forwarded.items():
        forwarded.add_metric([model], count, created=since if created else None)
    readings = metrics.readings()
    accuracy = GaugeMetricFamily(
        "chassis_live_accuracy_ratio",
        "A classifier version's accuracy over its last feedback rows on this replica "
        "(chassis_live_feedback_rows of them)",
        labels=["model", "version"],
    )
    absolute = GaugeMetricFamily(
        "chassis_live_mean_absolute_error",
        "A regressor version's mean absolute error over its last feedback rows on this "
        "replica (the target's units)",
        labels=["model", "version"],
    )
    rows = GaugeMetricFamily(
        "chassis_live_feedback_rows",
        "Feedback rows the live accuracy (or mean absolute error) of a version is over",
        labels=["model", "version"],
    )
    for live in readings.live:
        labels = [live.model, str(live.version)]
        rows.add_metric(labels, live.rows)
        (absolute if live.task == REGRESSION else accuracy).add_metric(labels, live.mean)
    gates = GaugeMetricFamily(
        "chassis_accuracy_gate_ratio",
        "The live accuracy a served classifier version must keep: what its gates would ask "
        "of a challenger against it (tag chassis.accuracy_gate)",
        labels=["model", "version"],
    )
    for (model, version), gate in readings.accuracy_gates.items():
        gates.add_metric([model, str(version)], gate)
    yield from (feedback, errors, refused, forwarded, accuracy, absolute, rows, gates)


def _sanitization_families(metrics: GatewayMetrics, created: bool) -> Iterator[Metric]:
    """What sanitization changed and refused, and which models have it on."""
    values = CounterMetricFamily(
        "chassis_sanitized_values",
        "Request values sanitization changed before the model ran, by feature and action: "
        "clipped (outside the reference's range) or filled (missing, from its median)",
        labels=["model", "feature", "action"],
    )
    for (model, feature, action), (count, since) in metrics.sanitized.items():
        values.add_metric([model, feature, action], count, created=since if created else None)
    refused = CounterMetricFamily(
        "chassis_sanitization_refused_rows",
        "Rows of requests refused (422) by sanitization in refuse mode, by reason: missing "
        "(a null value) or out_of_range (outside the reference's range)",
        labels=["model", "reason"],
    )
    for (model, reason), (count, since) in metrics.sanitization_refused.items():
        refused.add_metric([model, reason], count, created=since if created else None)
    mode = GaugeMetricFamily(
        "chassis_sanitization_on",
        "1 while sanitization is on for the model, labelled with its mode (clip, refuse)",
        labels=["model", "mode"],
    )
    for model, name in metrics.sanitization_modes.items():
        mode.add_metric([model, name], 1)
    yield from (values, refused, mode)


def _add_histogram(
    family: HistogramMetricFamily,
    series: VersionSeries,
    counts: list[int],
    total: float,
    created: bool,
    bucket_labels: list[str] = BUCKET_LABELS,
) -> None:
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for label, count in zip(bucket_labels, counts, strict=True):
        cumulative += count
        buckets.append((label, cumulative))
    family.add_metric(series.labels, buckets, total)
    if created:
        labels: dict[str, str] = dict(zip(("model", "version"), series.labels, strict=True))

        family.samples.append(Sample(f"{family.name}_created", labels, series.created, None, None))
