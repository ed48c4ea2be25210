"""The local supervisor behind `chassis serve --replicas N`: N gateway processes, one port
each, started again when they exit (decisions in `chassis.serving.supervision`).

It does not listen itself: each replica is its own address, as pods are behind a Service;
put a load balancer (haproxy, nginx) in front for one address. SIGTERM or SIGINT is
forwarded to every replica, each drains as it would alone, and the supervisor exits once
all have. The replicas run in their own process group, so Ctrl-C in a terminal reaches
them once, through the supervisor, and a drain is not skipped by a second signal; and each
is sent SIGTERM by the kernel if the supervisor dies, so none is left behind.
"""

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

from chassis.serving.gateway_log import event
from chassis.serving.supervision import REPLICA_ENV, Exit, after_exit, describe

logger = logging.getLogger("chassis.supervisor")

SUPERVISOR_STARTED = "supervisor.started"
REPLICA_STARTED = "replica.started"
REPLICA_EXITED = "replica.exited"
SUPERVISOR_STOPPING = "supervisor.stopping"
SUPERVISOR_ENDED = "supervisor.ended"
# Environment a replica is not given again when it restarts (see `Supervisor`).
FIRST_START_ONLY = ("CHASSIS_FAILPOINTS",)
POLL_SECONDS = 0.1
PR_SET_PDEATHSIG = 1


@dataclass
class Replica:
    index: int
    port: int
    process: "subprocess.Popen[bytes] | None" = None
    started: float = 0.0  # monotonic
    starts: int = 0
    crashes_in_a_row: int = 0
    restart_at: float | None = None  # monotonic; None: not waiting to start
    given_up: bool = False
    codes: list[int] = field(default_factory=list[int])


class Supervisor:
    """`command(port)`: the argv of one replica listening on `port`. Fail points
    (CHASSIS_FAILPOINTS) arm a replica's first start only: a restarted replica starts clean,
    as a recovered machine would, so a crash test can see the recovery."""

    def __init__(
        self,
        command: Callable[[int], list[str]],
        ports: Sequence[int],
        host: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.command = command
        self.host = host
        self.env = dict(os.environ if env is None else env)
        self.replicas = [Replica(index, port) for index, port in enumerate(ports)]
        self.stopping: str | None = None  # the signal that asked it to stop
        self.stopping_said = False
        self.others_started = False

    def run(self) -> int:
        """Start every replica, keep them running until SIGTERM or SIGINT, then wait for
        each to drain and exit. 0 when every replica exited cleanly at the end; 1 when one
        did not, or every replica refused to start."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            event(
                logger,
                logging.INFO,
                SUPERVISOR_STARTED,
                replicas=len(self.replicas),
                listen=[self._url(r) for r in self.replicas],
                pid=os.getpid(),
            )
            # The first replica alone until it listens: on a fresh store, replicas that
            # start side by side race to create its tables (MLflow on SQLite fails so).
            self._start(self.replicas[0])
            self.others_started = len(self.replicas) == 1
            while not self._finished():
                self._tend()
                time.sleep(POLL_SECONDS)  # the supervision loop's pace
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        # A gateway stopped by a signal ends by it (uvicorn raises it again once drained).
        stopped = {0, *(-s for s in (signal.SIGTERM, signal.SIGINT))}
        clean = all(
            not r.given_up and (not r.codes or r.codes[-1] in stopped) for r in self.replicas
        )
        event(
            logger,
            logging.INFO if clean else logging.WARNING,
            SUPERVISOR_ENDED,
            signal=self.stopping,
            exit_codes=[r.codes[-1] if r.codes else 0 for r in self.replicas],
        )
        return 0 if clean else 1

    def _finished(self) -> bool:
        running = [r for r in self.replicas if r.process is not None]
        if self.stopping is not None:
            return not running
        return all(r.given_up for r in self.replicas)

    def _tend(self) -> None:
        if self.stopping is not None and not self.stopping_said:
            # Said here, not in the signal handler (it could interleave with a line).
            self.stopping_said = True
            event(logger, logging.INFO, SUPERVISOR_STOPPING, signal=self.stopping)
        now = time.monotonic()
        if not self.others_started and self.stopping is None:
            first = self.replicas[0]
            if first.given_up:  # it refused to start: the others would too
                for replica in self.replicas[1:]:
                    replica.given_up = True
                self.others_started = True
            elif first.process is not None and _listens(self.host, first.port):
                for replica in self.replicas[1:]:
                    self._start(replica)
                self.others_started = True
        for replica in self.replicas:
            process = replica.process
            if process is not None and (code := process.poll()) is not None:
                self._exited(replica, code, now)
            if replica.restart_at is not None and now >= replica.restart_at and not self.stopping:
                self._start(replica)

    def _exited(self, replica: Replica, code: int, now: float) -> None:
        replica.process = None
        replica.codes.append(code)
        decision = after_exit(
            Exit(code, now - replica.started, replica.starts == 1, replica.crashes_in_a_row),
            self.stopping is not None,
        )
        replica.crashes_in_a_row = decision.crashes_in_a_row
        if decision.restart:
            replica.restart_at = now + decision.delay_seconds
        elif self.stopping is None:
            replica.given_up = True
        event(
            logger,
            logging.INFO if self.stopping or decision.delay_seconds == 0 else logging.WARNING,
            REPLICA_EXITED,
            replica=replica.index,
            port=replica.port,
            exit=describe(code),
            why=decision.why,
            restart_in_seconds=decision.delay_seconds if decision.restart else None,
        )

    def _start(self, replica: Replica) -> None:
        env = {**self.env, REPLICA_ENV: str(replica.index)}
        if replica.starts:
            for name in FIRST_START_ONLY:
                env.pop(name, None)
        replica.process = subprocess.Popen(
            self.command(replica.port),
            env=env,
            process_group=0,
            preexec_fn=_die_with_parent,
        )
        if self.stopping is not None:  # the signal came while it was being started
            replica.process.send_signal(signal.SIGTERM)
        replica.started = time.monotonic()
        replica.starts += 1
        replica.restart_at = None
        event(
            logger,
            logging.INFO,
            REPLICA_STARTED,
            replica=replica.index,
            listen=self._url(replica),
            pid=replica.process.pid,
            start=replica.starts,
        )

    def _url(self, replica: Replica) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{replica.port}"

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        # Only forwarded here (and noted); the loop logs and reaps. A second signal is
        # forwarded too: each replica then stops without its drain, as it would alone.
        if self.stopping is None:
            self.stopping = signal.Signals(sig).name
        for replica in self.replicas:
            replica.restart_at = None
            if replica.process is not None and replica.process.poll() is None:
                replica.process.send_signal(sig)


def _listens(host: str, port: int) -> bool:
    """Whether something accepts connections on host:port (the replica has started)."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:
    """In the child before it runs the gateway: SIGTERM when the supervisor dies (Linux)."""
    # Elsewhere (no prctl) a replica may outlive a killed supervisor.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
