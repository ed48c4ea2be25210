"""A response's head and its first body bytes leave in one write.

uvicorn writes the status line and headers when the application sends
`http.response.start`, and the body on `http.response.body`: two writes, two TCP segments.
A replica killed between them (kill -9, the OOM killer, a node lost) leaves the proxy
holding a head with no body; it has already begun answering the client, so it cannot retry
the request elsewhere, and the client sees a broken response (the fault suite met it as a
rare httpx.RemoteProtocolError). Held back and joined with the body, a response is in the
kernel whole or not at all: a replica killed before the write closes the connection with
nothing sent, which haproxy's `retry-on empty-response` sends to another replica.

The head is held by the request cycle's transport (`_HeadHeld`), not by wrapping the
cycle's `send`: a wrapper coroutine, and an object to collect the writes, cost every
request ~3 us (BENCHMARKS.md, "Serving").
"""

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle


class _HeadHeld:
    """One request cycle's transport until its response's first body bytes: the head
    (the first write once the response has started) is held and written joined with them;
    then the cycle gets the connection's transport back. What is written before the
    response starts (a `100 Continue`) goes out at once."""

    __slots__ = ("cycle", "head", "real")

    def __init__(self, cycle: RequestResponseCycle, real: asyncio.Transport) -> None:
        self.cycle: RequestResponseCycle | None = cycle
        self.real = real
        self.head: bytes | None = None

    def write(self, data: bytes) -> None:
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            self.real.write(data)
        elif self.head is None:
            self.head = bytes(data)
        else:
            # The cycle and this object refer to each other: undone here, so refcounting
            # frees the cycle once the request is done (a cycle left for the collector on
            # every request made it run every ~40 requests).
            cycle.transport = self.real
            self.cycle = None
            if not self.real.is_closing():
                self.real.write(self.head + data)

    def close(self) -> None:
        # Closed before any body (the application failed mid-answer): the held head is
        # dropped, so the client gets nothing rather than half a response.
        if self.cycle is not None:
            self.cycle.transport = self.real
            self.cycle = None
        self.real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def send_head_with_body(cycle: RequestResponseCycle) -> None:
    """Make `cycle` hold its response head until the first body bytes, then write both
    at once. Set before the application runs."""
    cycle.transport = cast(asyncio.Transport, _HeadHeld(cycle, cycle.transport))
