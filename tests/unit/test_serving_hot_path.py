"""The gateway's per-request shortcuts give what the plain code gave: the same arrays and
errors from validation, the same Prometheus exposition, the same prediction log."""

import asyncio
import io
import time

import numpy as np
import orjson
import pandas as pd
import pytest

from chassis.errors import RequestError
from chassis.serving.batching import MicroBatcher
from chassis.serving.metrics import CONFIDENCE_SAMPLE, GatewayMetrics
from chassis.serving.prediction_log import PredictionLogger
from chassis.serving.validation import Limits, parse_instances


def parse(body: bytes) -> np.ndarray:
    return parse_instances(body, "application/json", 4, Limits(max_rows=8))


@pytest.mark.parametrize(
    "body",
    [
        b'{"instances": [[1, 2.5, -3, 4e2]]}',
        b'{"instances": [[1, 2, 3, 4], [5, 6, 7, 8]]}',
        b'{"\\u0069nstances": [[1, 2, 3, 4]]}',  # the key escaped: the strict path
        b'{"instances": [[3e38, 3e38, 3e38, 3e38]]}',  # finite, near float32's limit
    ],
)
def test_well_formed_rows_become_float32(body):
    rows = parse(body)
    expected = np.asarray(next(iter(orjson.loads(body).values())), dtype=np.float32)
    assert rows.dtype == np.float32 and np.array_equal(rows, expected)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"instances": [["1.5", 2, 3, 4]]}', 422, "must be a number"),
        (b'{"instances": [[true, false, true, true]]}', 422, "must be a number"),
        (b'{"instances": [[1, null, 3, 4]]}', 422, "must be a number"),
        (b'{"instances": [[1, 2, 3, 1e39]]}', 422, "beyond float32"),
        (b'{"instances": [[1, 2, 3, 4], [1, 2]]}', 422, "row 1 must be a list of 4"),
        (b'{"instances": [[{}, 2, 3, 4]]}', 422, "must be a number"),
        (b'{"instances": [[[1], 2, 3, 4]]}', 422, "flat lists of numbers"),
        (b'{"instances": [' + b"[1,2,3,4]," * 8 + b"[1,2,3,4]]}", 413, "row limit"),
        (b'{"instances": []}', 422, "is empty"),
    ],
)
def test_anything_else_gets_the_strict_error(body, status, message):
    with pytest.raises(RequestError) as refused:
        parse(body)
    assert refused.value.status == status and message in refused.value.message


def test_metrics_exposition_keeps_names_labels_and_buckets():
    metrics = GatewayMetrics()
    metrics.observe("m", "1", "stable", 0.0004, [3])
    metrics.observe("m", "1", "stable", 0.00048828125, [3, 7])  # on a bound: counted `le` it
    metrics.observe("m", "2", "candidate", 2.0, [7])
    metrics.count_error("m", "2", "500")
    metrics.count_shadow("m", "2", agreed=3, compared=4)
    text = metrics.render().decode()
    for line in [
        'chassis_requests_total{model="m",role="stable",version="1"} 2.0',
        'chassis_requests_total{model="m",role="candidate",version="2"} 1.0',
        'chassis_request_latency_seconds_bucket{le="0.00048828125",model="m",version="1"} 2.0',
        'chassis_request_latency_seconds_bucket{le="1.0",model="m",version="2"} 0.0',
        'chassis_request_latency_seconds_bucket{le="2.0",model="m",version="2"} 1.0',
        'chassis_request_latency_seconds_bucket{le="+Inf",model="m",version="2"} 1.0',
        'chassis_request_latency_seconds_count{model="m",version="1"} 2.0',
        'chassis_request_latency_seconds_sum{model="m",version="1"} 0.00088828125',
        'chassis_predicted_class_total{label="3",model="m",version="1"} 2.0',
        'chassis_predicted_class_total{label="7",model="m",version="1"} 1.0',
        'chassis_errors_total{model="m",status="500",version="2"} 1.0',
        'chassis_shadow_comparisons_total{agreed="yes",model="m",version="2"} 3.0',
        'chassis_shadow_comparisons_total{agreed="no",model="m",version="2"} 1.0',
    ]:
        assert line in text, line
    assert 'chassis_requests_created{model="m",role="stable",version="1"}' in text
    assert 'chassis_request_latency_seconds_created{model="m",version="1"}' in text


def test_confidence_is_the_top_softmax_probability_of_one_answer_in_a_sample():
    metrics = GatewayMetrics()
    # Softmax of [0, 2]: e^2 / (1 + e^2) = 0.8808, in the 0.9 bucket.
    for _ in range(CONFIDENCE_SAMPLE + 1):
        metrics.observe("m", "1", "stable", 0.001, [1], np.array([[0.0, 2.0]]))
    metrics.observe("m", "1", "shadow", 0.001, [1], np.array([[0.0, 9.0]]))  # not an answer
    text = metrics.render().decode()
    series = 'model="m",version="1"'
    assert f'chassis_prediction_confidence_ratio_bucket{{le="0.8",{series}}} 0.0' in text
    # The first answer and the sample's next one: two of CONFIDENCE_SAMPLE + 1.
    assert f'chassis_prediction_confidence_ratio_bucket{{le="0.9",{series}}} 2.0' in text
    [total] = [line for line in text.splitlines() if "confidence_ratio_sum{" in line]
    assert float(total.rsplit(" ", 1)[1]) == pytest.approx(2 * np.exp(2) / (1 + np.exp(2)))


