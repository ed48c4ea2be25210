"""Measures every candidate the same way: quality, agreement, latency, size, parameters.

Quality is pluggable: a `QualityTask` turns (candidate outputs, baseline outputs) into
metrics and names the one selection compares. Classifiers use labels (accuracy, macro-F1)
and agreement with the baseline's predictions; regressors use targets (RMSE, lower is
better, MAE, R2) and their largest relative difference from the baseline's predictions;
embedding models use cosine similarity to the baseline's embeddings.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from chassis import progress
from chassis.compression.candidates import Candidate
from chassis.compression.latency import (
    Feeds,
    LatencyRatio,
    batch_of,
    round_ratios,
    time_interleaved,
    time_runs_ms,
)
from chassis.compression.policy import DEFAULT_POLICY, TIMED_BATCH_SIZES
from chassis.digests import sha256_file
from chassis.errors import CompressionError
from chassis.runtime import answers_depend_on_batch, create_session, first_output
from chassis.task import REGRESSION, Task

QualityFunction = Callable[[np.ndarray, np.ndarray], dict[str, float]]


@dataclass(frozen=True)
class QualityTask:
    """How good a candidate's outputs are, judged against labels and/or the baseline."""

    kind: str
    primary_metric: str
    evaluate: QualityFunction
    greater_is_better: bool = True


def classification_task(labels: np.ndarray, n_classes: int) -> QualityTask:
    from chassis.evaluation import classification_report

    def evaluate(outputs: np.ndarray, baseline_outputs: np.ndarray) -> dict[str, float]:
        predicted = outputs.argmax(axis=1)
        report = classification_report(labels, predicted, n_classes)
        agreement = float((predicted == baseline_outputs.argmax(axis=1)).mean())
        return {"accuracy": report.accuracy, "macro_f1": report.macro_f1, "agreement": agreement}

    return QualityTask("classification", "accuracy", evaluate)


def regression_task(targets: np.ndarray) -> QualityTask:
    from chassis.evaluation import regression_report

    def evaluate(outputs: np.ndarray, baseline_outputs: np.ndarray) -> dict[str, float]:
        report = regression_report(targets, outputs[:, 0])
        difference = np.abs(outputs[:, 0] - baseline_outputs[:, 0]).astype(np.float64)
        scale = np.maximum(np.abs(baseline_outputs[:, 0]).astype(np.float64), 1e-12)
        return {
            **report.quality(),
            "max_relative_difference": float((difference / scale).max(initial=0.0)),
        }

    return QualityTask("regression", "rmse", evaluate, greater_is_better=False)


def quality_task(task: Task, truth: np.ndarray, n_classes: int | None) -> QualityTask:
    """The quality measure of a model of `task` on labelled rows."""
    if task == REGRESSION:
        return regression_task(truth)
    assert n_classes is not None, "a classifier's quality needs its number of classes"
    return classification_task(truth, n_classes)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)


def embedding_task() -> QualityTask:
    def evaluate(outputs: np.ndarray, baseline_outputs: np.ndarray) -> dict[str, float]:
        cosines = cosine_rows(outputs, baseline_outputs)
        return {"cosine_mean": float(cosines.mean()), "cosine_min": float(cosines.min())}

    return QualityTask("embedding", "cosine_mean", evaluate)


@dataclass(frozen=True)
class MeasureSettings:
    """Same for every candidate, so the numbers compare."""

    threads: int = DEFAULT_POLICY.threads
    batch_sizes: tuple[int, ...] = TIMED_BATCH_SIZES
    warmup: int = 10
    repeats: int = DEFAULT_POLICY.repeats
    inference_batch: int = 256


@dataclass(frozen=True)
class Measurement:
    name: str
    recipe: dict[str, Any]
    quality: dict[str, float]
    latency_ms: dict[str, float]
    size_bytes: int
    parameter_count: int
    sha256: str
    onnx_path: Path
    extra: dict[str, float] = field(default_factory=dict)
    # One-row latency over the baseline's, timed interleaved with it (None: the baseline).
    latency_vs_baseline: LatencyRatio | None = None

    def metrics(self) -> dict[str, float]:
        """Flat metric names for MLflow and tables."""
        flat = dict(self.quality)
        flat.update({f"latency_{key}_ms": value for key, value in self.latency_ms.items()})
        if self.latency_vs_baseline is not None:
            ratio = self.latency_vs_baseline
            flat.update(
                latency_ratio_b1=ratio.median,
                latency_ratio_b1_low=ratio.low,
                latency_ratio_b1_high=ratio.high,
            )
        flat["size_bytes"] = float(self.size_bytes)
        flat["parameter_count"] = float(self.parameter_count)
        flat.update(self.extra)
        return flat


