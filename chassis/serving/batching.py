"""Micro-batching: concurrent requests for one version share one ONNX Runtime call.

The first waiting request opens a batch; it closes when `max_batch` rows are queued or
`max_wait_ms` has passed. With one request in flight and `max_wait_ms=0`, a request runs
alone at once, so batching costs nothing at low load.
"""

import asyncio
import contextlib
from collections.abc import Callable

import numpy as np

Runner = Callable[[np.ndarray], np.ndarray]


class MicroBatcher:
    def __init__(self, run: Runner, max_batch: int = 64, max_wait_ms: float = 1.0) -> None:
        self.run = run
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.rows = 0

    async def predict(self, rows: np.ndarray) -> np.ndarray:
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._work())
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self.queue.put((rows, future))
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self.queue.get()
            pending = [first]
            size = len(first[0])
            deadline = loop.time() + self.max_wait
            while size < self.max_batch:
                timeout = deadline - loop.time()
                try:
                    item = (
                        self.queue.get_nowait()
                        if timeout <= 0
                        else await asyncio.wait_for(self.queue.get(), timeout)
                    )
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                pending.append(item)
                size += len(item[0])
            inputs = np.concatenate([rows for rows, _ in pending]) if len(pending) > 1 else first[0]
            try:
                # ONNX Runtime releases the GIL: the event loop keeps accepting requests.
                outputs = await loop.run_in_executor(None, self.run, inputs)
            except Exception as error:
                for _, future in pending:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.batches += 1
            self.rows += size
            start = 0
            for rows, future in pending:
                if not future.done():
                    future.set_result(outputs[start : start + len(rows)])
                start += len(rows)

    async def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
