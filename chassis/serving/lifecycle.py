"""The gateway's process lifecycle under uvicorn: drain, then stop, on SIGTERM."""

import signal
import threading
from types import FrameType

import uvicorn

from chassis.serving.asgi import GatewayApp


class DrainingServer(uvicorn.Server):
    """uvicorn, with a drain before it stops: on SIGTERM the gateway says not ready at once
    and keeps answering for `drain_seconds` (a load balancer takes it out meanwhile); then
    uvicorn stops accepting, answers what is in flight (up to the grace period), and the
    app's shutdown writes the prediction logs. A second signal, or Ctrl-C, skips the drain.
    A gateway that must serve every model and finds one missing after start (the registry
    was down at start, then answered that it has no such model) stops the same way, with
    `gateway.fatal` saying why."""

    def __init__(self, config: uvicorn.Config, app: GatewayApp, drain_seconds: float) -> None:
        super().__init__(config)
        self.app = app
        self.drain_seconds = drain_seconds
        self.drain_timer: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.app.gateway.draining = True
        if sig != signal.SIGTERM or self.drain_timer is not None or self.drain_seconds <= 0:
            super().handle_exit(sig, frame)
            return
        self.drain_timer = threading.Timer(
            self.drain_seconds, lambda: uvicorn.Server.handle_exit(self, sig, frame)
        )
        self.drain_timer.daemon = True
        self.drain_timer.start()

    async def on_tick(self, counter: int) -> bool:
        if self.app.gateway.fatal is not None:
            self.app.gateway.draining = True
            return True
        return await super().on_tick(counter)
