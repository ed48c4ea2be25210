"""Overload and a model that does not answer in time, against a real gateway process.

The champion is `hundreds_slower` (the same answers as `good` for hundreds of times the
compute, ~3 ms a row), one request per model call (CHASSIS_GATEWAY_MAX_BATCH=1), and the
burst's requests carry 16 rows each: the gateway's capacity is then the model's (tens of
requests a second, whatever else the machine runs), which a client on the same machine can
offer three times over, and which a closed loop of a few clients saturates. The request
timeout is 0.5 s, so a request queued behind an overloaded or hung model gets its 504
instead of waiting.

Load comes from a small raw-HTTP asyncio client: cheap per request, so on a shared 2-core
machine the client's own CPU does not decide the rate offered.
"""

import asyncio
import collections
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from chassis.gates import GatePolicy
from tests.fixtures.fault_gateway import metric_samples, metric_sum, release_into
from tests.fixtures.fault_report import ScenarioResult
from tests.fixtures.gateway import MODEL, GatewayProcess

pytestmark = pytest.mark.slow

SHED = (503, 504)  # the statuses of documented limits shedding load
ROW = [0.5, -1.0, 2.0, 0.0]
BURST_ROWS = 16  # rows per request of the capacity run and the burst
HANG_ROWS = 4096  # one call of 3-15 s on a 2-core machine: 6-30x the request timeout
REQUEST_TIMEOUT_SECONDS = 0.5
MAX_ROWS = 16384
ANSWER_WITHIN_SECONDS = 30.0  # a client not answered by then counts as hung
LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("faults-overload") / "chassis"
    # The gates still run and must pass; only the absolute p99 budget is lifted from 50 ms
    # to 1 s: this model is ~3 ms a row, and on a busy 2-core machine its measured p99 has
    # gone past 50 ms (157 ms seen), which would stop the release before any fault.
    release_into(
        home,
        "tests.fixtures.specs:hundreds_slower",
        thresholds=GatePolicy(latency_p99_ms_budget=1000.0),
    )
    return home


