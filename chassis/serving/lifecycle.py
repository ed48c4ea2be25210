"""The gateway's process lifecycle under uvicorn: drain, then stop, on SIGTERM."""

import logging
import os
import signal
import socket
import threading
import time
from types import FrameType

import uvicorn

from chassis.serving.asgi import GatewayApp
from chassis.serving.gateway_log import (
    DRAIN_ENDED,
    DRAIN_STARTED,
    GATEWAY_READINESS,
    GATEWAY_STARTED,
    event,
)

logger = logging.getLogger("chassis.gateway")


class DrainingServer(uvicorn.Server):
    """uvicorn, with a drain before it stops: on SIGTERM the gateway says not ready at once
    and keeps answering for `drain_seconds` (a load balancer takes it out meanwhile); then
    uvicorn stops accepting, answers what is in flight (up to the grace period), and the
    app's shutdown writes the prediction logs. A second signal, or Ctrl-C, skips the drain.
    A gateway that must serve every model and finds one missing after start (the registry
    was down at start, then answered that it has no such model) stops the same way, with
    `gateway.fatal` saying why.

    It logs the start (`gateway.started`, once it listens) and the drain (`drain.started`,
    `drain.ended`): the signal handler only notes the time, and the event loop's next tick
    writes the line (a signal handler that logs could interleave with a line being
    written)."""

    def __init__(
        self,
        config: uvicorn.Config,
        app: GatewayApp,
        drain_seconds: float,
        access_log: bool = False,
    ) -> None:
        super().__init__(config)
        self.app = app
        self.drain_seconds = drain_seconds
        self.access_log = access_log
        self.drain_timer: threading.Timer | None = None
        self.stop_signal: str | None = None  # the first signal that asked it to stop
        self.stop_asked = 0.0  # when (monotonic)
        self.drain_said = False
        # POST /admin/restart drains through here: no signal is raised, so uvicorn does not
        # raise one again at exit, and `chassis serve` exits with the restart code.
        app.on_restart = self.restart

    def restart(self) -> None:
        """Drain and stop as on SIGTERM, the drain's events saying `restart`. Not through
        `handle_exit`: uvicorn raises each signal it handled again once stopped, and the
        process would end by SIGTERM instead of its exit code."""
        self.app.gateway.draining = True
        if self.stop_signal is None:
            self.stop_signal = "restart"
            self.stop_asked = time.monotonic()
        if self.drain_seconds <= 0:
            self.should_exit = True
        elif self.drain_timer is None:
            self.drain_timer = threading.Timer(self.drain_seconds, self._stop_after_drain)
            self.drain_timer.daemon = True
            self.drain_timer.start()

    def _stop_after_drain(self) -> None:
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.app.gateway.draining = True
        if self.stop_signal is None:
            self.stop_signal = signal.Signals(sig).name
            self.stop_asked = time.monotonic()
        if sig != signal.SIGTERM or self.drain_timer is not None or self.drain_seconds <= 0:
            super().handle_exit(sig, frame)
            return
        self.drain_timer = threading.Timer(
            self.drain_seconds, lambda: uvicorn.Server.handle_exit(self, sig, frame)
        )
        self.drain_timer.daemon = True
        self.drain_timer.start()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        gateway = self.app.gateway
        bound = [s.getsockname() for server in self.servers for s in server.sockets]
        event(
            logger,
            logging.INFO,
            GATEWAY_STARTED,
            listen=[_url(address) for address in bound],
            models=list(gateway.model_names),
            serving=sorted(gateway.models),
            ready=gateway.ready,
            pid=os.getpid(),
            access_log=self.access_log,
        )

    async def on_tick(self, counter: int) -> bool:
        self._say_drain()
        if self.app.gateway.fatal is not None:
            self.app.gateway.draining = True
            return True
        return await super().on_tick(counter)

    def _say_drain(self) -> None:
        if self.stop_signal is None or self.drain_said:
            return
        self.drain_said = True
        state = self.server_state
        event(
            logger,
            logging.WARNING,
            GATEWAY_READINESS,
            ready=False,
            reason=f"draining: shutting down on {self.stop_signal}",
        )
        event(
            logger,
            logging.INFO,
            DRAIN_STARTED,
            signal=self.stop_signal,
            in_flight=len(state.tasks),
            connections=len(state.connections),
            drain_seconds=self.drain_seconds if self.drain_timer is not None else 0.0,
            grace_seconds=float(self.config.timeout_graceful_shutdown or 0),
        )

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._say_drain()
        in_flight = len(self.server_state.tasks)
        closing = time.monotonic()
        await super().shutdown(sockets)
        now = time.monotonic()
        event(
            logger,
            logging.INFO,
            DRAIN_ENDED,
            signal=self.stop_signal,
            seconds=round(now - (self.stop_asked or closing), 3),
            in_flight=in_flight,
            close_seconds=round(now - closing, 3),
        )


def _url(address: tuple[str, int]) -> str:
    """http://host:port of a bound socket's address (IPv6 in brackets)."""
    host, port = address[0], address[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
