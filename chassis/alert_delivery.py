"""Alertmanager webhook deliveries as Chassis reads them: authentication, parsing, and which
alerts are news.

Alertmanager posts one JSON document per notification of an alert group (webhook payload
version 4): the group's alerts, each with its labels, annotations, `startsAt` and a
fingerprint of its label set. It sends the whole group again on every change and every
`repeat_interval`, so one alert arrives many times; `AlertMemory` passes each firing (and
each resolution) on once. Authentication is a bearer token (Alertmanager's
`http_config.authorization.credentials_file`), compared in constant time. Nothing here does
HTTP or talks to Prefect: the relay (`webhook_relay.py`) and the CLI wire it up.
"""

import collections
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from chassis.errors import WebhookError

ALERT_PATH = "/alertmanager/webhook"
PAYLOAD_VERSION = "4"
# What an alert's status may be, and the label naming the model it is about (every Chassis
# alert rule keeps the gateway's `model` label; a replica alert has none).
STATUSES = ("firing", "resolved")
MODEL_LABEL = "model"
# Identities remembered for deduplication: an alert fires and resolves a few times a day;
# thousands cover weeks of repeats while bounding a relay that runs for months.
REMEMBERED_ALERTS = 4096


@dataclass(frozen=True)
class Alert:
    """One alert of a delivery, as Alertmanager saw it."""

    name: str  # the `alertname` label
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    fingerprint: str
    generator_url: str

    @property
    def model(self) -> str | None:
        return self.labels.get(MODEL_LABEL)

    @property
    def identity(self) -> str:
        """The same alert in the same state: repeats of it are not news. A new firing of a
        resolved alert starts at a new time, so it is news again."""
        return f"{self.fingerprint}:{self.starts_at}:{self.status}"


def authenticate(token: str, headers: Mapping[str, str]) -> None:
    """Check `Authorization: Bearer <token>`; `headers` have lower-case names."""
    given = headers.get("authorization", "")
    scheme, _, credentials = given.partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        raise WebhookError(
            401,
            "unauthenticated alert delivery: Authorization: Bearer <token> is required "
            "(Alertmanager's http_config.authorization with the relay's alert token)",
        )
    if not hmac.compare_digest(credentials.strip().encode(), token.encode()):
        raise WebhookError(401, "alert delivery refused: the bearer token does not match")


def _text_map(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise WebhookError(400, f"malformed alert delivery: {where} must be an object")
    mapping = cast(dict[object, object], value)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise WebhookError(400, f"malformed alert delivery: {where} must map text to text")
    return cast(dict[str, str], mapping)


def _text(item: Mapping[str, object], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise WebhookError(400, f"malformed alert delivery: {where}.{key} must be non-empty text")
    return value


def parse_delivery(body: bytes) -> list[Alert]:
    """The alerts of one Alertmanager delivery; WebhookError(400) naming what is wrong."""
    try:
        document: object = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise WebhookError(400, f"malformed alert delivery: not JSON ({error})") from None
    if not isinstance(document, dict):
        raise WebhookError(400, "malformed alert delivery: the body must be a JSON object")
    delivery = cast(dict[str, Any], document)
    version = delivery.get("version")
    if version != PAYLOAD_VERSION:
        raise WebhookError(
            400,
            f"unsupported alert delivery version {version!r}: the relay reads Alertmanager's "
            f"webhook payload version {PAYLOAD_VERSION}",
        )
    items = delivery.get("alerts")
    if not isinstance(items, list) or not items:
        raise WebhookError(400, "malformed alert delivery: alerts must be a non-empty list")
    alerts: list[Alert] = []
    for index, raw in enumerate(cast(list[object], items)):
        where = f"alerts[{index}]"
        if not isinstance(raw, dict):
            raise WebhookError(400, f"malformed alert delivery: {where} must be an object")
        item = cast(dict[str, object], raw)
        status = _text(item, "status", where)
        if status not in STATUSES:
            raise WebhookError(
                400,
                f"malformed alert delivery: {where}.status is {status!r}, not one of "
                f"{', '.join(STATUSES)}",
            )
        labels = _text_map(item.get("labels"), f"{where}.labels")
        if not labels.get("alertname"):
            raise WebhookError(400, f"malformed alert delivery: {where} has no alertname label")
        alerts.append(
            Alert(
                name=labels["alertname"],
                status=status,
                labels=labels,
                annotations=_text_map(item.get("annotations", {}), f"{where}.annotations"),
                starts_at=_text(item, "startsAt", where),
                fingerprint=_text(item, "fingerprint", where),
                generator_url=str(item.get("generatorURL") or ""),
            )
        )
    return alerts


class AlertMemory:
    """Which alerts were passed on already (bounded, oldest forgotten first)."""

    def __init__(self, capacity: int = REMEMBERED_ALERTS) -> None:
        self.capacity = capacity
        self.seen: collections.OrderedDict[str, None] = collections.OrderedDict()

    def news(self, alerts: list[Alert]) -> list[Alert]:
        """The alerts not passed on before, each once even if a delivery repeats it."""
        fresh: dict[str, Alert] = {}
        for alert in alerts:
            if alert.identity not in self.seen:
                fresh.setdefault(alert.identity, alert)
        return list(fresh.values())

    def remember(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            self.seen[alert.identity] = None
            self.seen.move_to_end(alert.identity)
        while len(self.seen) > self.capacity:
            self.seen.popitem(last=False)