@pytest.fixture(scope="module")
def gateway(home: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(
        home,
        env={
            "CHASSIS_GATEWAY_MAX_BATCH": "1",
            "CHASSIS_GATEWAY_REQUEST_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT_SECONDS),
            "CHASSIS_GATEWAY_MAX_ROWS": str(MAX_ROWS),
            "CHASSIS_GATEWAY_MAX_BODY_BYTES": str(8 << 20),
            "CHASSIS_GATEWAY_FOLLOW_SECONDS": "0",  # no registry reads competing for the CPU
        },
    )
    process.start()
    yield process
    process.stop()


def predict_request(rows: list[list[float]]) -> bytes:
    body = orjson.dumps({"instances": rows})
    return (
        f"POST /v1/models/{MODEL}/predict HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


Outcome = int | str  # an HTTP status, or what went wrong instead ("dropped: ...", "hung")


class RawClient:
    """Keep-alive HTTP/1.1 connections to the gateway, opened as needed: one request per
    connection at a time, so an open-loop burst has as many connections as requests in
    flight."""

    def __init__(self, port: int, request: bytes) -> None:
        self.port = port
        self.request = request
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def send(self) -> Outcome:
        try:
            return await asyncio.wait_for(self._send(), ANSWER_WITHIN_SECONDS)
        except TimeoutError:
            return "hung"

    async def _send(self) -> Outcome:
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError as error:
                return f"dropped: connect {type(error).__name__}"
        try:
            writer.write(self.request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = LENGTH.search(head)
            await reader.readexactly(int(length[1]) if length else 0)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
            writer.close()
            return f"dropped: {type(error).__name__}"
        if b"connection: close" in head.lower():
            writer.close()
        else:
            self.idle.append((reader, writer))
        return int(head.split(b" ", 2)[1])

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def closed_loop(port: int, clients: int, seconds: float) -> tuple[int, float]:
    """(answers with 200, seconds taken) of `clients` clients each sending its next request
    when the last is answered: what the gateway sustains (the model is always busy: while it
    computes one request, the other clients' wait in its queue)."""
    client = RawClient(port, predict_request([ROW] * BURST_ROWS))
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    served = 0

    async def user() -> None:
        nonlocal served
        while loop.time() < end:
            served += await client.send() == 200

    started = loop.time()
    await asyncio.gather(*(user() for _ in range(clients)))
    client.close()
    return served, loop.time() - started


async def open_loop(port: int, rate: float, seconds: float) -> tuple[list[Outcome], float]:
    """Requests started at `rate` a second for `seconds` whatever the answers (arrivals do
    not wait for the gateway, as independent users' do not); their outcomes, and the
    seconds it took to start them all (the client's own speed bounds the rate offered)."""
    client = RawClient(port, predict_request([ROW] * BURST_ROWS))
    loop = asyncio.get_running_loop()
    started = loop.time()
    tasks = []
    for i in range(int(rate * seconds)):
        delay = started + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(client.send()))
    offered_in = loop.time() - started
    outcomes = await asyncio.gather(*tasks)
    client.close()
    return list(outcomes), offered_in


@dataclass(frozen=True)
class Capacity:
    closed_loop: float  # requests a second answered 200 under a closed loop of 4 clients
    model_bound: float  # requests a second the model's own CPU time per call allows

    @property
    def rate(self) -> float:
        """The larger: a closed loop on a busy machine under-measures (the clients' own
        scheduling delays leave the model idle between requests), and the load of a shared
        machine changes within seconds; the model's CPU time per row is what the gateway
        can never beat, so 3x this is at least 3x whatever the machine gives it."""
        return max(self.closed_loop, self.model_bound)


@pytest.fixture(scope="module")
def capacity(gateway: GatewayProcess) -> Capacity:
    """The gateway's capacity for requests of BURST_ROWS rows (4 such requests queued take
    well under the timeout: none is abandoned while measuring)."""
    asyncio.run(closed_loop(gateway.port, 4, 1.0))  # warm: connections, ORT buffers
    served, seconds = asyncio.run(closed_loop(gateway.port, 4, 4.0))
    assert served > 0, "the gateway answered nothing under a closed loop"
    # chassis_model_cpu_seconds observes each model call's CPU seconds per row.
    cpu = metric_samples(gateway.url, "chassis_model_cpu_seconds_sum")
    calls = metric_samples(gateway.url, "chassis_model_cpu_seconds_count")
    per_row = sum(cpu.values()) / sum(calls.values())
    return Capacity(served / seconds, 1 / (per_row * BURST_ROWS))


def version_errors(url: str, status: str) -> float:
    return metric_sum(url, "chassis_errors_total", model=MODEL, version="1", status=status)


def test_a_burst_at_three_times_capacity_gets_200_503_or_504_and_no_500(
    gateway, capacity, fault_report
):
    before = {status: version_errors(gateway.url, status) for status in ("500", "504")}
    rate = 3 * capacity.rate
    outcomes, offered_in = asyncio.run(open_loop(gateway.port, rate, 6.0))
    after = {status: version_errors(gateway.url, status) for status in ("500", "504")}
    counts = collections.Counter(outcomes)
    dropped = {k: v for k, v in counts.items() if isinstance(k, str)}
    answered = sum(v for k, v in counts.items() if isinstance(k, int))
    timeouts_counted = after["504"] - before["504"]
    fault_report.add(
        ScenarioResult(
            f"burst at 3x capacity ({capacity.closed_loop:.0f} req/s closed loop, "
            f"{capacity.model_bound:.0f} model-bound; {len(outcomes)} offered in "
            f"{offered_in:.1f} s; {counts[200]} 200, {counts[503]} 503, {counts[504]} 504)",
            sent=len(outcomes),
            answered=answered,
            # 503 and 504 are the limits shedding load as documented; anything else 5xx (or a
            # dropped connection) is a failure.
            good_failed=sum(
                v for k, v in counts.items() if isinstance(k, int) and k >= 500 and k not in SHED
            )
            + sum(dropped.values()),
            shed=counts[503] + counts[504],
            alias_matches_served=None,
            unvalidated_served=0,
            lost="nothing" if not dropped else f"dropped: {dropped}",
        )
    )
    print(f"{capacity}, offered {len(outcomes)} in {offered_in:.1f} s: {counts}")
    assert dropped == {}  # every request answered: no reset, no hang
    assert set(counts) <= {200, 503, 504}, counts  # shed deliberately, never a 500
    assert counts[200] > 0  # the overloaded gateway still serves
    # The burst was an overload: work beyond capacity was shed, not queued without bound.
    assert counts[503] + counts[504] > 0, counts
    assert after["500"] == before["500"]  # the model itself never failed
    # Every 504 a client saw is the stable version's request timeout, and counted as one.
    assert timeouts_counted == counts[504], (timeouts_counted, counts)


def test_a_model_call_far_longer_than_the_timeout_gets_504_and_health_still_answers(
    gateway, fault_report
):
    rows = HANG_ROWS
    heavy = {"instances": [ROW] * rows}
    before = {status: version_errors(gateway.url, status) for status in ("500", "504")}
    result: dict[str, object] = {}

    def hang() -> None:
        started = time.monotonic()
        try:
            response = httpx.post(
                f"{gateway.url}/v1/models/{MODEL}/predict",
                json=heavy,
                timeout=ANSWER_WITHIN_SECONDS,
            )
            result["status"], result["body"] = response.status_code, response.json()
        except httpx.TransportError as error:
            result["status"] = f"{type(error).__name__}"
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=hang)
    thread.start()
    health: list[int] = []
    metrics: list[int] = []
    # /healthz and /metrics while the heavy request waits, and for 2 s after its 504 (the
    # model is still computing its rows then: an ONNX Runtime call cannot be interrupted).
    deadline = time.monotonic() + ANSWER_WITHIN_SECONDS + 5
    after_answer: float | None = None
    with httpx.Client(timeout=10) as client:
        while time.monotonic() < deadline:
            if not thread.is_alive():
                after_answer = after_answer or time.monotonic() + 2.0
                if time.monotonic() > after_answer:
                    break
            health.append(client.get(f"{gateway.url}/healthz").status_code)
            metrics.append(client.get(f"{gateway.url}/metrics").status_code)
            time.sleep(0.05)  # a poll interval: the model needs the CPU more than we do
    thread.join(timeout=5)
    # The gateway serves again once the long call is over.
    recovered = 0
    recover_deadline = time.monotonic() + 120
    while time.monotonic() < recover_deadline:
        recovered = httpx.post(
            f"{gateway.url}/v1/models/{MODEL}/predict", json={"instances": [ROW]}, timeout=30
        ).status_code
        if recovered == 200:
            break
    after = {status: version_errors(gateway.url, status) for status in ("500", "504")}
    fault_report.add(
        ScenarioResult(
            f"model call of {rows} rows (3-15 s; request timeout {REQUEST_TIMEOUT_SECONDS:g} s)",
            sent=1 + len(health) + len(metrics) + 1,
            answered=int(isinstance(result.get("status"), int))
            + len(health)
            + len(metrics)
            + int(recovered != 0),
            good_failed=int(recovered != 200) + sum(s != 200 for s in health + metrics),
            shed=int(result.get("status") == 504),
            alias_matches_served=None,
            unvalidated_served=0,
            lost="nothing",
        )
    )
    print(f"{rows} rows: {result}; /healthz {len(health)}x, recovered {recovered}")
    assert result.get("status") == 504, result
    assert "did not answer within" in str(result["body"]["error"])  # type: ignore[index]
    assert float(result["seconds"]) < ANSWER_WITHIN_SECONDS  # type: ignore[arg-type]
    assert health and set(health) == {200} and set(metrics) == {200}
    assert recovered == 200
    assert after["500"] == before["500"]
    assert after["504"] >= before["504"] + 1
