"""Edge mode (`chassis serve --edge --upstream URL`): a gateway near its clients that keeps
answering from verified local copies while the registry or the network is away, and hands
what it cannot answer to another gateway (the cloud).

What it holds it serves exactly as any gateway does: versions verified against the
registry's digests and gate verdicts, kept in the verified store (verified_cache.py, hashed
again on every load), followed by the registry poll. What edge mode adds:

- a model the registry cannot give at start is served from the store (as any gateway does
  while the registry is unreachable), and a model neither has is not fatal: it is forwarded;
- a predict for a model not served here (never held, not loaded yet, or its local copy
  refused for its bytes) goes to the upstream whole, and the upstream's answer comes back
  as it gave it, marked `x-chassis-served-by: upstream`; the upstream down is a 503 (504
  past the request timeout) naming it, counted; feedback on such a model goes there too
  (the ids of the upstream's answers name its replicas);
- its sync state, per model: when the registry last confirmed what it serves, and from
  where it serves (registry or store), on /readyz and in metrics, with whether the
  upstream answers.

A version never answers unless verified: the store's bytes are hashed against the digest
they verified with, and a copy that changed is refused (the model is then forwarded).
"""

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chassis.errors import ChassisError, RegistryUnreachable, UpstreamUnavailable
from chassis.registry import Registry
from chassis.serving import verified_cache
from chassis.serving.asgi import (
    FEEDBACK_BODY_BYTES,
    JSON,
    GatewayApp,
    Receive,
    Scope,
    Send,
    read_body,
    respond,
)
from chassis.serving.gateway import Gateway, GatewayConfig, ServedModel
from chassis.serving.metrics import count_into, created_series_enabled
from chassis.serving.upstream import (
    SERVED_BY,
    UPSTREAM,
    feedback_url,
    forward,
    forward_predict,
    healthy,
)

Source = Literal["registry", "store"]
# How long a look at the upstream's /healthz may take (the poll's, not a request's).
HEALTH_TIMEOUT_SECONDS = 2.0
# How often the upstream is looked at when the registry poll is off.
DEFAULT_PROBE_SECONDS = 5.0


def forward_outcome(status: int) -> str:
    """chassis_edge_forwarded_total's outcome of an answer the upstream gave."""
    if status < 400:
        return "answered"
    return "refused" if status < 500 else "failed"


def describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


@dataclass
class ModelSync:
    """What an edge gateway knows of one model's sync: the version it serves (None: none),
    where that came from, and when the registry last confirmed it (None: never)."""

    version: int | None = None
    source: Source | None = None
    last_sync: float | None = None
    last_error: str | None = None


