"""The webhook relay: an ASGI app that turns MLflow registry webhooks and Alertmanager
notifications into Chassis actions.

MLflow posts a signed delivery for each alias set in the registry (by hand in the MLflow
UI, through its REST API, or by Chassis). The relay verifies it, keeps `challenger` alias
events and hands them to `on_challenger` (the CLI emits a Prefect event there, which a
deployment trigger turns into a rollout). Deciding whether the move was Chassis's own is
left to the flow, which reads the audit trail under the registry lock: the audit record is
written just after the alias, so the relay would race it.

Answers: 202 accepted, 200 for deliveries it has no use for (other events, other aliases,
repeats of a delivery id: MLflow retries), 401 for a bad signature, 400 for a malformed
body, 413 for an oversize one, 503 when the action failed (MLflow then retries).

Alertmanager posts to `/alertmanager/webhook` with the relay's alert token as a bearer
token (chassis.alert_delivery): each alert that fires or resolves is handed to `on_alerts`
once (the CLI emits `chassis.alert.firing` / `chassis.alert.resolved` Prefect events),
however often Alertmanager repeats its group. 200 with what was relayed, 401 for a missing
or wrong token, 400 for a malformed delivery, 503 when the action failed (Alertmanager
retries; nothing is remembered as relayed).
"""

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from chassis.alert_delivery import ALERT_PATH, Alert, AlertMemory, authenticate, parse_delivery
from chassis.aliases import CHALLENGER
from chassis.errors import RequestError, WebhookError
from chassis.registry_webhooks import AliasSet, alias_set, verify
from chassis.serving.asgi import Receive, Scope, Send, read_body, respond

WEBHOOK_PATH = "/mlflow/webhook"
MAX_BODY_BYTES = 64 * 1024  # alias deliveries are a few hundred bytes
# An alert group of a few hundred alerts (Alertmanager's max_alerts caps it; 0 = all).
MAX_ALERT_BODY_BYTES = 1024 * 1024
REMEMBERED_DELIVERIES = 1024

logger = logging.getLogger("chassis.webhook_relay")


class WebhookRelay:
    def __init__(
        self,
        secret: str,
        on_challenger: Callable[[AliasSet], None],
        clock: Callable[[], float] = time.time,
        alert_token: str | None = None,
        on_alerts: Callable[[list[Alert]], None] | None = None,
    ) -> None:
        self.secret = secret
        self.on_challenger = on_challenger
        self.clock = clock
        self.alert_token = alert_token
        self.on_alerts = on_alerts
        self.alerts = AlertMemory()
        self.relayed_alerts: collections.deque[dict[str, str]] = collections.deque(maxlen=20)
        self.seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        # For `/status`: the latest events this process passed on (bounded: it runs for months).
        self.relayed: collections.deque[AliasSet] = collections.deque(maxlen=20)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no start-up work: run it with lifespan off
        path, method = scope["path"], scope["method"]
        if path == "/healthz" and method == "GET":
            await _answer(send, 200, {"status": "ok"})
        elif path == "/status" and method == "GET":
            relayed = [vars(event) for event in self.relayed]
            await _answer(send, 200, {"relayed": relayed, "alerts": list(self.relayed_alerts)})
        elif path == ALERT_PATH and self.on_alerts is not None:
            if method != "POST":
                await _answer(send, 405, {"error": f"{ALERT_PATH} takes POST"})
            else:
                status, document = await self.deliver_alerts(scope, receive)
                await _answer(send, status, document)
        elif path != WEBHOOK_PATH:
            await _answer(
                send,
                404,
                {
                    "error": f"no route {path}; MLflow posts to {WEBHOOK_PATH}"
                    + (f", Alertmanager to {ALERT_PATH}" if self.on_alerts is not None else "")
                },
            )
        elif method != "POST":
            await _answer(send, 405, {"error": f"{WEBHOOK_PATH} takes POST"})
        else:
            status, document = await self.deliver(scope, receive)
            await _answer(send, status, document)

    async def deliver(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        try:
            body = await read_body(receive, MAX_BODY_BYTES)
        except RequestError as error:
            return error.status, {"error": error.message}
        headers = _headers(scope)
        try:
            delivery_id = verify(self.secret, headers, body, self.clock())
            event = alias_set(body, delivery_id)
        except WebhookError as error:
            logger.warning("refused a webhook delivery: %s", error)
            return error.status, {"error": str(error)}
        if event is None or event.alias != CHALLENGER:
            return 200, {"ignored": "only challenger aliases start a rollout"}
        if delivery_id in self.seen:
            return 200, {"ignored": f"delivery {delivery_id} was relayed already"}
        try:
            # The action does network I/O (the Prefect API); keep it off the event loop.
            await asyncio.to_thread(self.on_challenger, event)
        except Exception as error:  # any failure: MLflow retries the delivery
            logger.exception("could not relay %s v%d", event.model_name, event.version)
            return 503, {"error": f"could not relay the event: {type(error).__name__}: {error}"}
        self._remember(delivery_id)
        self.relayed.append(event)
        logger.info("challenger of %s set to v%d: relayed", event.model_name, event.version)
        return 202, {"relayed": vars(event)}

    async def deliver_alerts(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        assert self.on_alerts is not None and self.alert_token is not None
        try:
            authenticate(self.alert_token, _headers(scope))
            body = await read_body(receive, MAX_ALERT_BODY_BYTES)
            alerts = parse_delivery(body)
        except RequestError as error:
            return error.status, {"error": error.message}
        except WebhookError as error:
            logger.warning("refused an alert delivery: %s", error)
            return error.status, {"error": str(error)}
        news = self.alerts.news(alerts)
        if news:
            try:
                # The action does network I/O (the Prefect API); keep it off the event loop.
                await asyncio.to_thread(self.on_alerts, news)
            except Exception as error:  # Alertmanager retries; nothing is remembered
                logger.exception("could not relay %d alert(s)", len(news))
                return 503, {
                    "error": f"could not relay the alerts: {type(error).__name__}: {error}"
                }
            self.alerts.remember(news)
            for alert in news:
                self.relayed_alerts.append(
                    {"alert": alert.name, "status": alert.status, "model": alert.model or ""}
                )
                logger.info(
                    "alert %s %s (model %s): relayed", alert.name, alert.status, alert.model
                )
        relayed = [{"alert": a.name, "status": a.status, "model": a.model} for a in news]
        return 200, {"relayed": relayed, "repeats": len(alerts) - len(news)}

    def _remember(self, delivery_id: str) -> None:
        self.seen[delivery_id] = None
        while len(self.seen) > REMEMBERED_DELIVERIES:
            self.seen.popitem(last=False)


def _headers(scope: Scope) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
    }


async def _answer(send: Send, status: int, document: dict[str, Any]) -> None:
    await respond(send, status, orjson.dumps(document))
