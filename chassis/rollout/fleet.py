"""The gateway replicas a rollout drives: commit a split to all of them, read all counters.

A split is committed once, as the registry's rollout record (compare-and-set on its
generation); each replica is then told to sync and polled until it reports that
generation. Counters are read from every replica's /metrics: each replica's window is
taken on its own (one that restarted mid-step restarts its counters, its reading is then
all it did since) and the windows are added.

A fleet driven by a rollout has an owner and a lease (chassis/rollout/lease.py): every
split it commits holds only while the owner renews it, which it does while it waits.
"""

import logging
import socket
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from chassis.errors import FleetError, GatewayError, LeaseHeld, LeaseLost, RecordConflict
from chassis.registry import Registry
from chassis.rollout import lease
from chassis.rollout.counts import ModelCounts, add_models, from_exposition, window
from chassis.rollout.orphans import backoff, end_orphan
from chassis.rollout.record import RolloutRecord
from chassis.serving.client import GatewayClient

logger = logging.getLogger("chassis.rollout")


def resolve_replicas(specs: Sequence[str]) -> list[str]:
    """Gateway URLs from URLs and `dns:HOST:PORT` names (every address the name resolves
    to, as a Kubernetes headless Service gives one per ready pod)."""
    urls: list[str] = []
    for spec in specs:
        if spec.startswith("dns:"):
            host, _, port = spec.removeprefix("dns:").rpartition(":")
            if not host or not port.isdigit():
                raise FleetError(f"replica {spec!r}: expected dns:HOST:PORT")
            try:
                found = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
            except OSError as error:
                raise FleetError(f"replica {spec!r}: {host} does not resolve ({error})") from None
            addresses = sorted({str(info[4][0]) for info in found})
            if not addresses:
                raise FleetError(f"replica {spec!r}: {host} resolved to no address")
            urls += [
                f"http://[{a}]:{port}" if ":" in a else f"http://{a}:{port}" for a in addresses
            ]
        else:
            parts = urlsplit(spec)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise FleetError(f"replica {spec!r}: expected a URL like http://host:8000")
            urls.append(spec.rstrip("/"))
    if not urls:
        raise FleetError("no gateway replicas: give at least one URL or dns:HOST:PORT")
    return list(dict.fromkeys(urls))