class EdgeState(Collector):
    """An edge gateway's sync state and forwarding counts: /readyz's `edge` part and the
    chassis_edge_* metrics (read when scraped)."""

    def __init__(
        self, upstream: str, models: list[str], clock: Callable[[], float] = time.time
    ) -> None:
        self.upstream = upstream
        self.clock = clock
        # True at start: `chassis serve` refuses to start when it does not answer.
        self.upstream_up = True
        self.models = {name: ModelSync() for name in models}
        self.sync_failures: dict[str, list[float]] = {}
        self.forwarded: dict[tuple[str, str], list[float]] = {}

    def synced(self, name: str, version: int | None) -> None:
        """The registry answered for `name`: what it serves is the registry's now."""
        entry = self.models.setdefault(name, ModelSync())
        entry.version = version
        entry.source = "registry" if version is not None else None
        entry.last_sync = self.clock()
        entry.last_error = None

    def from_store(self, name: str, version: int, verified_at: float | None) -> None:
        """`name` serves `version` from the verified store (the registry did not answer);
        its last sync is when that copy verified against the registry."""
        entry = self.models.setdefault(name, ModelSync())
        entry.version, entry.source = version, "store"
        entry.last_sync = verified_at if entry.last_sync is None else entry.last_sync

    def failed(self, name: str, error: Exception) -> None:
        """A sync of `name` failed (registry unreachable, a version refused): counted."""
        self.models.setdefault(name, ModelSync()).last_error = describe(error)
        count_into(self.sync_failures, name, 1)

    def count_forward(self, model: str, outcome: str) -> None:
        count_into(self.forwarded, (model, outcome), 1)

    def report(self) -> dict[str, object]:
        """/readyz's `edge` part: the upstream and each model's sync state."""
        now = self.clock()
        models: dict[str, object] = {}
        for name, entry in self.models.items():
            models[name] = {
                "version": entry.version,
                "source": entry.source,  # None: not served here (forwarded)
                "last_sync": entry.last_sync,
                "age_seconds": None if entry.last_sync is None else round(now - entry.last_sync, 3),
                "last_error": entry.last_error,
            }
        return {
            "upstream": self.upstream,
            "upstream_reachable": self.upstream_up,
            "models": models,
        }

    def collect(self) -> Iterator[Metric]:
        created = created_series_enabled()
        last_sync = GaugeMetricFamily(
            "chassis_edge_last_sync_timestamp_seconds",
            "Edge mode: when the registry last confirmed what the model serves (Unix time; "
            "for a copy served from the store, when it verified)",
            labels=["model"],
        )
        from_store = GaugeMetricFamily(
            "chassis_edge_serving_from_store",
            "Edge mode: 1 while the model serves its verified local copy because the registry "
            "did not answer, 0 when the registry gave it",
            labels=["model"],
        )
        for name, entry in self.models.items():
            if entry.last_sync is not None:
                last_sync.add_metric([name], entry.last_sync)
            if entry.source is not None:
                from_store.add_metric([name], 1.0 if entry.source == "store" else 0.0)
        failures = CounterMetricFamily(
            "chassis_edge_sync_failures",
            "Edge mode: registry syncs of the model that failed (registry unreachable, a "
            "version refused); the last verified version keeps serving",
            labels=["model"],
        )
        for name, (count, since) in self.sync_failures.items():
            failures.add_metric([name], count, created=since if created else None)
        forwarded = CounterMetricFamily(
            "chassis_edge_forwarded",
            "Edge mode: predict requests forwarded to the upstream, by outcome: answered "
            "(2xx), refused (4xx there), failed (5xx there), unreachable (503 here), timeout "
            '(504 here); model "" for a name neither served here nor answered there',
            labels=["model", "outcome"],
        )
        for (name, outcome), (count, since) in self.forwarded.items():
            forwarded.add_metric([name, outcome], count, created=since if created else None)
        up = GaugeMetricFamily(
            "chassis_edge_upstream_up",
            "Edge mode: 1 when the upstream gateway answered its last health check or forward",
        )
        up.add_metric([], 1.0 if self.upstream_up else 0.0)
        yield from (last_sync, from_store, failures, forwarded, up)


class EdgeGateway(Gateway):
    """A gateway in edge mode: the models it holds serve as on any gateway, and their sync
    state is kept (`edge`). The ASGI app (EdgeApp) forwards the rest."""

    def __init__(self, registry: Registry, config: GatewayConfig, model_names: list[str]) -> None:
        if config.upstream is None:
            raise ChassisError("edge mode needs an upstream gateway")
        # Before the base class: its first readiness update reads `ready`, which reads this.
        self.edge = EdgeState(config.upstream, model_names)
        super().__init__(registry, config, model_names)
        self.metrics.registry.register(self.edge)

    @property
    def ready(self) -> bool:
        """Ready when a model serves here, or when the upstream answers for them all."""
        return super().ready or self.edge.upstream_up

    def _restore(self, name: str) -> ServedModel:
        try:
            model = super()._restore(name)
        except RegistryUnreachable as error:  # and no verified copy to serve: forwarded
            self.edge.failed(name, error)
            raise
        except Exception as error:  # the registry answered: not registered, refused, ...
            self.edge.models.setdefault(name, ModelSync()).last_error = describe(error)
            raise
        version = model.state.stable_version
        if name in self.degraded:  # the registry did not answer: the verified store did
            verified = verified_cache.verified_at(self.config.cache_dir, name, version)
            self.edge.from_store(name, version, verified)
        else:
            self.edge.synced(name, version)
        return model

    def sync(self, name: str) -> bool:
        """The registry poll's pass over one model, its outcome kept as the sync state."""
        try:
            changed = super().sync(name)
        except Exception as error:
            self.edge.failed(name, error)
            raise
        model = self.models.get(name)
        self.edge.synced(name, model.state.stable_version if model is not None else None)
        return changed


