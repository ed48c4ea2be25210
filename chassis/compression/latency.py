"""Feeds for timing candidates; the timing itself is chassis.runtime.time_runs_ms."""

import numpy as np

from chassis.runtime import time_runs_ms

__all__ = ["Feeds", "batch_of", "time_runs_ms"]

Feeds = dict[str, np.ndarray]


def batch_of(feeds: Feeds, size: int) -> Feeds:
    """`size` rows taken from the start of every input, cycling when there are fewer rows."""
    rows = len(next(iter(feeds.values())))
    index = np.arange(size) % rows
    return {name: np.ascontiguousarray(value[index]) for name, value in feeds.items()}