class Fleet:
    """Every replica serving one model, and the model's rollout record."""

    def __init__(
        self,
        registry: Registry,
        clients: Sequence[GatewayClient],
        model: str,
        sync_seconds: float = 30.0,
        retry_seconds: float = 60.0,
        owner: str = "",
        lease_seconds: float = 0.0,
    ) -> None:
        if not clients:
            raise FleetError("no gateway replicas to drive")
        self.registry = registry
        self.clients = list(clients)
        self.model = model
        self.sync_seconds = sync_seconds
        self.retry_seconds = retry_seconds
        # Empty owner: splits are committed without a lease (they hold until replaced).
        self.owner = owner
        self.lease_seconds = lease_seconds
        record = registry.read_rollout_record(model)
        self.generation = record.generation if record else 0
        self.held: RolloutRecord | None = None  # the leased split this fleet last wrote
        self.renew_again_at = 0.0  # after a failed renewal, when to try the next one
        self.actor = owner

    # ---- ownership ---------------------------------------------------------------------

    def claim(self, actor: str) -> None:
        """Before a rollout moves anything: refuse if another live rollout owns the split;
        end an orphaned one (stable, challenger retired) if its lease has passed."""
        record = self.registry.read_rollout_record(self.model)
        now = time.time()
        held = record is not None and record.leased and not lease.expired(record, now)
        if held and record is not None and record.owner != self.owner:
            raise LeaseHeld(
                f"another rollout of {self.model} holds the split "
                f"({lease.describe(record)}); nothing was changed"
            )
        end_orphan(self.registry, self.model, record, f"{actor} (starting a rollout)", now)
        latest = self.registry.read_rollout_record(self.model)
        self.generation = latest.generation if latest else 0

    def keep_lease(self) -> None:
        """Renew the lease once a third of it has passed. A lost lease (it passed, or
        someone ended the orphan) is raised; a registry hiccup is left to the next look,
        as two thirds of the lease remain."""
        now = time.time()
        if self.held is None or not lease.due_for_renewal(self.held, now):
            return
        if now < self.renew_again_at:
            return  # the last attempt failed moments ago: do not hammer a registry that is down
        try:
            self._write(self.held, self.actor)
        except RecordConflict:
            raise
        except Exception as error:  # the registry (MLflow, its database) did not answer
            end = lease.expires_at(self.held)
            if end is not None and time.time() >= end:
                # Renewals kept failing until the lease passed: the replicas have ended the
                # split on their own; this run must stop, not judge a split nobody serves.
                raise LeaseLost(
                    f"the lease on {lease.describe(self.held)} passed while the registry did "
                    f"not answer ({error}); every replica serves the champion by itself"
                ) from error
            self.renew_again_at = time.time() + max(1.0, self.lease_seconds / 20)
            logger.warning("lease on %s's split not renewed yet: %s", self.model, error)

    # ---- committing a split ----------------------------------------------------------

    def commit(self, split: RolloutRecord, actor: str) -> RolloutRecord:
        """Write `split` as the next generation (leased to this fleet's owner, if it has
        one), then wait until every replica serves it."""
        self.actor = actor
        if self.owner:
            split = lease.granted(split, self.owner, self.lease_seconds, time.time())
        record = self._write(split, actor)
        self.wait_for(record.generation)
        return record

    def _write(self, split: RolloutRecord, actor: str) -> RolloutRecord:
        record = self.registry.write_rollout_record(self.model, split, self.generation, actor)
        self.generation = record.generation
        self.held = record if record.leased else None
        return record

    def back_to_champion(
        self, actor: str, warm_version: int | None = None, retry_seconds: float = 0.0
    ) -> str | None:
        """Commit the champion alone (optionally with a warm old color), with no owner and
        no lease. The record is what counts: replicas that cannot be reached now serve it
        when they come back (they read it at start), so a lagging replica is reported (the
        returned text), not raised. A failed write is retried with backoff for up to
        `retry_seconds`; if the record is stable by then, written by whoever ended an
        orphan, that is reported too. Raises if the record could not be returned."""
        stable = RolloutRecord(generation=0, warm_version=warm_version)
        deadline = time.monotonic() + retry_seconds
        attempt = 0
        while True:
            try:
                record = self._write(stable, actor)
                break
            except RecordConflict:
                current = self.registry.read_rollout_record(self.model)
                if current is not None and not current.leased and current.mode == "stable":
                    self.held, self.generation = None, current.generation
                    return f"the record was returned to stable by {current.written_by}"
                raise
            except Exception:  # the registry (MLflow, its database) did not answer: retry
                wait = backoff(attempt)
                if time.monotonic() + wait > deadline:
                    raise
                time.sleep(wait)
                attempt += 1
        try:
            self.wait_for(record.generation)
        except FleetError as error:
            return str(error)
        return None

    def wait_for(self, generation: int) -> None:
        deadline = time.monotonic() + self.sync_seconds
        pending = {client.base_url: client for client in self.clients}
        last: dict[str, str] = {}
        while pending:
            self.keep_lease()
            for url, client in list(pending.items()):
                try:
                    served = int(client.sync(self.model).get("generation", -1))
                except GatewayError as error:
                    last[url] = str(error)
                    continue
                if served >= generation:
                    del pending[url]
                else:
                    last[url] = f"serves generation {served}"
            if not pending:
                return
            if time.monotonic() >= deadline:
                lagging = "; ".join(f"{url}: {last.get(url, '?')}" for url in pending)
                raise FleetError(
                    f"after {self.sync_seconds:g} s, {len(pending)} of {len(self.clients)} "
                    f"replica(s) do not serve generation {generation} of {self.model}'s "
                    f"rollout record ({lagging})"
                )
            time.sleep(0.2)

    # ---- reading counters --------------------------------------------------------------

    def read(self) -> list[ModelCounts]:
        """One reading per replica. A replica that does not answer is retried for
        `retry_seconds` (a restarting replica comes back at the committed split)."""
        return [self._read_one(client) for client in self.clients]

    def _read_one(self, client: GatewayClient) -> ModelCounts:
        deadline = time.monotonic() + self.retry_seconds
        while True:
            try:
                return from_exposition(client.metrics(), self.model)
            except GatewayError as error:
                self.keep_lease()  # a restarting replica must not cost the split its lease
                if time.monotonic() >= deadline:
                    raise FleetError(
                        f"replica {client.base_url} did not answer for "
                        f"{self.retry_seconds:g} s: {error}"
                    ) from error
                time.sleep(0.5)

    @staticmethod
    def window(now: list[ModelCounts], start: list[ModelCounts]) -> ModelCounts:
        return add_models(window(n, s) for n, s in zip(now, start, strict=True))

    def close(self) -> None:
        for client in self.clients:
            client.close()
