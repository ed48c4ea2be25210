"""HTTP around the gateway: a raw ASGI app (no framework on the hot path).

A framework's request parsing and dependency injection cost more than the model itself
for a small network (FastAPI measured ~2.5x slower than raw ASGI here), so routing is a
dictionary lookup and bodies are parsed once with orjson. A predict answer's fixed parts
(the JSON up to the predictions, the version header) are built once per version.
"""

import asyncio
import contextlib
import hmac
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from chassis.errors import FeedbackRefused, NotServable, RequestError, TextRefused
from chassis.serving.admin_bodies import RolloutBody, SwitchBody, parse_body
from chassis.serving.feedback import answer_item, parse_feedback, refusal_body
from chassis.serving.feedback_peers import COMMIT, FORWARDED_BY, OWNER, PHASE, FeedbackRouter
from chassis.serving.gateway import Gateway
from chassis.serving.openapi import openapi_document
from chassis.serving.readiness import model_report
from chassis.serving.supervision import supervised_replica
from chassis.serving.validation import parse_instances, parse_texts

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = b"application/json"
CACHE_HEADER = b"x-chassis-cache"
CONTENT_TYPE_JSON = (b"content-type", JSON)
ADMIN_BODY_BYTES = 64 * 1024
# A feedback body: up to feedback.MAX_ITEMS items of an id and a label.
FEEDBACK_BODY_BYTES = 256 * 1024


async def read_body(receive: Receive, limit: int, message: dict[str, Any] | None = None) -> bytes:
    """Read at most `limit` + 1 bytes: an oversize body is refused without buffering it all.
    `message`: the first message, when the caller has received it already."""
    if message is None:
        message = await receive()
    chunk = message.get("body", b"")
    chunks: list[bytes] = []
    size = 0
    while True:
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"body exceeds the {limit}-byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()
        chunk = message.get("body", b"")


async def respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = JSON,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def answer_parts(model: str, version: int) -> tuple[bytes, tuple[bytes, bytes]]:
    """The fixed start of a predict answer of `version` and its x-model-version header."""
    prefix = b'{"model":%s,"version":%d,"predictions":' % (orjson.dumps(model), version)
    return prefix, (b"x-model-version", b"%d" % version)


def error_body(status: int, message: str) -> bytes:
    return orjson.dumps({"error": message, "status": status})


