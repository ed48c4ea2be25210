"""What the gateway's per-request metrics cost: one answered request's metric work before
issue 15 (its tally: count, latency bucket, class counts) and now (plus the in-flight
increment and decrement, and the confidence softmax on one answer in CONFIDENCE_SAMPLE).

CPU microseconds a request, best of 5 runs of 200,000 calls, in one process: no server, no
model, so the difference is the metrics' alone (the whole app's cost per request, which it
is a share of, is `serving.py`'s "app cost"). Nothing here is a test.
"""

import time

import numpy as np

from chassis.serving.metrics import CONFIDENCE_SAMPLE, GatewayMetrics

CALLS = 200_000


def before(logits: np.ndarray, predictions: list[int]) -> float:
    tally = GatewayMetrics().tally("m", "1", "stable")
    started = time.thread_time()
    for _ in range(CALLS):
        tally.record(0.0004, predictions, None)  # no logits: no confidence
    return (time.thread_time() - started) / CALLS * 1e6


def now(logits: np.ndarray, predictions: list[int]) -> float:
    metrics = GatewayMetrics()
    tally = metrics.tally("m", "1", "stable")
    in_flight = metrics.in_flight
    started = time.thread_time()
    for _ in range(CALLS):
        in_flight["m"] = in_flight.get("m", 0) + 1  # as Gateway.predict does
        try:
            tally.record(0.0004, predictions, logits)
        finally:
            in_flight["m"] -= 1
    return (time.thread_time() - started) / CALLS * 1e6


def main() -> None:
    logits = np.random.default_rng(0).random((1, 10), dtype=np.float32)  # a digits answer
    predictions: list[int] = logits.argmax(axis=1).tolist()
    runs = [(before(logits, predictions), now(logits, predictions)) for _ in range(5)]
    old, new = min(r[0] for r in runs), min(r[1] for r in runs)
    print(f"per-request metrics, batch of 1, 10 classes (confidence on 1 in {CONFIDENCE_SAMPLE})")
    print(f"  before issue 15: {old:.2f} us   now: {new:.2f} us   added: {new - old:.2f} us")


if __name__ == "__main__":
    main()