def onnx_parameter_count(path: Path) -> int:
    """Elements of every initializer: for int8 graphs this counts quantized weights, scales
    and zero points, i.e. what the file stores, not the float model it came from."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    count = 0
    for tensor in model.graph.initializer:
        count += int(np.prod(tensor.dims)) if len(tensor.dims) else 1
    return count


def run_outputs(path: Path, feeds: Feeds, threads: int, batch_size: int) -> np.ndarray:
    """The first output over all rows of `feeds`, in batches (one row a call for a graph
    whose answers depend on the batch, as the gateway runs it)."""
    if answers_depend_on_batch(path):
        batch_size = 1
    session = create_session(path, intra_op_threads=threads)
    rows = len(next(iter(feeds.values())))
    outputs = [
        first_output(session, {n: v[s : s + batch_size] for n, v in feeds.items()})
        for s in range(0, rows, batch_size)
    ]
    return np.concatenate(outputs)


def measure_candidate(
    candidate: Candidate,
    feeds: Feeds,
    task: QualityTask,
    baseline_outputs: np.ndarray | None,
    settings: MeasureSettings,
) -> tuple[Measurement, np.ndarray]:
    """Measure one candidate; `baseline_outputs=None` means this candidate is the baseline."""
    outputs = run_outputs(candidate.onnx_path, feeds, settings.threads, settings.inference_batch)
    reference = outputs if baseline_outputs is None else baseline_outputs
    quality = task.evaluate(outputs, reference)
    session = create_session(candidate.onnx_path, intra_op_threads=settings.threads)
    latency: dict[str, float] = {}
    for size in settings.batch_sizes:
        timed = time_runs_ms(
            session, batch_of(feeds, size), warmup=settings.warmup, repeats=settings.repeats
        )
        latency[f"b{size}_p50"] = timed["p50"]
        latency[f"b{size}_p99"] = timed["p99"]
    measurement = Measurement(
        name=candidate.name,
        recipe=dict(candidate.recipe),
        quality=quality,
        latency_ms=latency,
        size_bytes=candidate.onnx_path.stat().st_size,
        parameter_count=onnx_parameter_count(candidate.onnx_path),
        sha256=sha256_file(candidate.onnx_path),
        onnx_path=candidate.onnx_path,
    )
    return measurement, outputs


# Rounds of the interleaved comparison, taken nine at a time (nine give a 96 % interval for
# the median ratio, the 2nd to the 8th smallest: chassis.compression.latency.median_interval)
# until the verdict is decided, at most four times: a burst of load widens the interval, and
# more rounds, not a guess, settle it.
COMPARISON_ROUNDS = 9
COMPARISON_BATCHES = 4


def latency_against(
    baseline: Path, candidate: Path, feeds: Feeds, settings: MeasureSettings
) -> LatencyRatio:
    """The candidate's one-row latency over the baseline's, timed in alternating rounds so
    both see the same load. A one-thread session is timed in CPU time, which another
    process on the machine does not stretch; more threads need the wall clock."""
    sessions = {
        "baseline": create_session(baseline, intra_op_threads=settings.threads),
        "candidate": create_session(candidate, intra_op_threads=settings.threads),
    }
    one_row = batch_of(feeds, 1)
    ratios: list[float] = []
    for _ in range(COMPARISON_BATCHES):
        times = time_interleaved(
            sessions,
            one_row,
            rounds=COMPARISON_ROUNDS,
            runs=max(3, settings.repeats // COMPARISON_ROUNDS),
            clock=time.thread_time if settings.threads == 1 else time.perf_counter,
        )
        # round_ratios gives reference/other: the baseline's time over the candidate's.
        ratios += [1.0 / r for r in round_ratios(times, "baseline", "candidate")]
        if LatencyRatio.of(ratios).decided:
            break
    return LatencyRatio.of(ratios)


def measure_all(
    candidates: list[Candidate],
    feeds: Feeds,
    task: QualityTask,
    settings: MeasureSettings,
    baseline_name: str,
) -> list[Measurement]:
    """The baseline first (its outputs are the reference for agreement), then the rest."""
    ordered = sorted(candidates, key=lambda c: c.name != baseline_name)
    if not ordered or ordered[0].name != baseline_name:
        raise CompressionError(f"the candidates must include the baseline {baseline_name!r}")
    with progress.track("measuring candidates", total=len(ordered), unit="candidates") as bar:
        bar.update(detail=baseline_name)
        baseline, baseline_outputs = measure_candidate(ordered[0], feeds, task, None, settings)
        measured = [baseline]
        for candidate in ordered[1:]:
            bar.advance(1, detail=candidate.name)
            measurement = measure_candidate(candidate, feeds, task, baseline_outputs, settings)[0]
            ratio = latency_against(ordered[0].onnx_path, candidate.onnx_path, feeds, settings)
            measured.append(replace(measurement, latency_vs_baseline=ratio))
        bar.advance(1, detail="done")
    return measured