class EdgeApp(GatewayApp):
    """The gateway's HTTP app with edge mode's forwarding, probe and /readyz report."""

    def __init__(self, gateway: EdgeGateway, admin_token: str, follow_seconds: float = 0.0) -> None:
        super().__init__(gateway, admin_token, follow_seconds)
        self.edge_gateway = gateway
        self.upstream = gateway.edge.upstream
        self.client: httpx.AsyncClient | None = None  # made in the serving event loop
        self.prober: asyncio.Task[None] | None = None
        self.probe_seconds = follow_seconds or DEFAULT_PROBE_SECONDS

    def _client(self) -> httpx.AsyncClient:
        if self.client is None:
            self.client = httpx.AsyncClient()
        return self.client

    async def started(self) -> None:
        self.prober = asyncio.get_running_loop().create_task(self.probe_upstream())

    async def stopping(self) -> None:
        if self.prober is not None:
            self.prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.prober
        if self.client is not None:
            await self.client.aclose()

    async def probe_upstream(self) -> None:
        """Look at the upstream's /healthz on the poll's pace: chassis_edge_upstream_up and
        /readyz say whether forwards can be answered before one is tried."""
        while True:
            await asyncio.sleep(self.probe_seconds)
            self.edge_gateway.edge.upstream_up = await healthy(
                self._client(), self.upstream, HEALTH_TIMEOUT_SECONDS
            )

    def readiness_extra(self) -> dict[str, object]:
        return {"edge": self.edge_gateway.edge.report()}

    async def predict(
        self, scope: Scope, receive: Receive, send: Send, name: str, *, preview: bool
    ) -> None:
        if name in self.gateway.models:
            await super().predict(scope, receive, send, name, preview=preview)
        else:
            await self.predict_upstream(scope, receive, send, name, preview=preview)

    async def route(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = scope["path"].strip("/").split("/")
        if (
            scope["method"] == "POST"
            and len(parts) == 4
            and parts[:2] == ["v1", "models"]
            and parts[3] == "feedback"
            and parts[2] not in self.gateway.models
        ):
            await self.forward_feedback(scope, receive, send, parts[2])
        else:
            await super().route(scope, receive, send)

    async def forward_feedback(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        """Feedback on a model not served here: its predictions were the upstream's (their
        ids name its replicas), so the upstream joins it; its answer is passed through."""
        headers = dict(scope["headers"])
        body = await read_body(receive, FEEDBACK_BODY_BYTES)
        edge = self.edge_gateway.edge
        try:
            answer = await forward(
                self._client(),
                self.upstream,
                feedback_url(self.upstream, name),
                name,
                body,
                headers.get(b"content-type", JSON).decode("latin-1"),
                self.gateway.config.request_timeout_seconds,
            )
        except UpstreamUnavailable as error:
            edge.upstream_up = error.outcome != "unreachable" and edge.upstream_up
            raise
        edge.upstream_up = True
        await respond(
            send, answer.status, answer.body, answer.content_type.encode(), [(SERVED_BY, UPSTREAM)]
        )

    async def predict_upstream(
        self, scope: Scope, receive: Receive, send: Send, name: str, *, preview: bool
    ) -> None:
        """A predict for a model not served here, answered by the upstream as it answers
        it (status, body, version header), marked as served by it."""
        gateway = self.edge_gateway
        edge = gateway.edge
        headers = dict(scope["headers"])
        body = await read_body(receive, gateway.config.limits.max_body_bytes)
        key = headers.get(b"x-request-key")
        # A label for the model: a name this gateway was told to serve, or one the upstream
        # answers for (both bounded); any other text is a client's, counted under "".
        named = name in gateway.model_names
        try:
            answer = await forward_predict(
                self._client(),
                self.upstream,
                name,
                body,
                headers.get(b"content-type", JSON).decode("latin-1"),
                gateway.config.request_timeout_seconds,
                request_key=key.decode("latin-1") if key is not None else None,
                preview=preview,
            )
        except UpstreamUnavailable as error:
            edge.upstream_up = error.outcome != "unreachable" and edge.upstream_up
            edge.count_forward(name if named else "", error.outcome)
            local = gateway.readiness.get(name)
            here = (
                f"{name!r} is not served here ({local.reason})"
                if local is not None
                else f"{name!r} is not held here"
            )
            raise UpstreamUnavailable(
                error.status, f"{here}; {error.message}", error.outcome
            ) from None
        edge.upstream_up = True
        outcome = forward_outcome(answer.status)
        edge.count_forward(name if named or outcome == "answered" else "", outcome)
        extra = [(SERVED_BY, UPSTREAM)]
        if answer.version is not None:
            extra.append((b"x-model-version", answer.version.encode("latin-1")))
        await respond(send, answer.status, answer.body, answer.content_type.encode(), extra)
