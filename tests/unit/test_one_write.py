"""A response's head and body leave the gateway's HTTP protocol in one write, so a replica
killed mid-answer leaves nothing half-sent (chassis.serving.one_write). Driven in-process
through the real uvicorn protocol with a transport that records each write."""

import asyncio
import gc
import weakref
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from chassis.serving.connection_limits import ConnectionLimits, limited_protocol


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def yielding_app(scope: Any, receive: Any, send: Any) -> None:
    """Sends its head, lets the event loop run (as an app awaiting its model does), then
    its body: uvicorn alone writes these as two segments."""
    if scope["type"] != "http":
        return
    await receive()
    body = b'{"predictions": [1]}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"20")],
        }
    )
    await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": body})


def answer(request: bytes) -> RecordingTransport:
    async def scenario() -> RecordingTransport:
        config = Config(app=yielding_app, lifespan="off", access_log=False)
        config.load()
        protocol = limited_protocol(ConnectionLimits())(
            config=config, server_state=ServerState(), app_state={}
        )
        transport = RecordingTransport()
        protocol.connection_made(transport)
        protocol.data_received(request)
        for _ in range(100):  # until the application's task has answered
            if protocol.cycle is not None and protocol.cycle.response_complete:
                break
            await asyncio.sleep(0)
        return transport

    return asyncio.run(scenario())


def test_a_response_head_and_body_leave_in_one_write():
    transport = answer(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
    assert len(transport.writes) == 1, transport.writes
    (written,) = transport.writes
    assert written.startswith(b"HTTP/1.1 200 OK\r\n")
    assert written.endswith(b'\r\n\r\n{"predictions": [1]}')


def test_a_connection_close_request_is_closed_after_the_whole_response():
    transport = answer(
        b"POST /predict HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}"
    )
    assert len(transport.writes) == 1 and transport.writes[0].endswith(b"[1]}")
    assert transport.closed


def test_a_finished_cycle_is_freed_without_the_garbage_collector():
    # Joining the writes must not tie the request's cycle to itself: a cycle left for the
    # collector on every request makes it run every few dozen requests.
    async def scenario() -> weakref.ref[Any]:
        config = Config(app=yielding_app, lifespan="off", access_log=False)
        config.load()
        protocol = limited_protocol(ConnectionLimits())(
            config=config, server_state=ServerState(), app_state={}
        )
        protocol.connection_made(RecordingTransport())
        protocol.data_received(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        cycle = protocol.cycle
        assert cycle is not None
        for _ in range(100):  # until the application's task has answered
            if cycle.response_complete:
                break
            await asyncio.sleep(0)
        assert cycle.response_complete
        freed = weakref.ref(cycle)
        protocol.connection_lost(None)
        del cycle, protocol
        for _ in range(3):  # let the finished task's callbacks run
            await asyncio.sleep(0)
        return freed

    gc.collect()
    gc.disable()
    try:
        freed = asyncio.run(scenario())
        assert freed() is None, gc.get_referrers(freed())
    finally:
        gc.enable()
