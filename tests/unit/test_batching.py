import asyncio
import time

import numpy as np

from chassis.serving.batching import MicroBatcher


def double(rows: np.ndarray) -> np.ndarray:
    return rows * 2


def test_concurrent_requests_share_calls_and_get_their_own_rows_back():
    calls: list[int] = []

    def slow_double(rows: np.ndarray) -> np.ndarray:
        # Slow enough to run in a worker thread, where queued requests form batches.
        deadline = time.thread_time() + 0.002
        while time.thread_time() < deadline:  # CPU work, as a model does
            pass
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
    calls: list[np.ndarray] = []

    def exploding_at_its_second_call(rows: np.ndarray) -> np.ndarray:
        # Slow enough (CPU work) that the concurrent requests queue for the worker thread.
        deadline = time.thread_time() + 0.002
        while time.thread_time() < deadline:
            pass
        calls.append(rows.copy())
        if len(calls) == 2:  # a runtime fault in one call, whatever its rows
            raise RuntimeError("onnxruntime exploded")
        return rows * 2

    inputs = [np.full((1 + i % 3, 2), i, dtype=np.float32) for i in range(8)]

    async def scenario() -> tuple[list[np.ndarray | BaseException], np.ndarray]:
        # One request per batch: each request's fate is its own call's.
        batcher = MicroBatcher(exploding_at_its_second_call, max_batch=1)
        async with asyncio.timeout(30):  # a batcher the fault broke would leave them waiting
            results = await asyncio.gather(
                *(batcher.predict(x) for x in inputs), return_exceptions=True
            )
            later = await batcher.predict(np.full((1, 2), 50, dtype=np.float32))
        await batcher.close()
        return results, later

    results, later = asyncio.run(scenario())
    failed = [i for i, result in enumerate(results) if isinstance(result, BaseException)]
    assert len(failed) == 1, results
    (bad,) = failed
    assert isinstance(results[bad], RuntimeError) and "exploded" in str(results[bad])
    np.testing.assert_array_equal(calls[1], inputs[bad])  # the request of the failed call
    for i, result in enumerate(results):
        if i != bad:
            np.testing.assert_array_equal(result, inputs[i] * 2)  # its own rows, answered
    np.testing.assert_array_equal(later, np.full((1, 2), 100))  # the batcher still serves


def test_a_fast_model_answers_inline_without_the_queue():
    async def scenario() -> MicroBatcher:
        batcher = MicroBatcher(double)
        for _ in range(5):
            await batcher.predict(np.ones((1, 2), dtype=np.float32))
        return batcher

    batcher = asyncio.run(scenario())
    assert batcher.worker is None and batcher.batches == 5


def test_queued_batches_report_their_rows_and_cpu_time_on_the_loop_thread():
    import threading

    reports: list[tuple[int, float, str]] = []

    def busy_double(rows: np.ndarray) -> np.ndarray:
        # CPU work (not sleep): the thread CPU time must see it.
        deadline = time.thread_time() + 0.001
        while time.thread_time() < deadline:
            pass
        return rows * 2

    def observe(rows: int, cpu: float) -> None:
        reports.append((rows, cpu, threading.current_thread().name))

    async def scenario() -> None:
        batcher = MicroBatcher(busy_double, max_batch=8, on_batch=observe)
        await asyncio.gather(*(batcher.predict(np.ones((1, 2), np.float32)) for _ in range(20)))
        await batcher.close()

    asyncio.run(scenario())
    queued = reports
    assert sum(rows for rows, _, _ in queued) <= 20 and queued
    assert all(cpu >= 0.001 for _, cpu, _ in queued)
    assert {name for _, _, name in queued} == {threading.main_thread().name}


def slow_model_refusing_negatives(calls: list[int]):
    """A model slow enough to batch that fails any call holding a negative value."""

    def run(rows: np.ndarray) -> np.ndarray:
        deadline = time.thread_time() + 0.002
        while time.thread_time() < deadline:
            pass
        calls.append(len(rows))
        if (rows < 0).any():
            raise RuntimeError("Invalid input")
        return rows * 2

    return run


