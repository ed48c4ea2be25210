"""Micro-batching: concurrent requests for one version share one ONNX Runtime call.

Greedy by default: whatever is queued when the model becomes free forms the next batch (up
to `max_batch` rows), so a lone request never waits for company and load alone decides the
batch size. `max_wait_ms` > 0 additionally holds a batch open briefly while other requests
are known to be on their way (parsed, not yet queued).

Small, fast models run on the event loop itself: a thread hop costs more than the model.
Slow ones (by a moving average of their run time) run in a worker thread, and ONNX Runtime
releases the GIL there, so the loop keeps accepting requests. A fast model with nothing
queued answers through `answer_now`, a plain call: no coroutine, future or queue.
"""

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import NamedTuple, cast

import numpy as np

from chassis.errors import DeadlineExceeded

Runner = Callable[[np.ndarray], np.ndarray]
INLINE_BUDGET_SECONDS = 0.0002
# One call counts at most this much in the moving average: one call of a fast model that
# the OS preempted (a busy, shared machine) must not send the next requests through the
# queue and a thread. A slow model's calls all count above the budget, so it still moves
# to the worker thread at its first call.
SAMPLE_CAP_SECONDS = 4 * INLINE_BUDGET_SECONDS
# Below this moving average, a call whose CPU time nobody reads (a live answer) is timed on
# the clock alone: reading the thread's CPU time is a system call (~0.6 us, twice a call),
# a tenth of a one-row digits call. Safe: from below it, one call counts at most the cap,
# which leaves the average at most 0.9 x 50 + 0.1 x 800 = 125 us, under the budget, and
# from above it CPU time is read again; so a preempted call still cannot queue a fast model.
CLOCK_ONLY_BELOW_SECONDS = INLINE_BUDGET_SECONDS / 4


# At least one queued request per this many seconds is computed whatever the estimate says.
PROBE_SECONDS = 1.0


class Queued(NamedTuple):
    rows: np.ndarray
    future: "asyncio.Future[np.ndarray]"
    deadline: float | None  # event-loop time; None: no deadline
    enqueued: float  # event-loop time it was queued (its queue wait ends as its batch starts)


