"""Limits one client's connection cannot get around: the size of a request's head and the
time a request may take to arrive.

uvicorn's httptools protocol has neither. httptools joins a header's pieces as they arrive,
so one 64 MiB header held the event loop for seconds and every other request waited; and a
client sending a body a byte at a time kept its connection (and its buffers) forever. Both
checks live in the protocol, before the application sees the request, because by the time
the ASGI app is called the head has been parsed whole.
"""

import asyncio
from dataclasses import dataclass
from typing import cast

from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from chassis.serving.one_write import send_head_with_body


@dataclass(frozen=True)
class ConnectionLimits:
    max_head_bytes: int = 32 * 1024  # request line and headers
    read_timeout_seconds: float = 30.0  # from a request's first byte to its last


def _raw_response(status: bytes, message: str) -> bytes:
    body = message.encode()
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body
    )


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head-size limit (431) and a read timeout (408),
    whose responses leave whole (chassis.serving.one_write)."""

    limits = ConnectionLimits()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(cast(asyncio.Transport, transport))  # an event loop's is one
        # A connection that never completes a request is timed from its first moment.
        self.in_head = True
        self.head_bytes = 0
        self.chunk_bytes = 0  # the size of the chunk being parsed
        self.begun_in = 0  # the size of the chunk the current request began in
        self.refused = False  # this connection was answered 431 or 408 and is closing
        # When the request arriving now began (event-loop time); None: none is arriving.
        self.reading_since: float | None = self.loop.time()
        self.read_timer: asyncio.TimerHandle | None = None
        self._arm_read_timer(self.limits.read_timeout_seconds)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        size = len(data)
        self.chunk_bytes = size
        if self.in_head:
            self.head_bytes += size
        super().data_received(data)
        # Still in the head after this chunk (a chunk that completes the head resets the
        # count, body bytes in it are not the head's): an oversize head is refused after at
        # most one chunk (64 KiB) beyond the limit, not after all of it.
        if self.in_head and self.head_bytes > self.limits.max_head_bytes:
            self._refuse(
                b"431 Request Header Fields Too Large",
                f"request line and headers exceed {self.limits.max_head_bytes} bytes",
            )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        self.begun_in = self.chunk_bytes
        # One timer per connection, not one per request (a timer made and cancelled on
        # every request cost ~1 us): it looks at `reading_since` when it fires.
        self.reading_since = self.loop.time()
        if self.read_timer is None:
            self._arm_read_timer(self.limits.read_timeout_seconds)

    def on_headers_complete(self) -> None:
        head_bytes, self.head_bytes = self.head_bytes, 0
        self.in_head = False
        # A head that arrived in one read was parsed whole before `data_received` could
        # count it: its size is checked here, before the application sees it. Counted
        # exactly only when the bytes read for it could exceed the limit: the chunk it
        # began in (`data_received` counts only the chunks read while in a head) and the
        # ones after.
        if head_bytes + self.begun_in <= self.limits.max_head_bytes:
            super().on_headers_complete()
            return
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.max_head_bytes:
            self.refused = True
            self._refuse(
                b"431 Request Header Fields Too Large",
                f"request line and headers exceed {self.limits.max_head_bytes} bytes",
            )
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.refused:  # the rest of a refused request, in the same read: dropped
            super().on_body(body)

    def on_message_complete(self) -> None:
        self.reading_since = None  # the timer, when it fires, lets go
        if not self.refused:
            super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_read_timer()
        super().connection_lost(exc)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        send_head_with_body(cycle)  # a replica killed mid-answer leaves nothing half-sent
        super()._start_asgi_task(cycle, app)

    def _arm_read_timer(self, seconds: float) -> None:
        self._disarm_read_timer()
        self.read_timer = self.loop.call_later(seconds, self._read_timed_out)

    def _disarm_read_timer(self) -> None:
        timer = getattr(self, "read_timer", None)
        if timer is not None:
            timer.cancel()
            self.read_timer = None

    def _read_timed_out(self) -> None:
        self.read_timer = None
        since = self.reading_since
        if since is None:
            return  # between requests: the next one arms it again
        remaining = since + self.limits.read_timeout_seconds - self.loop.time()
        if remaining > 0:  # a later request than the one it was armed for
            self._arm_read_timer(remaining)
            return
        # uvicorn annotates `cycle` without None, but it is None until the first request.
        cycle = cast(RequestResponseCycle | None, self.cycle)
        if not self.in_head and cycle is not None and cycle.response_started:
            # Answered (or answering) before its body came whole: nothing more to say.
            self.transport.close()
            return
        # Closing also tells an application waiting for the body that the client is gone
        # (http.disconnect), so nothing keeps buffers for it.
        self._refuse(
            b"408 Request Timeout",
            f"the request did not arrive within {self.limits.read_timeout_seconds:g} s",
        )

    def _refuse(self, status: bytes, message: str) -> None:
        self.refused = True
        self._disarm_read_timer()
        if self.transport.is_closing():
            return
        self.transport.write(_raw_response(status, message))
        self.transport.close()


def limited_protocol(limits: ConnectionLimits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, carrying `limits`."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})
