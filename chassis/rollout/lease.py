"""Who drives a rollout's split, and how long the split holds without them.

A split other than "stable" is written with an owner (the rollout's flow run, host and pid)
and a lease: a wall-clock time until which it holds. The owner renews the lease while it
runs (at every commit, and at every look once a third of the lease has passed). When the
lease has passed, the owner is taken to be gone: every replica serves the champion alone
(at its next sync, and at start), and one party, the first to compare-and-set the record's
generation, writes a stable record and retires the challenger. Pure: rules only; the
registry writes are in `chassis/rollout/orphans.py`.

Times are wall-clock (replicas on several hosts compare them), so a lease must be long
against clock skew between hosts and against the owner's longest pause.
"""

import dataclasses
import datetime

from chassis.errors import LeaseHeld, LeaseLost
from chassis.rollout.record import LEASE_SCHEMA, RolloutRecord

# Renew once this fraction of the lease has passed: an owner may then stall for the other
# two thirds (a registry lock held by someone else, a slow replica) without losing it.
RENEW_AFTER = 1 / 3


def format_time(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(timespec="milliseconds")


def parse_time(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def expires_at(record: RolloutRecord) -> float | None:
    """When the split stops holding without its owner (None: unleased, it never does)."""
    return parse_time(record.lease_until) if record.leased else None


def expired(record: RolloutRecord, now: float) -> bool:
    """The owner is gone: the split must no longer be served. An unleased record (stable,
    or a split written by a Chassis before leases) never expires."""
    end = expires_at(record)
    return end is not None and now >= end


def granted(split: RolloutRecord, owner: str, lease_seconds: float, now: float) -> RolloutRecord:
    """`split` owned by `owner`, holding until `now + lease_seconds`."""
    if lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
    return dataclasses.replace(
        split,
        owner=owner,
        lease_seconds=lease_seconds,
        lease_until=format_time(now + lease_seconds),
        schema=LEASE_SCHEMA,
    )


def due_for_renewal(record: RolloutRecord, now: float) -> bool:
    """A third of the lease has passed (or all of it: then renewing will be refused)."""
    end = expires_at(record)
    if end is None:
        return False
    return end - now <= record.lease_seconds * (1 - RENEW_AFTER)


def fallback(record: RolloutRecord) -> RolloutRecord:
    """What a replica serves once `record`'s lease has passed: the champion alone, at the
    same generation (the owner and lease are kept, to say why)."""
    return dataclasses.replace(
        record,
        mode="stable",
        stable_version=None,
        candidate_version=None,
        percent=0.0,
        mirror_percent=0.0,
        warm_version=None,
    )


def served_split(record: RolloutRecord, now: float) -> RolloutRecord:
    """The split a replica serves for `record` at `now`: the record while its lease holds,
    else its fallback (the champion). Never the orphaned split, whoever reads it."""
    return fallback(record) if expired(record, now) else record


def under_test(record: RolloutRecord) -> int | None:
    """The version a leased split is trying out: the candidate, or after a blue-green
    switch the new color, which is stable in the record while the old one is kept warm."""
    if record.candidate_version is not None:
        return record.candidate_version
    return record.stable_version if record.warm_version is not None else None


def describe(record: RolloutRecord) -> str:
    if not record.leased:
        return f"generation {record.generation} ({record.mode}, no owner)"
    return (
        f"generation {record.generation} ({record.mode}, owner {record.owner}, "
        f"lease {record.lease_seconds:g} s until {record.lease_until})"
    )


def check_write(model: str, current: RolloutRecord | None, new: RolloutRecord, now: float) -> None:
    """May `new` replace `current` (checked under the registry lock, besides the
    compare-and-set on the generation)?

    - Returning to stable (an unleased record) is always allowed: it is the safe direction.
    - A leased split may replace an unleased record (a rollout starts), or its own owner's
      split while that lease holds (a step, a renewal).
    - An owner whose lease has passed has lost the split: it may only return to stable.
    - Another owner's split may not be replaced while its lease holds; once it has passed,
      the orphan must be ended (stable, challenger retired) before a new rollout starts.
    """
    if not new.leased or current is None or not current.leased:
        return
    if current.owner == new.owner:
        if expired(current, now):
            raise LeaseLost(
                f"the lease on {model}'s rollout record ({describe(current)}) passed: replicas "
                "serve the champion; this rollout may only return to stable"
            )
        return
    if not expired(current, now):
        raise LeaseHeld(
            f"another rollout of {model} holds the split ({describe(current)}); nothing was changed"
        )
    raise LeaseHeld(
        f"{model}'s rollout record is orphaned ({describe(current)} has passed): it must be "
        "returned to stable before another rollout starts; nothing was changed"
    )


def owner_for_run(run_id: str, run_name: str, process: str) -> str:
    """The owner of a rollout flow run's splits, readable by a person and matched by
    `owned_by_run` (the run id is what a Prefect hook knows of the run)."""
    return f"rollout flow run {run_id} ({run_name}) on {process}"


def owned_by_run(record: RolloutRecord | None, run_id: str) -> bool:
    return (
        record is not None
        and record.leased
        and record.owner.startswith(f"rollout flow run {run_id} ")
    )


def may_take_over(record: RolloutRecord | None, now: float) -> bool:
    """Anyone may end an orphaned split (return to stable, retire the challenger); the
    compare-and-set on the generation lets exactly one of them do it."""
    return record is not None and expired(record, now)
