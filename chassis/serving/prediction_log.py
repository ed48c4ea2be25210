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
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from chassis.task import CLASSIFICATION, REGRESSION, Task

if TYPE_CHECKING:
    import pyarrow as pa

    from chassis.serving.feedback import Joined
    from chassis.storage import BlobStore

logger = logging.getLogger("chassis.prediction_log")

TIME, VERSION, PREDICTION = "served_at", "model_version", "prediction"
# Each row's prediction id (serving/feedback.py): `<replica>-<request>-<row>`.
PREDICTION_ID = "prediction_id"
# Feedback files: the prediction joined with its label, under `<model>/feedback/`.
LABEL, LABELLED_AT = "label", "labelled_at"
FEEDBACK_FOLDER = "feedback"

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
        # A row's id is built at write time from its request's number and its index in it.
        self.numbers = np.empty(capacity, dtype=np.int64)
        self.rows = np.empty(capacity, dtype=np.int64)
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
        replica: str = "",
    ) -> None:
        self.model = model
        self.replica = replica  # the gateway's part of its prediction ids
        self.task = task
        self.feature_names = feature_names
        self.write = write
        self.sample_rate = sample_rate
        self.flush_seconds = flush_seconds
        self.capacity = capacity
        # True: a text model's; each request's rows are its texts (`feature_names` names
        # the one text column).
        self.text = text
        # (rows, labels, version, time, request number) per request. deque.append and
        # popleft are atomic, so the request path and the flushing thread share it without a
        # lock.
        self.pending: deque[tuple[np.ndarray | list[str], np.ndarray, int, float, int]] = deque()
        # Accepted feedback, joined with its prediction, and when it came (wall time).
        self.feedback: deque[tuple[Joined, float]] = deque()
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

    def record(
        self, version: int, rows: np.ndarray | list[str], labels: np.ndarray, number: int = -1
    ) -> None:
        """Queue one request's rows (a text model's: its texts) and predictions (labels, or
        a regressor's values); `number`: the request's number in its prediction ids (-1:
        none, the id column is then null). The
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
        self.pending.append((rows, labels, version, time.time(), number))

    def record_feedback(self, joined: "list[Joined]") -> None:
        """Queue accepted feedback (not sampled: every label is worth keeping); written
        with the next flush under `<model>/feedback/`, where drift checks read it."""
        now = time.time()
        self.feedback.extend((item, now) for item in joined)

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
            self._write_feedback()
        return rows

    def _write_feedback(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        waiting = len(self.feedback)
        if not waiting:
            return
        taken = [self.feedback.popleft() for _ in range(waiting)]
        value = pa.float64() if self.task == REGRESSION else pa.int64()

        def stamps(values: list[float]) -> np.ndarray:
            return (np.asarray(values, dtype=np.float64) * 1e6).astype("int64")

        stamp = pa.timestamp("us", tz="UTC")
        table = pa.Table.from_arrays(
            [
                pa.array([item.prediction_id for item, _ in taken], type=pa.string()),
                pa.array([item.version for item, _ in taken], type=pa.int64()),
                pa.array([item.prediction for item, _ in taken], type=value),
                pa.array([item.label for item, _ in taken], type=value),
                pa.array(stamps([item.served_at for item, _ in taken]), type=stamp),
                pa.array(stamps([at for _, at in taken]), type=stamp),
            ],
            names=[PREDICTION_ID, VERSION, PREDICTION, LABEL, TIME, LABELLED_AT],
        )
        first = datetime.fromtimestamp(taken[0][1], UTC)
        relative = (
            f"{self.model}/{FEEDBACK_FOLDER}/date={first:%Y-%m-%d}/"
            f"{first:%H%M%S}-{uuid.uuid4().hex[:8]}.parquet"
        )
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        self.write(relative, sink.getvalue().to_pybytes())

    def _fill(self, buffer: _Buffer) -> None:
        """Move what is queued now (at most `capacity` rows) into the buffer."""
        pending = self.pending
        waiting = len(pending)
        while waiting:
            taken = min(CHUNK, waiting)
            waiting -= taken
            # zip and map loop in C: the per-request Python work here is what holds the GIL.
            rows, labels, versions, times, numbers = zip(
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
                buffer.numbers[start:end] = numbers
                buffer.rows[start:end] = 0
            else:
                counts = list(map(len, rows))
                buffer.versions[start:end] = np.repeat(versions, counts)
                buffer.times[start:end] = np.repeat(times, counts)
                buffer.numbers[start:end] = np.repeat(numbers, counts)
                # Each request's rows 0..n-1: a running index less each request's start.
                firsts = np.repeat(np.cumsum(counts) - counts, counts)
                buffer.rows[start:end] = np.arange(end - start) - firsts
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
        table = pa.Table.from_arrays(
            [*arrays, self._ids(buffer, rows)],
            names=[*self.feature_names, PREDICTION, VERSION, TIME, PREDICTION_ID],
        )
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

    def _ids(self, buffer: _Buffer, rows: int) -> "pa.StringArray":
        """`<replica>-<request>-<row>` per row, built by Arrow (no Python loop, the GIL
        released); null for rows recorded without a request number."""
        import pyarrow as pa
        import pyarrow.compute

        # pyarrow's stubs type these functions' arguments as arrays only; they take scalars.
        compute = cast(Any, pyarrow.compute)
        ids = compute.binary_join_element_wise(
            self.replica,
            compute.cast(pa.array(buffer.numbers[:rows]), pa.string()),
            compute.cast(pa.array(buffer.rows[:rows]), pa.string()),
            "-",
        )
        missing = buffer.numbers[:rows] < 0
        if missing.any():
            ids = compute.if_else(pa.array(missing), None, ids)
        return cast(pa.StringArray, ids)

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