def test_error_answers_carry_their_code_class_and_load_failures_their_check():
    metrics = GatewayMetrics()
    metrics.count_error_answer("m", 422)
    metrics.count_error_answer("m", 503)
    metrics.count_load_failure("m", 3, "sha256")
    text = metrics.render().decode()
    assert 'chassis_http_errors_total{code_class="4xx",model="m",status="422"} 1.0' in text
    assert 'chassis_http_errors_total{code_class="5xx",model="m",status="503"} 1.0' in text
    expected = 'chassis_model_load_failures_total{check="sha256",model="m",version="3"} 1.0'
    assert expected in text


def test_each_queued_request_reports_its_wait_and_an_inline_one_none():
    waits: list[float] = []

    def slow(rows: np.ndarray) -> np.ndarray:
        deadline = time.thread_time() + 0.002
        while time.thread_time() < deadline:  # CPU work: the model leaves the loop after it
            pass
        return rows

    async def scenario() -> None:
        batcher = MicroBatcher(slow, on_wait=waits.append)
        await batcher.predict(np.ones((1, 2), dtype=np.float32))  # inline: no wait
        rows = np.ones((1, 2), dtype=np.float32)
        await asyncio.gather(*(batcher.predict(rows) for _ in range(3)))
        await batcher.close()

    asyncio.run(scenario())
    assert len(waits) == 3 and all(wait >= 0 for wait in waits)


def test_prediction_log_writes_every_recorded_row_and_drops_beyond_capacity():
    files: dict[str, bytes] = {}
    log = PredictionLogger("m", ["a", "b"], files.__setitem__, capacity=5)
    log.record(1, np.array([[1.0, 2.0]], dtype=np.float32), np.array([0]))
    log.record(2, np.array([[3.0, 4.0], [5.0, 6.0]]), np.array([1, 2]))
    log.record(1, np.zeros((3, 2), dtype=np.float32), np.zeros(3, dtype=np.int64))  # too many
    assert log.flush() == 3 and log.dropped_rows == 3
    (payload,) = files.values()
    frame = pd.read_parquet(io.BytesIO(payload))
    assert frame["a"].tolist() == [1.0, 3.0, 5.0] and frame["b"].dtype == np.float32
    assert frame["prediction"].tolist() == [0, 1, 2]
    assert frame["model_version"].tolist() == [1, 2, 2]
    assert frame["served_at"].is_monotonic_increasing
    assert log.flush() == 0  # nothing left; room for a new file's worth
    log.record(1, np.zeros((5, 2), dtype=np.float32), np.zeros(5, dtype=np.int64))
    assert log.flush() == 5


def test_one_slow_call_does_not_take_a_fast_model_off_the_inline_path():
    calls = 0

    def once_slow(rows: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 2:
            # The OS preempted it, say: long on the clock, no work. (A sleep is exactly that.)
            time.sleep(0.01)
        return rows

    async def scenario() -> MicroBatcher:
        batcher = MicroBatcher(once_slow)
        for _ in range(5):
            await batcher.predict(np.ones((1, 2), dtype=np.float32))
        return batcher

    assert asyncio.run(scenario()).worker is None


def test_a_slow_model_leaves_the_event_loop_at_once():
    def slow(rows: np.ndarray) -> np.ndarray:
        deadline = time.thread_time() + 0.002
        while time.thread_time() < deadline:  # CPU work, as a model does
            pass
        return rows

    async def scenario() -> MicroBatcher:
        batcher = MicroBatcher(slow)
        for _ in range(3):
            await batcher.predict(np.ones((1, 2), dtype=np.float32))
        await batcher.close()
        return batcher

    batcher = asyncio.run(scenario())
    assert batcher.worker is not None and batcher.batches == 3


def test_prediction_log_keeps_every_row_in_order_across_chunks():
    files: dict[str, bytes] = {}
    log = PredictionLogger("m", ["a", "b", "c"], files.__setitem__, capacity=10_000)
    expected = list(range(1000))  # one-row requests, drained many chunks at a time
    for i in expected[:500]:
        log.record(1 + i % 2, np.array([[i, -i, 0.5]], dtype=np.float32), np.array([i % 10]))
    wide = np.arange(3 * 700, dtype=np.float32).reshape(-1, 3)  # one request of 700 rows
    log.record(3, wide, np.zeros(len(wide), dtype=np.int64))
    for i in expected[500:]:
        log.record(1 + i % 2, np.array([[i, -i, 0.5]], dtype=np.float32), np.array([i % 10]))
    assert log.flush() == 1700
    (payload,) = files.values()
    frame = pd.read_parquet(io.BytesIO(payload))
    a = frame["a"].tolist()
    assert a[:500] + a[1200:] == expected
    assert a[500:1200] == wide[:, 0].tolist()
    assert frame["b"].tolist()[:3] == [0.0, -1.0, -2.0]
    versions = frame["model_version"].tolist()
    assert versions[:4] == [1, 2, 1, 2] and set(versions[500:1200]) == {3}
    assert frame["prediction"].tolist()[:12] == [i % 10 for i in range(12)]


def test_a_preempted_first_call_does_not_take_a_fast_model_off_the_inline_path():
    calls = 0

    def first_preempted(rows: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 1:
            time.sleep(0.01)  # long on the clock, no work: what a busy machine does
        return rows

    async def scenario() -> MicroBatcher:
        batcher = MicroBatcher(first_preempted)
        for _ in range(5):
            await batcher.predict(np.ones((1, 2), dtype=np.float32))
        return batcher

    batcher = asyncio.run(scenario())
    assert batcher.worker is None and batcher.batches == 5
