"""What the local supervisor (`chassis serve --replicas N`) and its replicas agree on, and
its decisions, pure: which ports, and when a replica that exited starts again.

A replica knows it is supervised by `REPLICA_ENV` (its index, set by the supervisor): it
says so on /healthz, and only then takes `POST /admin/restart`, which drains it and exits
with `RESTART_EXIT_CODE`; the supervisor starts it again at once. Any other exit is a
crash: restarted after a backoff that doubles with each crash in a row (a crash loop does
not spin) and starts over once a replica has run for `STABLE_SECONDS`.
"""

import os
import signal
from dataclasses import dataclass

# The replica's index (0 .. N-1) under the local supervisor; unset: not supervised.
REPLICA_ENV = "CHASSIS_SUPERVISED_REPLICA"
# EX_TEMPFAIL: "try again". A replica asked to restart exits with it once drained.
RESTART_EXIT_CODE = 75
MAX_REPLICAS = 64
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
# A replica that ran this long before it exited is not in a crash loop.
STABLE_SECONDS = 30.0


def supervised_replica() -> int | None:
    """This process's replica index under the local supervisor (None: not supervised)."""
    text = os.environ.get(REPLICA_ENV, "")
    return int(text) if text.isdigit() else None


def replica_ports(first: int, replicas: int) -> list[int]:
    """The ports of `replicas` replicas, one each from `first`; raises ValueError naming
    the problem (the CLI turns it into its one-line error)."""
    if replicas < 1:
        raise ValueError(f"--replicas must be at least 1, got {replicas}")
    if replicas > MAX_REPLICAS:
        raise ValueError(f"--replicas must be at most {MAX_REPLICAS}, got {replicas}")
    last = first + replicas - 1
    if last > 65535:
        raise ValueError(
            f"{replicas} replicas from port {first} need ports up to {last}, past 65535"
        )
    return list(range(first, last + 1))


@dataclass(frozen=True)
class Exit:
    """How a replica's process ended, as the supervisor saw it."""

    code: int  # its exit status; negative: killed by that signal
    ran_seconds: float
    first_start: bool  # it was the replica's first start
    crashes_in_a_row: int  # unexpected exits before this one, since it last ran stably


@dataclass(frozen=True)
class Decision:
    restart: bool
    delay_seconds: float
    crashes_in_a_row: int  # to carry to the next exit
    why: str


def after_exit(ended: Exit, stopping: bool) -> Decision:
    """What the supervisor does about a replica that exited."""
    if stopping:
        return Decision(False, 0.0, ended.crashes_in_a_row, "the supervisor is stopping")
    if ended.code == RESTART_EXIT_CODE:
        return Decision(True, 0.0, 0, "it was asked to restart")
    if ended.first_start and ended.code > 0 and ended.ran_seconds < STABLE_SECONDS:
        # The gateway refused to start (a model it cannot serve, a bad setting): the error
        # is in its output, and starting it again would only repeat it.
        return Decision(False, 0.0, 0, f"it refused to start (exit {ended.code})")
    crashes = 0 if ended.ran_seconds >= STABLE_SECONDS else ended.crashes_in_a_row
    delay = (
        0.0
        if crashes == 0
        else min(FIRST_BACKOFF_SECONDS * 2 ** (crashes - 1), MAX_BACKOFF_SECONDS)
    )
    return Decision(True, delay, crashes + 1, f"it exited unexpectedly ({describe(ended.code)})")


def describe(code: int) -> str:
    """`exit 1`, or `killed by SIGKILL`."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"
