"""Latency of an ONNX Runtime session on fixed feeds: warm-up, then repeated timed runs."""

import time
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnxruntime

Feeds = dict[str, np.ndarray]


def time_runs_ms(
    session: "onnxruntime.InferenceSession", feeds: Feeds, *, warmup: int, repeats: int
) -> dict[str, float]:
    """p50/p99/mean of one `session.run`, after `warmup` untimed runs (allocations, caches)."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for _ in range(warmup):
        session.run(None, feeds)
    timings = np.empty(repeats)
    for i in range(repeats):
        started = time.perf_counter()
        session.run(None, feeds)
        timings[i] = time.perf_counter() - started
    timings *= 1000.0
    return {
        "p50": float(np.percentile(timings, 50)),
        "p99": float(np.percentile(timings, 99)),
        "mean": float(timings.mean()),
    }


def batch_of(feeds: Feeds, size: int) -> Feeds:
    """`size` rows taken from the start of every input, cycling when there are fewer rows."""
    rows = len(next(iter(feeds.values())))
    index = np.arange(size) % rows
    return {name: np.ascontiguousarray(value[index]) for name, value in feeds.items()}
