"""The webhook relay's part of MLflow's signature scheme, and how it reads a delivery.

Deliveries are built exactly as MLflow 3 sends them (headers, signed content, JSON shape);
`tests/integration/test_webhook_relay_http.py` posts them to the relay as a real HTTP server,
and `tests/integration/test_mlflow_webhooks.py` has a real `mlflow server` send them.
"""

import json
import time

import pytest

from chassis.errors import WebhookError
from chassis.registry_webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AliasSet,
    alias_set,
    verify,
)
from tests.fixtures.relay import RELAY_SECRET as SECRET
from tests.fixtures.relay import delivery


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def test_a_signed_alias_delivery_verifies_and_parses():
    headers, body = delivery()
    delivery_id = verify(SECRET, lower(headers), body, time.time())
    assert alias_set(body, delivery_id) == AliasSet("digits-mlp", "challenger", 3, delivery_id)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda h, b: ({**h, SIGNATURE_HEADER: "v1,AAAA"}, b), "does not match"),
        (lambda h, b: (h, b.replace(b'"3"', b'"4"')), "does not match"),  # body changed
        (lambda h, b: ({k: v for k, v in h.items() if k != SIGNATURE_HEADER}, b), "unsigned"),
        (lambda h, b: ({**h, TIMESTAMP_HEADER: "soon"}, b), "not a unix time"),
    ],
)
def test_tampered_or_unsigned_deliveries_are_refused(tamper, message):
    headers, body = tamper(*delivery())
    with pytest.raises(WebhookError, match=message) as caught:
        verify(SECRET, lower(headers), body, time.time())
    assert caught.value.status == 401


def test_a_replayed_old_delivery_is_refused():
    headers, body = delivery(sent_at=time.time() - 3600)
    with pytest.raises(WebhookError, match="limit ±300 s"):
        verify(SECRET, lower(headers), body, time.time())


def test_other_events_are_not_alias_sets_and_malformed_ones_are_named():
    _, tag_event = delivery(entity="model_version_tag", action="set")
    assert alias_set(tag_event, "d") is None
    for body, message in [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"entity": "model_version_alias", "action": "created"}).encode(), "data"),
        (delivery(version="three")[1], "version 'three'"),
    ]:
        with pytest.raises(WebhookError, match=message) as caught:
            alias_set(body, "d")
        assert caught.value.status == 400
