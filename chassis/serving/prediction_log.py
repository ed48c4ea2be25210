"""The prediction log: served inputs, predictions, version and time, as Parquet files.

The prediction column holds class labels (int64), or a regressor's predicted values
(float64), so drift can be judged on predictions of either kind. A text model's one feature
column holds the texts themselves (strings, as sent), not their token ids: drift is judged
on what clients sent, whatever tokenizer read it.

Recording appends a reference to one request's arrays to a queue (sampled) on the request
path: no lock and no copy there. A background thread drains the queue every few seconds
into a preallocated column-major buffer, in chunks, and writes it as a Parquet file under
`<model>/date=YYYY-MM-DD/<time>-<id>.parquet`, on a local folder or on S3. That thread
holds the GIL a fraction of a millisecond at a time and hands it back to the event loop
between chunks; the columns go to Arrow without a copy and the Parquet writer releases
the GIL, so serving latency barely moves (see BENCHMARKS.md).
"""

import io
import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from chassis.task import CLASSIFICATION, REGRESSION, Task

if TYPE_CHECKING:
    from chassis.storage import BlobStore

logger = logging.getLogger("chassis.prediction_log")

TIME, VERSION, PREDICTION = "served_at", "model_version", "prediction"

Writer = Callable[[str, bytes], None]


# Requests moved into the buffer per step: a step holds the GIL for ~0.02 ms (64 features),
# the most a request that arrives meanwhile waits. (256 held it ~0.26 ms and doubled the
# gateway's p99 at 1 connection.)
CHUNK = 32


def _yield_gil() -> None:
    # A thread that wants the GIL waits up to the switch interval (5 ms) for its holder to
    # let go; sleeping releases it at once, so the event loop waits one step at most.
    time.sleep(0)


class _Buffer:
    def __init__(self, capacity: int, width: int, task: Task, text: bool = False) -> None:
        # Column-major: each feature's values contiguous, as Arrow and Parquet take them.
        # (Transposing a row-major buffer at write time held the GIL for 5-20 ms.) A text
        # model's one column holds references to the request's strings.
        self.features = (
            np.empty((1, capacity), dtype=object)
            if text
            else np.empty((width, capacity), dtype=np.float32)
        )
        self.labels = np.empty(capacity, dtype=np.float64 if task == REGRESSION else np.int64)
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
        task: Task = CLASSIFICATION,
        text: bool = False,
    ) -> None:
        self.model = model
        self.feature_names = feature_names
        self.write = write
        self.sample_rate = sample_rate
        self.flush_seconds = flush_seconds
        self.capacity = capacity
        # True: a text model's; each request's rows are its texts (`feature_names` names
        # the one text column).
        self.text = text
        # (rows, labels, version, time) per request. deque.append and popleft are atomic,
        # so the request path and the flushing thread share it without a lock.
        self.pending: deque[tuple[np.ndarray | list[str], np.ndarray, int, float]] = deque()
        # Rows queued (written by record only) and rows taken (by flush only): their
        # difference bounds the queue, and neither counter has two writers.
        self.queued_rows = 0
        self.taken_rows = 0
        self.buffer = _Buffer(capacity, len(feature_names), task, text)
        self.flush_lock = threading.Lock()  # the thread and close() may both flush
        self.dropped_rows = 0
        self.rng = np.random.default_rng()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"predlog-{model}")

    def start(self) -> "PredictionLogger":
        self.thread.start()
        return self

    def record(self, version: int, rows: np.ndarray | list[str], labels: np.ndarray) -> None:
        """Queue one request's rows (a text model's: its texts) and predictions (labels, or
        a regressor's values). The
        arrays are kept, not copied: the caller must not change them afterwards (the gateway
        never does, every request has its own). When a file's worth of rows is waiting (a
        stuck store), rows are counted and dropped so memory can never grow without bound."""
        if self.sample_rate < 1.0 and self.rng.random() >= self.sample_rate:
            return
        count = len(rows)
        if self.queued_rows - self.taken_rows + count > self.capacity:
            self.dropped_rows += count
            return
        self.queued_rows += count
        self.pending.append((rows, labels, version, time.time()))

    def flush(self) -> int:
        with self.flush_lock:
            buffer = self.buffer
            buffer.size = 0
            try:
                self._fill(buffer)
                if buffer.size:
                    self._write(buffer, buffer.size)
            finally:
                rows, buffer.size = buffer.size, 0
        return rows

    def _fill(self, buffer: _Buffer) -> None:
        """Move what is queued now (at most `capacity` rows) into the buffer."""
        pending = self.pending
        waiting = len(pending)
        while waiting:
            taken = min(CHUNK, waiting)
            waiting -= taken
            # zip and map loop in C: the per-request Python work here is what holds the GIL.
            rows, labels, versions, times = zip(
                *[pending.popleft() for _ in range(taken)], strict=True
            )
            start = buffer.size
            if self.text:
                texts = list(itertools.chain.from_iterable(rows))
                end = start + len(texts)
                buffer.features[0, start:end] = texts
            else:
                features = np.concatenate(rows)
                end = start + len(features)
                buffer.features[:, start:end] = features.T
            self.taken_rows += end - start
            np.concatenate(labels, out=buffer.labels[start:end])
            if end - start == taken:  # one row per request, the common case
                buffer.versions[start:end] = versions
                buffer.times[start:end] = times
            else:
                counts = list(map(len, rows))
                buffer.versions[start:end] = np.repeat(versions, counts)
                buffer.times[start:end] = np.repeat(times, counts)
            buffer.size = end
            _yield_gil()

    def _write(self, buffer: _Buffer, rows: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.text:
            arrays = [pa.array(buffer.features[0, :rows], type=pa.string())]
        else:
            arrays = [pa.array(column[:rows]) for column in buffer.features]  # no copies
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
        # An Arrow buffer, not io.BytesIO: Parquet's many small writes then stay in C++ with
        # the GIL released, instead of calling back into Python (and taking the GIL from the
        # event loop) for each one.
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        self.write(relative, sink.getvalue().to_pybytes())

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
