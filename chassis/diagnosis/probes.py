"""What each gateway replica says about a model: reachable, ready, its status and its
counters. The only module of the diagnosis that does HTTP."""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import httpx

from chassis.errors import CountsError, GatewayError
from chassis.rollout.counts import ModelCounts, add_models, from_exposition, window
from chassis.serving.client import GatewayClient


@dataclass(frozen=True)
class ReplicaProbe:
    url: str
    reachable: bool
    ready: bool
    status: dict[str, Any] | None  # the admin status of the model; None: not served / error
    problem: str  # why reachable, ready or status failed ("" when none did)
    # Under the local supervisor (`chassis serve --replicas N`): a restart brings it back.
    supervised: bool = False
    pid: int | None = None  # its process, as /healthz says (a restart changes it)

    @property
    def serves_verified(self) -> bool:
        """Its stable version of the model verified and loaded."""
        if self.status is None:
            return False
        return self.status["state"].get("stable_version") in self.status.get("loaded_versions", [])


def probe(client: GatewayClient, model: str) -> ReplicaProbe:
    url = client.base_url
    try:
        health = client.client.get("/healthz", timeout=5)  # any answer: the process is there
    except httpx.HTTPError as error:
        return ReplicaProbe(url, False, False, None, f"unreachable: {error}")
    supervised, pid = _supervision(health)
    ready = client.ready()
    try:
        status = client.status(model)
    except GatewayError as error:
        return ReplicaProbe(url, True, ready, None, str(error), supervised, pid)
    problem = "" if ready else "/readyz is not 200"
    return ReplicaProbe(url, True, ready, status, problem, supervised, pid)


def _supervision(health: httpx.Response) -> tuple[bool, int | None]:
    """Whether /healthz says the local supervisor runs it, and its pid (a gateway of an
    older version answers without them: not supervised)."""
    try:
        body = health.json()
    except ValueError:
        return False, None
    if not isinstance(body, dict):
        return False, None
    said = cast(dict[str, Any], body)
    pid = said.get("pid")
    return said.get("supervised") is True, pid if isinstance(pid, int) else None


def probe_fleet(clients: Sequence[GatewayClient], model: str) -> list[ReplicaProbe]:
    return [probe(client, model) for client in clients]


def metrics_texts(clients: Sequence[GatewayClient]) -> list[str]:
    """Every replica's `/metrics` that answered (the service branch reports the others)."""
    texts: list[str] = []
    for client in clients:
        try:
            texts.append(client.metrics())
        except (httpx.HTTPError, GatewayError):
            continue
    return texts


def observe(
    clients: Sequence[GatewayClient],
    model: str,
    seconds: float,
    settled: Callable[[ModelCounts], bool] | None = None,
    look_seconds: float = 1.0,
) -> tuple[ModelCounts, bool]:
    """Every version's counts over `seconds`, summed over the replicas that answered both
    readings (as the rollout reads a step: the difference of two cumulative readings, a
    restarted replica counting from its restart), and whether `settled` ended the watch
    early: it is asked every `look_seconds` with the counts so far."""

    def reading() -> dict[str, ModelCounts]:
        found: dict[str, ModelCounts] = {}
        for client in clients:
            try:
                found[client.base_url] = from_exposition(client.metrics(), model)
            except (httpx.HTTPError, GatewayError, CountsError):
                continue  # the service branch reports an unreachable replica
        return found

    def since(start: dict[str, ModelCounts]) -> ModelCounts:
        end = reading()
        return add_models(window(end[url], start[url]) for url in end if url in start)

    start = reading()
    ends = time.monotonic() + seconds
    while settled is not None and time.monotonic() + look_seconds < ends:
        time.sleep(look_seconds)  # the interval between looks, not a wait for a condition
        counts = since(start)
        if settled(counts):
            return counts, True
    time.sleep(max(0.0, ends - time.monotonic()))  # the rest of the observation window
    return since(start), False
