"""The webhook relay: MLflow's signature scheme, and the relay as a real HTTP server.

Deliveries are built exactly as MLflow 3 sends them (headers, signed content, JSON shape);
the integration test `tests/integration/test_mlflow_webhooks.py` has a real `mlflow server`
send them.
"""

import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from chassis.registry_webhooks import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AliasSet,
    WebhookError,
    alias_set,
    sign,
    verify,
)
from chassis.webhook_relay import WEBHOOK_PATH
from tests.fixtures.relay import running_relay

SECRET = "s3cret-shared-with-mlflow"


def delivery(
    alias: str = "challenger",
    version: str = "3",
    *,
    secret: str = SECRET,
    delivery_id: str | None = None,
    sent_at: float | None = None,
    entity: str = "model_version_alias",
    action: str = "created",
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(
        {
            "entity": entity,
            "action": action,
            "timestamp": "2026-11-24T18:00:00+00:00",
            "data": {"name": "digits-mlp", "alias": alias, "version": version},
        }
    ).encode()
    delivery_id = delivery_id or str(uuid.uuid4())
    timestamp = str(int(sent_at if sent_at is not None else time.time()))
    headers = {
        "Content-Type": "application/json",
        DELIVERY_ID_HEADER: delivery_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, delivery_id, timestamp, body),
    }
    return headers, body


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


class Recorder:
    def __init__(self) -> None:
        self.events: list[AliasSet] = []
        self.fail_next = False

    def __call__(self, event: AliasSet) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("Prefect API unreachable")
        self.events.append(event)


@pytest.fixture
def relay() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    with running_relay(SECRET, recorder) as url:
        yield url, recorder


def post(url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
    return httpx.post(f"{url}{WEBHOOK_PATH}", headers=headers, content=body, timeout=10)


def test_the_relay_passes_on_each_challenger_once(relay):
    url, recorder = relay
    headers, body = delivery()
    first = post(url, headers, body)
    assert first.status_code == 202, first.text
    assert first.json()["relayed"]["version"] == 3
    again = post(url, headers, body)  # MLflow retries a delivery it thinks failed
    assert again.status_code == 200 and "relayed already" in again.json()["ignored"]
    assert [(e.model_name, e.version) for e in recorder.events] == [("digits-mlp", 3)]
    status = httpx.get(f"{url}/status", timeout=10).json()
    assert status["relayed"][0]["delivery_id"] == headers[DELIVERY_ID_HEADER]


def test_the_relay_ignores_other_aliases_and_refuses_forgeries(relay):
    url, recorder = relay
    champion = post(url, *delivery(alias="champion"))
    assert champion.status_code == 200 and "only challenger" in champion.json()["ignored"]
    forged = post(url, *delivery(secret="guessed"))
    assert forged.status_code == 401 and "signature" in forged.json()["error"]
    garbage_headers, _ = delivery()
    broken = post(
        url,
        {
            **garbage_headers,
            SIGNATURE_HEADER: sign(
                SECRET, garbage_headers[DELIVERY_ID_HEADER], garbage_headers[TIMESTAMP_HEADER], b"{"
            ),
        },
        b"{",
    )
    assert broken.status_code == 400
    huge = post(url, delivery()[0], b" " * (65 * 1024))
    assert huge.status_code == 413
    assert recorder.events == []
    assert httpx.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}
    assert httpx.get(f"{url}{WEBHOOK_PATH}", timeout=10).status_code == 405
    assert httpx.get(f"{url}/elsewhere", timeout=10).status_code == 404


def test_a_failed_relay_answers_503_so_mlflow_retries_and_the_retry_goes_through(relay):
    url, recorder = relay
    recorder.fail_next = True
    headers, body = delivery()
    failed = post(url, headers, body)
    assert failed.status_code == 503 and "Prefect API unreachable" in failed.json()["error"]
    retried = post(url, headers, body)
    assert retried.status_code == 202
    assert len(recorder.events) == 1
