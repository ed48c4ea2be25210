"""The compression stage's cascade proposal: its smallest candidate that is worth it as a
small tier, with the baseline as the full tier, measured like the candidates (accuracy,
macro-F1, agreement with the baseline, escalation share, mean and p99 one-row latency).

"Worth it": smaller than the baseline and not slower on one row (its interleaved latency
ratio settled at or below 1; chassis.compression.latency). A proposal is advice: the flow
logs and shows it; `chassis cascade` registers it (the small tier must be a registered
version first)."""

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from chassis.cascade.build import build_spec
from chassis.cascade.rule import cascade_answer
from chassis.cascade.spec import CascadeSpec
from chassis.cascade.threshold import DEFAULT_MAX_ACCURACY_LOSS_PP, Target
from chassis.compression.measure import Measurement, QualityTask, run_outputs
from chassis.runtime import create_session, first_output, onnx_input_name


@dataclass(frozen=True)
class CascadeProposal:
    small: str
    spec: CascadeSpec
    quality: dict[str, float]
    # Per row, batch 1: mean and p99 of the cascade and of the baseline alone, in ms.
    latency_ms: dict[str, float]

    def describe(self) -> str:
        q, lat = self.quality, self.latency_ms
        return (
            f"cascade {self.small} -> baseline: accuracy {q['accuracy']:.4f}, agreement "
            f"{q['agreement']:.4f}, escalation share {q['escalation_share']:.1%} on the test "
            f"split; one-row latency mean {lat['cascade_mean']:.3f} ms vs "
            f"{lat['baseline_mean']:.3f} ms, p99 {lat['cascade_p99']:.3f} ms vs "
            f"{lat['baseline_p99']:.3f} ms; {self.spec.describe()}"
        )


def worth_it(measured: list[Measurement], baseline: str) -> Measurement | None:
    """The smallest candidate smaller than the baseline and not slower on one row."""
    base = next(m for m in measured if m.name == baseline)
    fitting = [
        m
        for m in measured
        if m.name != baseline
        and m.size_bytes < base.size_bytes
        and m.latency_vs_baseline is not None
        and m.latency_vs_baseline.settled <= 1.0
    ]
    return min(fitting, key=lambda m: (m.size_bytes, m.name), default=None)


def one_row_ms(call: Callable[[np.ndarray], np.ndarray], rows: np.ndarray) -> list[float]:
    times: list[float] = []
    for row in rows:
        started = time.perf_counter()
        call(row[None, :])
        times.append((time.perf_counter() - started) * 1000)
    return times


def propose_cascade(
    measured: list[Measurement],
    baseline: str,
    full_version: int,
    validation: tuple[np.ndarray, np.ndarray],
    test_rows: np.ndarray,
    quality: QualityTask,
    threads: int = 1,
    rounds: int = 5,
) -> CascadeProposal | None:
    small = worth_it(measured, baseline)
    if small is None:
        return None
    full = next(m for m in measured if m.name == baseline)
    x_val, y_val = validation
    name = onnx_input_name(full.onnx_path)
    spec = build_spec(
        full_version,
        run_outputs(small.onnx_path, {name: x_val}, threads, 256),
        run_outputs(full.onnx_path, {name: x_val}, threads, 256),
        y_val,
        Target(max_accuracy_loss_pp=DEFAULT_MAX_ACCURACY_LOSS_PP),
    )
    small_out = run_outputs(small.onnx_path, {name: test_rows}, threads, 256)
    full_out = run_outputs(full.onnx_path, {name: test_rows}, threads, 256)
    answered = cascade_answer(small_out, spec.temperature, spec.threshold)
    merged = np.where(answered[:, None], small_out, full_out)
    scores = quality.evaluate(merged, full_out)
    scores["escalation_share"] = float(1.0 - answered.mean())

    small_session = create_session(small.onnx_path, threads)
    full_session = create_session(full.onnx_path, threads)

    def full_only(rows: np.ndarray) -> np.ndarray:
        return first_output(full_session, {name: rows})

    def cascade(rows: np.ndarray) -> np.ndarray:
        logits = first_output(small_session, {name: rows})
        confident = cascade_answer(logits, spec.temperature, spec.threshold)
        if not confident.all():
            logits[~confident] = first_output(full_session, {name: rows[~confident]})
        return logits

    cascade_times: list[float] = []
    full_times: list[float] = []
    for _ in range(rounds):  # interleaved, so load on the machine weighs on both
        full_times += one_row_ms(full_only, test_rows)
        cascade_times += one_row_ms(cascade, test_rows)
    latency = {
        "cascade_mean": float(np.mean(cascade_times)),
        "cascade_p99": float(np.percentile(cascade_times, 99)),
        "baseline_mean": float(np.mean(full_times)),
        "baseline_p99": float(np.percentile(full_times, 99)),
    }
    return CascadeProposal(small.name, spec, scores, latency)
