"""What prediction ids cost a predict request: keeping the answer in the feedback window
(`PredictionWindow.add`, which also makes the ids) and the ids' bytes in the answer, against
the answer built as before. And what a full window holds in memory.

CPU microseconds a request, best of 5 runs of 200,000 calls, in one process (no server, no
model): the difference is the ids' alone; the whole app's cost a request, which it is a
share of, is `serving.py`'s "app cost". Nothing here is a test.
"""

import time
import tracemalloc

import orjson

from chassis.serving.asgi import answer_parts
from chassis.serving.feedback import PredictionWindow, replica_tag

CALLS = 200_000


def before(predictions: list[int]) -> float:
    prefix, _ = answer_parts("digits-mlp", 1)
    started = time.thread_time()
    for _ in range(CALLS):
        _ = b"%s%s}" % (prefix, orjson.dumps(predictions))
    return (time.thread_time() - started) / CALLS * 1e6


def now(predictions: list[int]) -> float:
    prefix, _ = answer_parts("digits-mlp", 1)
    window = PredictionWindow(replica_tag(), 100_000, 3600)
    started = time.thread_time()
    for _ in range(CALLS):
        number = window.add(1, predictions)  # as Gateway.predict, then GatewayApp.predict
        ids = window.ids_json(number, len(predictions))
        _ = b'%s%s,"ids":%s}' % (prefix, orjson.dumps(predictions), ids)
    return (time.thread_time() - started) / CALLS * 1e6


def window_bytes(requests: int, rows: int) -> float:
    """Bytes a window of `requests` requests of `rows` rows holds, per request (the answers
    lists are the response's own, counted here as the window keeps them alive)."""
    tracemalloc.start()
    window = PredictionWindow(replica_tag(), requests, 3600)
    for _ in range(requests):
        window.add(1, list(range(rows)))
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return size / requests


def main() -> None:
    for rows in (1, 32):
        predictions = [3] * rows
        runs = [(before(predictions), now(predictions)) for _ in range(5)]
        old, new = min(r[0] for r in runs), min(r[1] for r in runs)
        print(
            f"answer of {rows:2d} row(s): before {old:.2f} us, with ids {new:.2f} us, "
            f"added {new - old:.2f} us"
        )
    for rows in (1, 32):
        print(f"window memory, {rows:2d} row(s) a request: {window_bytes(100_000, rows):.0f} B")


if __name__ == "__main__":
    main()
