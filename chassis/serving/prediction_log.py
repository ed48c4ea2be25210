"""The prediction log: served inputs, predictions, version and time, as Parquet files.

Recording is an append to an in-memory buffer on the request path (sampled); a background
thread turns the buffer into Parquet files every few seconds, under
`<root>/<model>/date=YYYY-MM-DD/<time>-<id>.parquet`, on a local folder or on S3, so the
serving speed does not depend on the disk or the network.
"""

import io
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from chassis.storage import BlobStore

logger = logging.getLogger("chassis.prediction_log")

TIME, VERSION, PREDICTION = "served_at", "model_version", "prediction"


@dataclass
class Batch:
    at: float
    version: int
    rows: np.ndarray
    labels: np.ndarray


Writer = Callable[[str, bytes], None]


class PredictionLogger:
    def __init__(
        self,
        model: str,
        feature_names: list[str],
        write: Writer,
        sample_rate: float = 1.0,
        flush_seconds: float = 5.0,
        max_buffered_rows: int = 200_000,
    ) -> None:
        self.model = model
        self.feature_names = feature_names
        self.write = write
        self.sample_rate = sample_rate
        self.flush_seconds = flush_seconds
        self.max_buffered_rows = max_buffered_rows
        self.buffer: deque[Batch] = deque()
        self.buffered_rows = 0
        self.dropped_rows = 0
        self.rng = np.random.default_rng()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"predlog-{model}")

    def start(self) -> "PredictionLogger":
        self.thread.start()
        return self

    def record(self, version: int, rows: np.ndarray, labels: np.ndarray) -> None:
        """O(1) on the request path: sample, then append references to the buffer."""
        if self.sample_rate < 1.0 and self.rng.random() >= self.sample_rate:
            return
        if self.buffered_rows >= self.max_buffered_rows:
            self.dropped_rows += len(rows)  # a stuck store must not grow memory without bound
            return
        self.buffer.append(Batch(time.time(), version, rows, labels))
        self.buffered_rows += len(rows)

    def flush(self) -> int:
        batches = []
        while self.buffer:
            batches.append(self.buffer.popleft())
        if not batches:
            return 0
        self.buffered_rows = max(0, self.buffered_rows - sum(len(b.rows) for b in batches))
        frame = pd.DataFrame(np.concatenate([b.rows for b in batches]), columns=self.feature_names)
        frame[PREDICTION] = np.concatenate([b.labels for b in batches]).astype(np.int64)
        frame[VERSION] = np.concatenate([np.full(len(b.rows), b.version) for b in batches])
        frame[TIME] = pd.to_datetime(
            np.concatenate([np.full(len(b.rows), b.at) for b in batches]), unit="s", utc=True
        )
        first = datetime.fromtimestamp(batches[0].at, UTC)
        relative = (
            f"{self.model}/date={first:%Y-%m-%d}/{first:%H%M%S}-{uuid.uuid4().hex[:8]}.parquet"
        )
        payload = io.BytesIO()
        frame.to_parquet(payload, index=False)
        self.write(relative, payload.getvalue())
        return len(frame)

    def _run(self) -> None:
        while not self.stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception as error:  # keep serving; the next flush retries with new rows
                logger.warning("prediction log flush failed: %s", error)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.flush()


def read_window(store: "BlobStore", model: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Rows served in [start, end) from the prediction log, local or on S3."""
    frames = []
    day = start.date()
    while day <= end.date():
        for relative in store.list(f"{model}/date={day:%Y-%m-%d}"):
            if relative.endswith(".parquet"):
                frames.append(pd.read_parquet(io.BytesIO(store.read(relative))))
        day = day.fromordinal(day.toordinal() + 1)
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    mask = (frame[TIME] >= pd.Timestamp(start)) & (frame[TIME] < pd.Timestamp(end))
    return frame[mask].reset_index(drop=True)
