"""A response's head and its first body bytes leave in one write.

uvicorn writes the status line and headers when the application sends
`http.response.start`, and the body on `http.response.body`: two writes, two TCP segments.
A replica killed between them (kill -9, the OOM killer, a node lost) leaves the proxy
holding a head with no body; it has already begun answering the client, so it cannot retry
the request elsewhere, and the client sees a broken response (the fault suite met it as a
rare httpx.RemoteProtocolError). Held back and joined with the body, a response is in the
kernel whole or not at all: a replica killed before the write closes the connection with
nothing sent, which haproxy's `retry-on empty-response` sends to another replica.
"""

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle


class _Collecting:
    """Stands in for the connection's transport while one send runs: what is written is
    kept for one joined write; a close asked for meanwhile happens after it."""

    def __init__(self, real: asyncio.Transport) -> None:
        self.real = real
        self.chunks: list[bytes] = []
        self.close_after = False

    def write(self, data: bytes) -> None:
        self.chunks.append(bytes(data))

    def close(self) -> None:
        self.close_after = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def flush(self) -> None:
        if self.chunks and not self.real.is_closing():
            self.real.write(b"".join(self.chunks))
        if self.close_after:
            self.real.close()


def send_head_with_body(cycle: RequestResponseCycle) -> None:
    """Make `cycle` hold its response head until the first body message, then write both
    at once. Set before the application runs (it reads `cycle.send` when called)."""
    send = cycle.send
    held: list[Any] = []

    async def joined_send(message: Any) -> None:
        if message["type"] == "http.response.start" and not cycle.response_started:
            held.append(message)
            return
        if not held:
            await send(message)
        else:
            real = cycle.transport
            collecting = _Collecting(real)
            cycle.transport = cast(asyncio.Transport, collecting)
            try:
                await send(held.pop())
                await send(message)
            finally:
                cycle.transport = real
                collecting.flush()
        if cycle.response_complete:
            # The cycle and this closure refer to each other: undone once the response is
            # out, so refcounting frees the cycle at once. Left in place, every request
            # leaves ~16 objects for the collector, which then runs every ~40 requests.
            vars(cycle).pop("send", None)

    cycle.send = joined_send
