"""The connection limits in process (uvicorn's protocol, a recording transport): an oversize
head is refused however it arrives, and the read timeout times each request of a kept-alive
connection from its own first byte (one timer per connection, re-armed when it fires)."""

import asyncio
from collections.abc import Callable

from uvicorn.config import Config
from uvicorn.server import ServerState

from chassis.serving.connection_limits import (
    ConnectionLimits,
    LimitedHttpToolsProtocol,
    limited_protocol,
)
from tests.unit.test_one_write import RecordingTransport, yielding_app

REQUEST = b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"
LIMIT = 1024


async def connection(
    limits: ConnectionLimits,
) -> tuple[LimitedHttpToolsProtocol, RecordingTransport]:
    config = Config(app=yielding_app, lifespan="off", access_log=False)
    config.load()
    protocol = limited_protocol(limits)(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Let the event loop run until `condition()` holds (at most `seconds`)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)


def statuses(transport: RecordingTransport) -> list[bytes]:
    return [write.split(b"\r\n", 1)[0] for write in transport.writes]


def test_an_oversize_head_in_one_read_is_refused():
    async def scenario() -> RecordingTransport:
        protocol, transport = await connection(ConnectionLimits(max_head_bytes=LIMIT))
        head = b"POST /predict HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * LIMIT + b"\r\n"
        protocol.data_received(head + b"content-length: 2\r\n\r\n{}")
        await until(lambda: transport.closed)
        return transport

    transport = asyncio.run(scenario())
    assert statuses(transport) == [b"HTTP/1.1 431 Request Header Fields Too Large"]


def test_an_oversize_head_begun_behind_another_request_is_refused():
    # The second head begins in the chunk that carries the first request, while no head
    # is being counted, and ends in the next chunk, under the limit on its own.
    async def scenario() -> RecordingTransport:
        protocol, transport = await connection(ConnectionLimits(max_head_bytes=LIMIT))
        second = b"POST /predict HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * LIMIT
        protocol.data_received(REQUEST + second)
        protocol.data_received(b"\r\ncontent-length: 2\r\n\r\n{}")
        await until(lambda: transport.closed)
        return transport

    transport = asyncio.run(scenario())
    assert statuses(transport)[-1] == b"HTTP/1.1 431 Request Header Fields Too Large"


def test_a_head_under_the_limit_is_answered():
    async def scenario() -> RecordingTransport:
        protocol, transport = await connection(ConnectionLimits(max_head_bytes=LIMIT))
        head = b"POST /predict HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * (LIMIT // 2) + b"\r\n"
        protocol.data_received(head + b"content-length: 2\r\n\r\n{}")
        await until(lambda: bool(transport.writes))
        return transport

    transport = asyncio.run(scenario())
    assert statuses(transport) == [b"HTTP/1.1 200 OK"] and not transport.closed


def test_a_later_request_on_a_kept_connection_is_timed_from_its_own_start():
    # The timer was armed for the first request; it fires while the second one (sent
    # later, stalled mid-head) is arriving, and waits out that one's time before the 408.
    timeout = 0.3

    async def scenario() -> tuple[RecordingTransport, float, float]:
        loop = asyncio.get_running_loop()
        protocol, transport = await connection(ConnectionLimits(read_timeout_seconds=timeout))
        protocol.data_received(REQUEST)
        await until(lambda: bool(transport.writes))
        await asyncio.sleep(timeout / 2)  # the second request starts halfway through
        began = loop.time()
        protocol.data_received(b"POST /predict HTTP/1.1\r\nhost: x\r\n")
        await until(lambda: transport.closed)
        return transport, began, loop.time()

    transport, began, closed = asyncio.run(scenario())
    assert statuses(transport) == [b"HTTP/1.1 200 OK", b"HTTP/1.1 408 Request Timeout"]
    assert closed - began >= timeout


def test_a_connection_idle_between_requests_is_not_cut_off_by_the_read_timeout():
    async def scenario() -> tuple[RecordingTransport, object | None]:
        protocol, transport = await connection(ConnectionLimits(read_timeout_seconds=0.05))
        protocol.data_received(REQUEST)
        await until(lambda: bool(transport.writes))
        await until(lambda: protocol.read_timer is None)  # it fired, with nothing arriving
        return transport, protocol.read_timer

    transport, timer = asyncio.run(scenario())
    assert timer is None and not transport.closed
    assert statuses(transport) == [b"HTTP/1.1 200 OK"]
