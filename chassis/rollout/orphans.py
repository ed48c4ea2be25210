"""Ending a rollout safely: the registry writes the lease rules call for.

Two callers end a rollout: its own flow when it fails (and retries the rollback until the
lease would end it anyway), and anyone who finds a split whose lease has passed (every
gateway replica at each sync, a new rollout at its start). The compare-and-set on the
record's generation lets exactly one of them write the stable record; only that one
retires the challenger, so the audit trail holds one record of it.
"""

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TypeVar

from chassis.errors import RecordConflict
from chassis.registry import Registry
from chassis.rollout import lease
from chassis.rollout.record import RolloutRecord

logger = logging.getLogger("chassis.rollout")

T = TypeVar("T")

FIRST_DELAY = 1.0
MAX_DELAY = 15.0


def backoff(attempt: int, first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> float:
    """Seconds to wait after failed attempt `attempt` (0-based): 1, 2, 4, 8, 15, 15, ..."""
    return min(cap, first * 2.0**attempt)


def with_backoff(
    action: Callable[[], T],
    seconds: float,
    give_up_on: tuple[type[BaseException], ...] = (),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`action()`, retried with exponential backoff for up to `seconds`; the last error
    (or any of `give_up_on`, at once) is raised."""
    deadline = clock() + seconds
    attempt = 0
    while True:
        try:
            return action()
        except give_up_on:
            raise
        except Exception as error:
            wait = backoff(attempt)
            if clock() + wait > deadline:
                raise
            logger.warning("attempt %d failed (%s), retrying in %g s", attempt + 1, error, wait)
            sleep(wait)
            attempt += 1


def this_process() -> str:
    """Host and pid, for owners and actors a person can trace back."""
    return f"{socket.gethostname()} pid {os.getpid()}"


def end_orphan(
    registry: Registry, name: str, record: RolloutRecord | None, actor: str, now: float
) -> bool:
    """If `record` (the record as read) is orphaned, write a stable record in its place and
    retire the version it was trying out. Returns whether this caller did it: another one
    that wrote first makes this one's compare-and-set fail, and it does nothing."""
    if record is None or not lease.may_take_over(record, now):
        return False
    why = (
        f"orphaned rollout: the lease of {record.owner} on {lease.describe(record)} passed "
        "without renewal (its owner is gone)"
    )
    return end_split(registry, name, record, actor, why)


def end_split(registry: Registry, name: str, record: RolloutRecord, actor: str, why: str) -> bool:
    """Replace `record` by a stable one (compare-and-set on its generation) and, if this
    caller's write won, retire the version it was trying out. Returns whether it won."""
    try:
        registry.write_rollout_record(name, RolloutRecord(generation=0), record.generation, actor)
    except RecordConflict:
        return False  # someone else ended it (or the owner came back and returned to stable)
    logger.warning("%s: ended by %s; traffic is back on the champion", why, actor)
    version = lease.under_test(record)
    if version is not None:
        with_backoff(
            lambda: registry.retire_challenger(
                name,
                version,
                actor=actor,
                reason=f"{why}; traffic returned to the champion, v{version} retired",
                evidence={"rollout_record": record.to_json()},
            ),
            seconds=30.0,
        )
    return True
