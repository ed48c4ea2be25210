"""Measures a version's ONNX file on a dataset's test split: what the gates judge."""

from pathlib import Path

import numpy as np
from torch import nn

from chassis.data import class_count, features, labels
from chassis.evaluation import classification_report
from chassis.gates import Measurements
from chassis.modelspec import Dataset
from chassis.runtime import create_session, measure_latency_ms, model_cpu_ms, run_batches
from chassis.training import predict_logits


def measure_classifier(
    version: int,
    onnx_path: Path,
    dataset: Dataset,
    torch_module: nn.Module | None = None,
    n_classes: int | None = None,
) -> Measurements:
    """Quality, batch-1 latency and size of the exact bytes that would be served.

    Parity is recomputed against `torch_module` when the version's weights are available;
    a quantized graph has no torch twin, so its parity is left unmeasured (None).
    """
    x, y = features(dataset.test, dataset), labels(dataset.test, dataset)
    session = create_session(onnx_path)
    logits = run_batches(session, x)
    report = classification_report(y, logits.argmax(axis=1), n_classes or class_count(dataset))
    parity = None
    if torch_module is not None:
        parity = float(np.max(np.abs(predict_logits(torch_module, x) - logits)))
    latency = measure_latency_ms(session, x[:1])
    return Measurements(
        version=version,
        metrics={"accuracy": report.accuracy, "macro_f1": report.macro_f1},
        per_class_recall=report.per_class_recall,
        latency_p99_ms=latency["p99"],
        model_cpu_p50_ms=model_cpu_ms(session, x[:1]),
        size_bytes=onnx_path.stat().st_size,
        parity_max_abs_diff=parity,
    )