def test_a_request_that_fails_its_batch_fails_alone():
    calls: list[int] = []

    async def scenario() -> list[np.ndarray | BaseException]:
        batcher = MicroBatcher(slow_model_refusing_negatives(calls), max_batch=64, max_wait_ms=5)
        inputs = [np.full((1, 3), -1.0 if i == 7 else i, dtype=np.float32) for i in range(20)]
        results = await asyncio.gather(
            *(batcher.predict(x) for x in inputs), return_exceptions=True
        )
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    failed = [i for i, r in enumerate(results) if isinstance(r, Exception)]
    assert failed == [7]  # only the offending request
    assert [float(r[0, 0]) for i, r in enumerate(results) if i != 7] == [  # type: ignore[index]
        2.0 * i for i in range(20) if i != 7
    ]
    assert any(size > 1 for size in calls)  # the bad request was batched with others


def test_requests_whose_clients_gave_up_are_not_computed():
    calls: list[int] = []

    async def scenario() -> None:
        batcher = MicroBatcher(slow_model_refusing_negatives(calls), max_batch=64)
        first = asyncio.ensure_future(batcher.predict(np.ones((1, 3), dtype=np.float32)))
        await asyncio.sleep(0)  # the first call starts; the next ones queue behind it
        abandoned = [
            asyncio.ensure_future(batcher.predict(np.full((1, 3), 5.0, dtype=np.float32)))
            for _ in range(10)
        ]
        await asyncio.sleep(0)
        for request in abandoned:
            request.cancel()  # what a request timeout does
        kept = await batcher.predict(np.full((1, 3), 3.0, dtype=np.float32))
        await first
        assert float(kept[0, 0]) == 6.0
        await batcher.close()

    asyncio.run(scenario())
    assert sum(calls) < 1 + 10 + 1  # the cancelled rows were never run
    assert sum(calls) >= 2


def test_an_overloaded_model_computes_only_requests_it_can_answer_in_time():
    """Ten requests, each with 0.12 s to live, on a model taking 0.04 s a call, one row per
    call: a FIFO queue would compute requests whose clients are gone by the time they
    finish. Only requests whose answer can still arrive in time are computed."""
    computed: list[float] = []

    def slow(rows: np.ndarray) -> np.ndarray:
        deadline = time.perf_counter() + 0.04
        while time.perf_counter() < deadline:
            pass
        computed.append(float(rows[0, 0]))
        return rows

    async def scenario() -> list[np.ndarray | BaseException]:
        batcher = MicroBatcher(slow, max_batch=1)
        await batcher.predict(np.full((1, 1), -1.0, dtype=np.float32))  # learns its pace
        loop = asyncio.get_running_loop()

        async def client(i: int) -> np.ndarray:
            deadline = loop.time() + 0.12
            async with asyncio.timeout_at(deadline):
                return await batcher.predict(np.full((1, 1), i, dtype=np.float32), deadline)

        results = await asyncio.gather(*(client(i) for i in range(10)), return_exceptions=True)
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    answered = {int(r[0, 0]) for r in results if isinstance(r, np.ndarray)}
    wasted = [x for x in computed[1:] if int(x) not in answered]
    assert answered  # some were answered in time
    assert wasted == []  # no call spent on a request whose client was gone
    assert all(isinstance(r, TimeoutError) for r in results if not isinstance(r, np.ndarray))


def test_preempted_live_calls_timed_on_the_clock_never_queue_a_fast_model():
    # A live call of a fast model is timed on the clock alone (no CPU time is read for
    # it); a call the OS preempted then looks long. Each counts at most the cap, and the
    # next one reads CPU time again, so the model stays on the event loop.
    preempted = [False]

    def model(rows: np.ndarray) -> np.ndarray:
        if preempted[0]:
            time.sleep(0.005)  # off the CPU: what a preemption looks like on the clock
        return rows * 2

    batcher = MicroBatcher(model)
    rows = np.ones((1, 2), dtype=np.float32)
    assert batcher.answer_now(rows, cpu=False) is not None
    preempted[0] = True
    inline = []
    for _ in range(20):
        assert batcher.answer_now(rows, cpu=False) is not None
        inline.append(batcher.inline)
    assert all(inline)
    assert batcher.answer_now(rows) is not None and batcher.last_cpu < 0.005  # CPU read