class GatewayApp:
    """ASGI application: predict, preview, admin, metrics, health and OpenAPI routes."""

    def __init__(self, gateway: Gateway, admin_token: str, follow_seconds: float = 0.0) -> None:
        self.gateway = gateway
        self.admin_token = admin_token.encode()
        self.follow_seconds = follow_seconds
        self.follower: asyncio.Task[None] | None = None
        self.loading: asyncio.Future[None] | None = None
        # The predict routes of the models served, by exact path; any other spelling goes
        # through `route`, which parses the path.
        self.predict_routes: dict[str, tuple[str, bool]] = {}
        for name in gateway.model_names:
            self.predict_routes[f"/v1/models/{name}/predict"] = (name, False)
            self.predict_routes[f"/v1/models/{name}/preview/predict"] = (name, True)
        self.feedback_routes = {f"/v1/models/{name}/feedback": name for name in gateway.model_names}
        # (model, version) -> (answer JSON up to the predictions list, version header).
        self.answer_parts: dict[tuple[str, int], tuple[bytes, tuple[bytes, bytes]]] = {}
        # Feedback on other replicas' predictions goes to them (none: refused as unknown).
        peers = gateway.config.peers
        self.feedback_router = FeedbackRouter(gateway, peers) if peers else None
        # Under the local supervisor a replica can be restarted (POST /admin/restart).
        self.supervised_index = supervised_replica()
        self.restart_asked = False
        self.on_restart: Callable[[], None] | None = None  # set by lifecycle.DrainingServer
        # GET /healthz says which replica this is (its feedback tag: peers find each other's
        # there) and whether the local supervisor runs it (a diagnosis then knows a restart
        # brings it back).
        self.health = orjson.dumps(
            {
                "status": "ok",
                "replica": gateway.replica,
                "pid": os.getpid(),
                "supervised": self.supervised_index is not None,
                "supervised_replica": self.supervised_index,
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            target = self.predict_routes.get(scope["path"]) if scope["method"] == "POST" else None
            if target is not None:
                await self.predict(scope, receive, send, target[0], preview=target[1])
            else:
                await self.route(scope, receive, send)
        except FeedbackRefused as refused:  # with its reason and the item refused
            self.gateway.metrics.count_error_answer(self.model_label(scope["path"]), refused.status)
            await respond(send, refused.status, refusal_body(refused))
        except RequestError as error:
            self.gateway.metrics.count_error_answer(self.model_label(scope["path"]), error.status)
            await respond(send, error.status, error_body(error.status, error.message))
        except Exception as error:  # a bug or a model failure: 500 with the cause, never a hang
            self.gateway.metrics.count_error_answer(self.model_label(scope["path"]), 500)
            await respond(send, 500, error_body(500, f"{type(error).__name__}: {error}"))

    def model_label(self, path: str) -> str:
        """The served model a path names, or "" (any other text is a client's, unbounded)."""
        parts = path.split("/")
        if len(parts) > 3 and parts[3] in self.gateway.models:
            return parts[3]  # /v1/models/<name>/... and /admin/models/<name>/...
        return ""

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                loop = asyncio.get_running_loop()
                self.gateway.loop = loop
                # Every model is tried once before the server listens (`chassis serve` has
                # done so already): one that cannot be served fails the startup, unless
                # missing models are allowed, and nothing listens.
                try:
                    await loop.run_in_executor(None, self.gateway.first_pass)
                except NotServable as error:
                    await loop.run_in_executor(None, self.gateway.close)
                    await send({"type": "lifespan.startup.failed", "message": f"error: {error}"})
                    return
                # The others are retried off the event loop: /healthz answers meanwhile,
                # each model serves once loaded, and /readyz says what is still missing.
                self.loading = loop.run_in_executor(None, self.gateway.keep_loading)
                if self.follow_seconds > 0:
                    self.follower = loop.create_task(self.follow_champions())
                await self.started()
                if self.gateway.result_cache is not None:
                    await self.gateway.result_cache.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # Requests in flight are answered by now (the server waited for them): stop
                # following the registry and write what the prediction logs still hold.
                if self.follower is not None:
                    self.follower.cancel()
                if self.feedback_router is not None:
                    await self.feedback_router.close()
                await self.stopping()
                if self.gateway.result_cache is not None:
                    await self.gateway.result_cache.close()
                await asyncio.get_running_loop().run_in_executor(None, self.gateway.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def started(self) -> None:
        """Called once the models were tried and before traffic (a subclass's own tasks)."""

    async def stopping(self) -> None:
        """Called at shutdown, after the last request (a subclass's own clean-up)."""

    def readiness_extra(self) -> dict[str, object]:
        """What a subclass adds to /readyz's answer (edge mode: its sync state)."""
        return {}

    async def follow_champions(self) -> None:
        """Poll the registry so the gateway follows a champion moved outside a rollout."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.follow_seconds)
            # Each served model follows its own registry entry, whatever another model's
            # state (both calls pass over the models served only). Failures (registry
            # down) must not stop the loop or the serving.
            with contextlib.suppress(Exception):
                await loop.run_in_executor(None, self.gateway.sync_all)
            with contextlib.suppress(Exception):
                await loop.run_in_executor(None, self.gateway.follow_champions)

    async def route(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"].rstrip("/") or "/"

        parts = path.strip("/").split("/")
        if (
            method == "POST"
            and len(parts) == 4
            and parts[:2] == ["v1", "models"]
            and parts[3] == "predict"
        ):
            await self.predict(scope, receive, send, parts[2], preview=False)
        elif (
            method == "POST"
            and len(parts) == 5
            and parts[:2] == ["v1", "models"]
            and parts[3:] == ["preview", "predict"]
        ):
            await self.predict(scope, receive, send, parts[2], preview=True)
        elif method == "POST" and path in self.feedback_routes:
            await self.feedback(scope, receive, send, self.feedback_routes[path])
        elif (
            method == "POST"
            and len(parts) == 4
            and parts[:2] == ["v1", "models"]
            and parts[3] == "feedback"
        ):
            raise self.gateway.not_served(parts[2])
        elif method == "GET" and path == "/healthz":
            await respond(send, 200, self.health)
        elif method == "GET" and path == "/readyz":
            ready = self.gateway.ready and not self.gateway.draining
            reason = self.gateway.not_ready_reason() or (
                "ready"
                if ready
                else "draining: shutting down"
                if self.gateway.draining
                else "loading models"
            )
            if ready:
                # Serving verified versions is ready; how they were found, and which allowed
                # models are still missing, is worth saying.
                notes = [f"{model}: {why}" for model, why in self.gateway.degraded.items()]
                if self.gateway.not_ready_reason():
                    notes.append(self.gateway.not_ready_reason())
                if notes:
                    reason = "ready; " + "; ".join(notes)
            generations = {n: m.state.generation for n, m in self.gateway.models.items()}
            # Still ready (what is served verified), but never silent about an alias the
            # gateway refused to follow.
            mismatches = {
                model: {"champion": champion, "served": served, "why": why}
                for model, (champion, served, why) in self.gateway.metrics.champion_mismatch.items()
            }
            await respond(
                send,
                200 if ready else 503,
                orjson.dumps(
                    {
                        "ready": ready,
                        "reason": reason,
                        "generations": generations,
                        "champion_mismatch": mismatches,
                        "models": model_report(
                            self.gateway.readiness,
                            {n: m.state.stable_version for n, m in self.gateway.models.items()},
                        ),
                        **self.readiness_extra(),
                    }
                ),
            )
        elif method == "GET" and path == "/metrics":
            await respond(send, 200, self.gateway.metrics.render(), b"text/plain; version=0.0.4")
        elif method == "GET" and path == "/openapi.json":
            await respond(send, 200, orjson.dumps(openapi_document(self.gateway)))
        elif method == "GET" and path == "/v1/models":
            await respond(send, 200, orjson.dumps({"models": sorted(self.gateway.models)}))
        elif parts[0] == "admin":
            self.authorize(scope)
            await self.admin(method, parts[1:], receive, send)
        else:
            raise RequestError(404, f"no route for {method} {path}")

    async def predict(
        self, scope: Scope, receive: Receive, send: Send, name: str, *, preview: bool
    ) -> None:
        gateway = self.gateway
        model = gateway.models.get(name)
        if model is None:
            raise gateway.not_served(name)
        headers = dict(scope["headers"])
        limits = gateway.config.limits
        message = await receive()
        body = message.get("body", b"")
        if message.get("more_body", False) or len(body) > limits.max_body_bytes:
            body = await read_body(receive, limits.max_body_bytes, message)
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        if model.reads_text:
            try:
                request = parse_texts(body, content_type, limits)
            except TextRefused as refusal:
                gateway.metrics.count_text_refused(name, refusal.reason)
                raise
        else:
            # With sanitization on, a null is a missing value to fill or refuse.
            request = parse_instances(
                body, content_type, model.n_features, limits, model.sanitizer is not None
            )
        if preview:
            result = await gateway.predict_preview(name, request)
        else:
            key = headers.get(b"x-request-key")
            result = await gateway.predict(name, request, key.decode("latin-1") if key else None)
        parts = self.answer_parts.get((name, result.version))
        if parts is None:
            parts = self.answer_parts[(name, result.version)] = answer_parts(name, result.version)
        prefix, version_header = parts
        # The same bytes as orjson.dumps({"model", "version", "predictions", "ids"}).
        ids = gateway.windows[name].ids_json(result.number, len(result.predictions))
        body = b'%s%s,"ids":%s}' % (prefix, orjson.dumps(result.predictions), ids)
        length = (b"content-length", b"%d" % len(body))
        headers = [CONTENT_TYPE_JSON, length, version_header]
        if result.cache:  # a model with the result cache: where this answer came from
            headers.append((CACHE_HEADER, result.cache))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def feedback(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        """Ground truth for predictions by id: joined, counted, logged (all or nothing);
        with peers, other replicas' items are joined where they were answered."""
        gateway = self.gateway
        gateway.model(name)  # 404 or 503 before reading the body
        headers = dict(scope["headers"])
        forwarded = headers.get(FORWARDED_BY.encode())
        try:
            body = await read_body(receive, FEEDBACK_BODY_BYTES)
        except RequestError as error:
            gateway.metrics.count_feedback_refused(name, "malformed")
            raise FeedbackRefused(error.status, "malformed", error.message) from None
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        if forwarded is not None:
            await self.forwarded_feedback(headers, body, content_type, send, name)
            return
        try:
            items = parse_feedback(body, content_type)
        except FeedbackRefused as refused:
            gateway.metrics.count_feedback_refused(name, refused.reason)
            raise
        if self.feedback_router is None:
            answered = [answer_item(item) for item in gateway.feedback(name, items)]
        else:
            answered = await self.feedback_router.feedback(name, items)
        answer = {"model": name, "accepted": len(answered), "feedback": answered}
        await respond(send, 200, orjson.dumps(answer))

    async def forwarded_feedback(
        self, headers: dict[bytes, bytes], body: bytes, content_type: str, send: Send, name: str
    ) -> None:
        """A peer's part of a body, about this replica's predictions: judged (and, in the
        commit phase, counted) here, never forwarded again. Refusals are counted by the
        replica that answers the client, not here; they carry `detail` (the message without
        the item's index) for it."""
        gateway = self.gateway
        owner = headers.get(OWNER.encode(), b"").decode("latin-1")
        if owner != gateway.replica:  # this address now belongs to another replica
            message = f"this is replica {gateway.replica}, not {owner}"
            await respond(send, 421, error_body(421, message))
            return
        try:
            items = parse_feedback(body, content_type)
            judged = gateway.judge_feedback(name, items)
        except FeedbackRefused as refused:
            answer = orjson.loads(refusal_body(refused)) | {"detail": refused.detail}
            await respond(send, refused.status, orjson.dumps(answer))
            return
        if headers.get(PHASE.encode(), COMMIT.encode()).decode("latin-1") == COMMIT:
            joined = gateway.commit_feedback(name, judged)
        else:
            joined = [item for _, item in judged]
        answered = [answer_item(item) for item in joined]
        answer = {"model": name, "accepted": len(answered), "feedback": answered}
        await respond(send, 200, orjson.dumps(answer))

    async def restart(self, send: Send) -> None:
        """Drain and exit for the local supervisor to start this replica again at once:
        202, then the drain SIGTERM starts (`lifecycle.DrainingServer`). Asked again while
        it drains: 202 again, nothing more (a second SIGTERM would skip the drain)."""
        if self.supervised_index is None:
            raise RequestError(
                409,
                "this gateway does not run under the local supervisor (chassis serve "
                "--replicas N): a restart would stop it for good; restart it the way it was "
                "started (on Kubernetes the probes do)",
            )
        first = not self.restart_asked
        self.restart_asked = True
        answer = {
            "restarting": True,
            "supervised_replica": self.supervised_index,
            "pid": os.getpid(),
            "at": time.time(),
        }
        await respond(send, 202, orjson.dumps(answer))
        if first and self.on_restart is not None:
            self.on_restart()
        elif first:  # under another server: its SIGTERM handling drains
            os.kill(os.getpid(), signal.SIGTERM)

    def authorize(self, scope: Scope) -> None:
        header = dict(scope["headers"]).get(b"authorization", b"")
        if not header.startswith(b"Bearer ") or not hmac.compare_digest(
            header[7:], self.admin_token
        ):
            raise RequestError(401, "admin API needs 'Authorization: Bearer <token>'")

    async def admin(self, method: str, parts: list[str], receive: Receive, send: Send) -> None:
        gateway = self.gateway
        if method == "GET" and parts == ["status"]:
            await respond(send, 200, orjson.dumps({n: gateway.status(n) for n in gateway.models}))
            return
        if method == "POST" and parts == ["restart"]:
            await self.restart(send)
            return
        if len(parts) < 2 or parts[0] != "models":
            raise RequestError(404, "unknown admin route")
        name, action = parts[1], parts[2] if len(parts) > 2 else ""
        if method == "GET" and action == "":
            result = gateway.status(name)
        elif method == "POST" and action == "rollout":
            rollout = parse_body(await read_body(receive, ADMIN_BODY_BYTES), RolloutBody)
            result = gateway.set_rollout(
                name,
                rollout.mode,
                rollout.candidate_version,
                rollout.percent,
                rollout.mirror_percent,
            )
        elif method == "POST" and action == "switch":
            switch = parse_body(await read_body(receive, ADMIN_BODY_BYTES), SwitchBody)
            result = gateway.switch(name, switch.mirror_percent)
        elif method == "POST" and action == "rollback":
            result = gateway.rollback(name)
        elif method == "POST" and action == "promote":
            result = gateway.promote_candidate(name)
        elif method == "POST" and action == "sync":
            # Off the event loop: reading the registry and loading a version take a while.
            await asyncio.get_running_loop().run_in_executor(None, gateway.sync, name)
            result = gateway.status(name)
        elif method == "POST" and action == "follow-champion":
            gateway.follow_champion(name)
            result = gateway.status(name)
        elif method == "POST" and action == "reset-stats":
            gateway.reset_stats(name)
            result = gateway.status(name)
        else:
            raise RequestError(404, f"unknown admin route {method} /admin/{'/'.join(parts)}")
        result["at"] = time.time()
        await respond(send, 200, orjson.dumps(result))