class MicroBatcher:
    def __init__(
        self,
        run: Runner,
        max_batch: int = 64,
        max_wait_ms: float = 0.0,
        on_batch: Callable[[int, float], None] | None = None,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self.run = run
        # Told (rows, CPU seconds) after each queued batch, on the event loop's thread.
        self.on_batch = on_batch
        # Told each queued request's wait (seconds from queued to its batch's start), on the
        # event loop's thread; a request answered by `answer_now` waited for nothing.
        self.on_wait = on_wait
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.queue: asyncio.Queue[Queued] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None
        self.in_flight = 0
        # Requests handed to the worker and not yet answered (in the queue, in the batch
        # being formed, or running): while any is, a new request joins them.
        self.queued = 0
        self.run_seconds = 0.0  # moving average of one model call (capped: inline or not)
        self.row_seconds = 0.0  # moving average of a call's wall time per row (deadlines)
        self.last_call_end = 0.0  # event-loop time of the last model call's end
        self.batches = 0
        self.rows = 0
        # CPU seconds of the last call made by `answer_now` (read right after it returns).
        self.last_cpu = 0.0

    @property
    def inline(self) -> bool:
        """Whether the model is fast enough to be called on the event loop (when nothing
        is queued); a slower one's calls go through the queue, each batch's cost recorded."""
        return self.run_seconds < INLINE_BUDGET_SECONDS

    def answer_now(self, rows: np.ndarray, cpu: bool = True) -> np.ndarray | None:
        """The model's output, computed right here when the model is fast and nothing is
        queued or running (so no batch is being formed to join); None: await `predict`.
        `cpu`: `last_cpu` is read after it (False: it may be the wall time instead)."""
        if self.queued or not self.inline:
            return None
        outputs, self.last_cpu = self._timed(rows, cpu)
        return outputs

    async def predict(self, rows: np.ndarray, deadline: float | None = None) -> np.ndarray:
        """`rows`' outputs. `deadline` (event-loop time): when the client stops waiting; a
        request that cannot be answered by then at the model's recent pace is failed with
        DeadlineExceeded before it is computed, so an overloaded model spends its time on
        requests it can still answer in time."""
        outputs = self.answer_now(rows)
        if outputs is not None:
            return outputs
        loop = asyncio.get_running_loop()
        if self.worker is None:
            self.worker = loop.create_task(self._work())
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self.in_flight += 1
        self.queued += 1
        try:
            await self.queue.put(Queued(rows, future, deadline, loop.time()))
            return await future
        finally:
            self.in_flight -= 1

    async def _collect(self) -> list["Queued"]:
        loop = asyncio.get_running_loop()
        pending = [await self.queue.get()]
        size = len(pending[0][0])
        deadline = loop.time() + self.max_wait
        while size < self.max_batch:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                others_coming = self.in_flight > len(pending)
                remaining = deadline - loop.time()
                if not others_coming or remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), remaining)
                except TimeoutError:
                    break
            pending.append(item)
            size += len(item[0])
        return pending

    async def _work(self) -> None:
        while True:
            pending = await self._collect()
            try:
                await self._answer(pending)
            finally:
                self.queued -= len(pending)

    async def _answer(self, pending: list["Queued"]) -> None:
        # A request whose client gave up (its future cancelled by a request timeout) is not
        # computed, nor one that would be answered after its deadline at the model's recent
        # pace: under overload the model works only for clients it can still answer.
        now = asyncio.get_running_loop().time()
        waiting = [item for item in pending if not item.future.done()]
        if self.on_wait is not None:
            for item in waiting:
                self.on_wait(now - item.enqueued)
        finish = now + self.row_seconds * sum(len(item.rows) for item in waiting)
        # The pace is re-measured at least once a second: an estimate left high by one huge
        # call must not shed every request forever (nothing would run to correct it).
        probe = now - self.last_call_end > PROBE_SECONDS
        live: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []
        for index, (rows, future, deadline, _) in enumerate(waiting):
            last_chance = probe and index == len(waiting) - 1 and not live
            if deadline is not None and finish > deadline and not last_chance:
                _settle(future, error=DeadlineExceeded())
                continue
            live.append((rows, future))
        if not live:
            return
        try:
            outputs = await self._call(
                np.concatenate([rows for rows, _ in live]) if live[1:] else live[0][0]
            )
        except Exception as error:
            if not live[1:]:
                _settle(live[0][1], error=error)
                return
            # One request's rows made the whole call fail (validation cannot foresee every
            # input a model refuses): each request runs alone, so only the offending one
            # fails and the others get their answers, a few calls later.
            for rows, future in live:
                try:
                    _settle(future, await self._call(rows))
                except Exception as alone:
                    _settle(future, error=alone)
            return
        start = 0
        for rows, future in live:
            _settle(future, outputs[start : start + len(rows)])
            start += len(rows)

    async def _call(self, inputs: np.ndarray) -> np.ndarray:
        """One model call: inline for a fast model, else on a worker thread."""
        if self.run_seconds < INLINE_BUDGET_SECONDS:
            outputs, cpu = self._timed(inputs)
        else:
            loop = asyncio.get_running_loop()
            outputs, cpu = await loop.run_in_executor(None, self._timed, inputs)
        self.last_call_end = asyncio.get_running_loop().time()
        if self.on_batch is not None:
            self.on_batch(len(inputs), cpu)
        return outputs

    def _timed(self, inputs: np.ndarray, cpu_read: bool = True) -> tuple[np.ndarray, float]:
        """Outputs, and the CPU time of the call on this thread: unlike wall time, it does
        not grow when another process or thread holds the core (a busy machine, the GIL),
        so two versions' calls can be compared whatever else runs. `cpu_read` False: a
        fast model's call may be timed on the clock alone (CLOCK_ONLY_BELOW_SECONDS)."""
        clock_only = (
            not cpu_read and self.batches > 0 and self.run_seconds < CLOCK_ONLY_BELOW_SECONDS
        )
        started = time.perf_counter()
        cpu_started = 0.0 if clock_only else time.thread_time()
        outputs = self.run(inputs)
        cpu = 0.0 if clock_only else time.thread_time() - cpu_started
        # The model's own cost decides inline vs worker thread: the smaller of wall and CPU
        # time of this thread. A call the OS preempted (a busy machine) is long on the clock
        # but not in work, and even the very first call must not send a fast model to the
        # queue for that. (ONNX Runtime runs the model on this thread with one intra-op
        # thread, as the gateway configures it, or spins while its pool works: the thread's
        # CPU time is the model's time.)
        wall = time.perf_counter() - started
        if clock_only:
            cpu = wall
        # Per row, so one huge call does not make a one-row call look as slow (load included).
        per_row = wall / max(len(inputs), 1)
        self.row_seconds = per_row if not self.batches else 0.9 * self.row_seconds + 0.1 * per_row
        elapsed = min(wall, cpu, SAMPLE_CAP_SECONDS)
        # A moving average decides inline vs worker thread for the next calls.
        self.run_seconds = elapsed if not self.batches else 0.9 * self.run_seconds + 0.1 * elapsed
        self.batches += 1
        self.rows += len(inputs)
        return outputs, cpu

    async def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker


def _settle(
    future: "asyncio.Future[np.ndarray]",
    result: np.ndarray | None = None,
    error: BaseException | None = None,
) -> None:
    """Answer a request unless its client is gone (cancelled meanwhile)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(cast(np.ndarray, result))  # given whenever no error is
