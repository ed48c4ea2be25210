"""MLflow registry webhooks as Chassis reads them: signature checks and alias events.

MLflow 3 (an `mlflow server` on a SQL store) POSTs a JSON document for registry events,
signed with HMAC-SHA256 over `<delivery id>.<unix timestamp>.<body>` and sent as
`X-MLflow-Signature: v1,<base64 digest>`. Nothing here does HTTP or talks to Prefect: the
relay (`webhook_relay.py`) and the CLI wire these checks to a server and an event bus.
"""

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from chassis.errors import WebhookError

SIGNATURE_HEADER = "x-mlflow-signature"
TIMESTAMP_HEADER = "x-mlflow-timestamp"
DELIVERY_ID_HEADER = "x-mlflow-delivery-id"
SIGNATURE_VERSION = "v1"
ALIAS_CREATED = "model_version_alias.created"
# A delivery older than this is refused, so a captured request cannot be replayed later.
MAX_AGE_SECONDS = 300.0


@dataclass(frozen=True)
class AliasSet:
    """An alias set on a model version in the registry (by anyone, Chassis included)."""

    model_name: str
    alias: str
    version: int
    delivery_id: str


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The signature MLflow sends for this delivery (used to verify, and by tests)."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    """Check a delivery's signature and age; returns its delivery id.

    `headers` must have lower-case names (as ASGI gives them).
    """
    delivery_id = headers.get(DELIVERY_ID_HEADER, "")
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    signature = headers.get(SIGNATURE_HEADER, "")
    if not (delivery_id and timestamp and signature):
        raise WebhookError(
            401,
            f"unsigned delivery: {DELIVERY_ID_HEADER}, {TIMESTAMP_HEADER} and "
            f"{SIGNATURE_HEADER} are all required (is the webhook's secret set?)",
        )
    try:
        sent_at = float(timestamp)
    except ValueError:
        raise WebhookError(401, f"{TIMESTAMP_HEADER} is not a unix time") from None
    if abs(now - sent_at) > MAX_AGE_SECONDS:
        raise WebhookError(
            401, f"delivery timestamp is {now - sent_at:.0f} s from now (limit ±300 s)"
        )
    if not hmac.compare_digest(sign(secret, delivery_id, timestamp, body), signature):
        raise WebhookError(401, "signature does not match this relay's webhook secret")
    return delivery_id


def alias_set(body: bytes, delivery_id: str) -> AliasSet | None:
    """The alias event in a verified delivery; None for every other kind of event."""
    try:
        document = json.loads(body)
    except ValueError:
        raise WebhookError(400, "the delivery is not JSON") from None
    if not isinstance(document, dict):
        raise WebhookError(400, "the delivery is not a JSON object")
    document = cast(dict[str, Any], document)
    event = f"{document.get('entity')}.{document.get('action')}"
    if event != ALIAS_CREATED:
        return None
    data = document.get("data")
    if not isinstance(data, dict):
        raise WebhookError(400, f"{ALIAS_CREATED} delivery without a data object")
    data = cast(dict[str, Any], data)

    name, alias, version = data.get("name"), data.get("alias"), data.get("version")
    if not (isinstance(name, str) and name and isinstance(alias, str) and alias):
        raise WebhookError(400, f"{ALIAS_CREATED} delivery without a model name and alias")
    try:
        number = int(str(version))
    except ValueError:
        raise WebhookError(400, f"{ALIAS_CREATED} delivery with version {version!r}") from None
    return AliasSet(name, alias, number, delivery_id)
