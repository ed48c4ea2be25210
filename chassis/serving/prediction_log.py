"""The prediction log: served inputs, predictions, version and time, as Parquet files.

Recording copies one request's rows into a preallocated buffer (sampled) on the request
path; a background thread swaps buffers every few seconds and writes the filled one as a
Parquet file under `<model>/date=YYYY-MM-DD/<time>-<id>.parquet`, on a local folder or on
S3. Building the Arrow table from contiguous columns is a few copies and the Parquet
writer releases the GIL, so serving latency does not move (see BENCHMARKS.md).
"""

import io
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from chassis.storage import BlobStore

logger = logging.getLogger("chassis.prediction_log")

TIME, VERSION, PREDICTION = "served_at", "model_version", "prediction"

Writer = Callable[[str, bytes], None]


class _Buffer:
    def __init__(self, capacity: int, width: int) -> None:
        self.features = np.empty((capacity, width), dtype=np.float32)
        self.labels = np.empty(capacity, dtype=np.int64)
        self.versions = np.empty(capacity, dtype=np.int64)
        self.times = np.empty(capacity, dtype=np.float64)
        self.size = 0


class PredictionLogger:
    def __init__(
        self,
        model: str,
        feature_names: list[str],
        write: Writer,
        sample_rate: float = 1.0,
        flush_seconds: float = 5.0,
        capacity: int = 100_000,
    ) -> None:
        self.model = model
        self.feature_names = feature_names
        self.write = write
        self.sample_rate = sample_rate
        self.flush_seconds = flush_seconds
        self.capacity = capacity
        self.active = _Buffer(capacity, len(feature_names))
        self.spare = _Buffer(capacity, len(feature_names))
        self.lock = threading.Lock()
        self.dropped_rows = 0
        self.rng = np.random.default_rng()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"predlog-{model}")

    def start(self) -> "PredictionLogger":
        self.thread.start()
        return self

    def record(self, version: int, rows: np.ndarray, labels: np.ndarray) -> None:
        """A copy into the active buffer; when it is full, rows are counted and dropped so
        a stuck store can never grow memory."""
        if self.sample_rate < 1.0 and self.rng.random() >= self.sample_rate:
            return
        with self.lock:
            buffer = self.active
            start, end = buffer.size, buffer.size + len(rows)
            if end > self.capacity:
                self.dropped_rows += len(rows)
                return
            buffer.features[start:end] = rows
            buffer.labels[start:end] = labels
            buffer.versions[start:end] = version
            buffer.times[start:end] = time.time()
            buffer.size = end

    def flush(self) -> int:
        with self.lock:
            filled, self.active, self.spare = self.active, self.spare, self.active
        rows = filled.size
        if rows == 0:
            return 0
        try:
            self._write(filled, rows)
        finally:
            filled.size = 0
        return rows

    def _write(self, buffer: _Buffer, rows: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = np.ascontiguousarray(buffer.features[:rows].T)
        arrays = [pa.array(column) for column in columns]
        arrays += [
            pa.array(buffer.labels[:rows]),
            pa.array(buffer.versions[:rows]),
            pa.array(
                (buffer.times[:rows] * 1e6).astype("int64"), type=pa.timestamp("us", tz="UTC")
            ),
        ]
        table = pa.Table.from_arrays(arrays, names=[*self.feature_names, PREDICTION, VERSION, TIME])
        first = datetime.fromtimestamp(float(buffer.times[0]), UTC)
        relative = (
            f"{self.model}/date={first:%Y-%m-%d}/{first:%H%M%S}-{uuid.uuid4().hex[:8]}.parquet"
        )
        payload = io.BytesIO()
        pq.write_table(table, payload)
        self.write(relative, payload.getvalue())

    def _run(self) -> None:
        while not self.stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception as error:  # keep serving; the next flush carries new rows
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
