"""Measures a version's ONNX file on a dataset's test split: what the gates judge."""

from pathlib import Path

import numpy as np
from torch import nn

from chassis import progress
from chassis.cascade.rule import cascade_answer
from chassis.cascade.spec import CascadeSpec
from chassis.data import class_count, features, truth
from chassis.evaluation import ClassificationReport, quality_report
from chassis.gates import Measurements
from chassis.modelspec import Dataset
from chassis.runtime import (
    answer_batch_rows,
    create_session,
    measure_latency_ms,
    model_cpu_ms,
    run_batches,
)
from chassis.task import CLASSIFICATION, Task
from chassis.training import predict_logits


def measure_classifier(
    version: int,
    onnx_path: Path,
    dataset: Dataset,
    torch_module: nn.Module | None = None,
    n_classes: int | None = None,
    task: Task = CLASSIFICATION,
    cascade: tuple[CascadeSpec, Path] | None = None,
) -> Measurements:
    """Quality (the task's metrics), batch-1 latency and size of the exact bytes that would
    be served.

    Parity is recomputed against `torch_module` when the version's weights are available;
    a quantized graph has no torch twin, so its parity is left unmeasured (None).

    A cascade version (`cascade`: its spec and the full tier's verified ONNX file) is judged
    as it serves: its quality is the cascade's (small tier where confident, full tier
    elsewhere, by the one rule of chassis.cascade.rule), with its escalation share among the
    metrics; parity, latency and size are its own (the small tier's) bytes'.
    """
    x, y = features(dataset.test, dataset), truth(dataset.test, dataset, task)
    steps = ["quality", "parity", "latency", "CPU time"]
    if torch_module is None:
        steps.remove("parity")
    with progress.track(f"measuring v{version}", total=len(steps), unit="steps") as bar:
        bar.update(detail=f"quality on {len(x)} test rows")
        session = create_session(onnx_path)
        own_logits = run_batches(session, x, answer_batch_rows(onnx_path, x))
        logits, cascade_metrics = own_logits, {}
        if cascade is not None:
            logits, cascade_metrics = cascade_outputs(own_logits, x, *cascade)
        classes = (n_classes or class_count(dataset)) if task == CLASSIFICATION else None
        report = quality_report(task, y, logits, classes)
        parity = None
        if torch_module is not None:
            bar.advance(1, detail="parity with torch")
            parity = float(np.max(np.abs(predict_logits(torch_module, x) - own_logits)))
        bar.advance(1, detail="p99 latency at batch 1")
        latency = measure_latency_ms(session, x[:1])
        bar.advance(1, detail="CPU time at batch 1")
        cpu = model_cpu_ms(session, x[:1])
        bar.advance(1, detail="done")
    return Measurements(
        version=version,
        metrics={**report.quality(), **cascade_metrics},
        per_class_recall=(
            report.per_class_recall if isinstance(report, ClassificationReport) else {}
        ),
        latency_p99_ms=latency["p99"],
        model_cpu_p50_ms=cpu["p50"],
        model_cpu_p99_ms=cpu["p99"],
        size_bytes=onnx_path.stat().st_size,
        parity_max_abs_diff=parity,
        task=task,
    )


def cascade_outputs(
    small_logits: np.ndarray, x: np.ndarray, spec: CascadeSpec, full_onnx: Path
) -> tuple[np.ndarray, dict[str, float]]:
    """The cascade's logits on `x` and its escalation share."""
    full_logits = run_batches(create_session(full_onnx), x, answer_batch_rows(full_onnx, x))
    answered = cascade_answer(small_logits, spec.temperature, spec.threshold)
    merged = np.where(answered[:, None], small_logits, full_logits)
    return merged, {"escalation_share": float(1.0 - answered.mean())}
