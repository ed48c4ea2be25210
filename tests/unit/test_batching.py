import asyncio
import time

import numpy as np
import pytest

from chassis.serving.batching import MicroBatcher


def double(rows: np.ndarray) -> np.ndarray:
    return rows * 2


def test_concurrent_requests_share_calls_and_get_their_own_rows_back():
    calls: list[int] = []

    def slow_double(rows: np.ndarray) -> np.ndarray:
        # Slow enough to run in a worker thread, where queued requests form batches.
        time.sleep(0.002)
        calls.append(len(rows))
        return rows * 2

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(slow_double, max_batch=16, max_wait_ms=5)
        inputs = [np.full((1, 3), i, dtype=np.float32) for i in range(40)]
        results = await asyncio.gather(*(batcher.predict(x) for x in inputs))
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    assert [float(r[0, 0]) for r in results] == [2.0 * i for i in range(40)]
    assert sum(calls) == 40
    assert len(calls) < 40 and max(calls) <= 16  # batched, and never above max_batch
    assert max(calls) > 1


def test_a_lone_request_does_not_wait_for_company():
    async def scenario() -> float:
        batcher = MicroBatcher(double, max_batch=64, max_wait_ms=50)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await batcher.predict(np.ones((1, 2), dtype=np.float32))
        elapsed = loop.time() - started
        await batcher.close()
        return elapsed

    assert asyncio.run(scenario()) < 0.04  # far below the 50 ms window


def test_a_failing_model_fails_only_its_batch():
    def broken(rows: np.ndarray) -> np.ndarray:
        raise RuntimeError("onnxruntime exploded")

    async def scenario() -> None:
        batcher = MicroBatcher(broken)
        with pytest.raises(RuntimeError, match="exploded"):
            await batcher.predict(np.ones((1, 2), dtype=np.float32))
        await batcher.close()

    asyncio.run(scenario())


def test_a_fast_model_answers_inline_without_the_queue():
    async def scenario() -> MicroBatcher:
        batcher = MicroBatcher(double)
        for _ in range(5):
            await batcher.predict(np.ones((1, 2), dtype=np.float32))
        return batcher

    batcher = asyncio.run(scenario())
    assert batcher.worker is None and batcher.batches == 5
