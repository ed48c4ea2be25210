"""The gateway's access log: one `request` event per HTTP request, when asked for.

An ASGI wrapper put around the app only with `--access-log`: without it the request path
has no wrapper, no timer and no log call at all (a line per request costs throughput:
README.md, "Gateway logs"). uvicorn's own access log stays off; this one says what it
cannot: the model and the version that answered.
"""

import logging
import time
from typing import Any

from chassis.serving.asgi import GatewayApp, Receive, Scope, Send
from chassis.serving.gateway import Gateway
from chassis.serving.gateway_log import REQUEST, event

logger = logging.getLogger("chassis.access")


class AccessLog:
    """`app`, logging each HTTP request's method, path, status, model, version and latency."""

    def __init__(self, app: GatewayApp) -> None:
        self.app = app

    @property
    def gateway(self) -> Gateway:
        return self.app.gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0  # 0: no answer was sent (the client went away first)
        version: int | None = None

        async def answer(message: dict[str, Any]) -> None:
            nonlocal status, version
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for key, value in message.get("headers", ()):
                    if key == b"x-model-version":
                        version = int(value)
            await send(message)

        try:
            await self.app(scope, receive, answer)
        finally:
            client = scope.get("client")
            event(
                logger,
                logging.INFO,
                REQUEST,
                method=scope["method"],
                path=scope["path"],
                status=status,
                model=self.app.model_label(scope["path"]) or None,
                version=version,
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
                client=str(client[0]) if client else None,
            )
