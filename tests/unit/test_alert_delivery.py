"""How the relay reads an Alertmanager delivery: its token, its shape, which alerts are
news; and what the relay answers, driven in-process through its ASGI interface
(tests/integration/test_alert_relay.py has a real Alertmanager deliver them)."""

import asyncio
import json
from typing import Any

import pytest

from chassis.alert_delivery import ALERT_PATH, Alert, AlertMemory, authenticate, parse_delivery
from chassis.errors import WebhookError
from chassis.webhook_relay import WebhookRelay
from tests.fixtures.alerts import ALERT_TOKEN, alert, bearer, delivery


def test_a_delivery_parses_into_its_alerts_with_their_model():
    (parsed,) = parse_delivery(delivery(alert(model="digits-mlp")))
    assert parsed.name == "ChassisErrorRatioHigh" and parsed.status == "firing"
    assert parsed.model == "digits-mlp" and parsed.labels["severity"] == "page"
    (replica,) = parse_delivery(delivery(alert(name="ChassisReplicaDown", model=None)))
    assert replica.model is None


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Authorization: Bearer <token> is required"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, "Authorization: Bearer <token> is required"),
        (bearer("a-different-token-of-32-chars-xx"), "does not match"),
    ],
)
def test_a_missing_or_wrong_token_is_refused_with_401(headers, message):
    with pytest.raises(WebhookError, match=message) as caught:
        authenticate(ALERT_TOKEN, headers)
    assert caught.value.status == 401


def broken(field: str, value: Any) -> bytes:
    document = json.loads(delivery())
    if field == "version":
        document["version"] = value
    elif field == "alerts":
        document["alerts"] = value
    else:
        document["alerts"][0][field] = value
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "must be a JSON object"),
        (broken("version", "3"), "unsupported alert delivery version '3'"),
        (broken("alerts", []), "alerts must be a non-empty list"),
        (broken("status", "pending"), r"alerts\[0\].status is 'pending'"),
        (broken("labels", {"severity": "page"}), r"alerts\[0\] has no alertname label"),
        (broken("labels", {"alertname": 3}), r"alerts\[0\].labels must map text to text"),
        (broken("startsAt", None), r"alerts\[0\].startsAt must be non-empty text"),
        (broken("fingerprint", ""), r"alerts\[0\].fingerprint must be non-empty text"),
    ],
)
def test_a_malformed_delivery_is_refused_with_400_naming_the_problem(body, message):
    with pytest.raises(WebhookError, match=message) as caught:
        parse_delivery(body)
    assert caught.value.status == 400


def test_repeats_are_not_news_but_a_resolution_and_a_new_firing_are():
    memory = AlertMemory()
    firing = parse_delivery(delivery(alert()))
    assert memory.news(firing + firing) == firing[:1]  # a duplicate within one delivery too
    memory.remember(firing)
    assert memory.news(parse_delivery(delivery(alert()))) == []  # Alertmanager's repeat
    resolved = parse_delivery(delivery(alert(status="resolved")))
    assert memory.news(resolved) == resolved
    memory.remember(resolved)
    again = parse_delivery(delivery(alert(starts_at="2026-12-03T10:00:00Z")))
    assert memory.news(again) == again  # fired again later: news


def test_the_memory_forgets_the_oldest_beyond_its_capacity():
    memory = AlertMemory(capacity=2)
    alerts = [parse_delivery(delivery(alert(fingerprint=f"f{i}")))[0] for i in range(3)]
    memory.remember(alerts)
    assert memory.news(alerts) == alerts[:1]


class Sink:
    def __init__(self, failures: int = 0) -> None:
        self.batches: list[list[Alert]] = []
        self.failures = failures

    def __call__(self, alerts: list[Alert]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Prefect API unreachable")
        self.batches.append(alerts)


def post(relay: WebhookRelay, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    """One POST through the relay's ASGI interface: (status, JSON answer)."""

    async def scenario() -> tuple[int, dict]:
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": ALERT_PATH,
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        }
        await relay(scope, receive, send)
        return sent[0]["status"], json.loads(sent[1]["body"])

    return asyncio.run(scenario())


def relay_with(sink: Sink) -> WebhookRelay:
    return WebhookRelay(
        "mlflow-secret", lambda event: None, alert_token=ALERT_TOKEN, on_alerts=sink
    )


def test_the_relay_passes_each_alert_on_once_and_refuses_bad_deliveries_with_no_event():
    sink = Sink()
    relay = relay_with(sink)
    assert post(relay, delivery(), {})[0] == 401
    assert post(relay, b"{}", bearer())[0] == 400
    assert sink.batches == []  # nothing refused reached Prefect
    status, answer = post(relay, delivery(), bearer())
    assert status == 200 and answer["relayed"][0]["model"] == "digits-mlp"
    status, answer = post(relay, delivery(), bearer())  # Alertmanager's repeat
    assert status == 200 and answer == {"relayed": [], "repeats": 1}
    assert [[a.name for a in batch] for batch in sink.batches] == [["ChassisErrorRatioHigh"]]


def test_an_action_that_fails_answers_503_and_the_retry_is_relayed():
    sink = Sink(failures=1)
    relay = relay_with(sink)
    status, answer = post(relay, delivery(), bearer())
    assert status == 503 and "Prefect API unreachable" in answer["error"]
    status, _ = post(relay, delivery(), bearer())  # Alertmanager delivers again
    assert status == 200 and len(sink.batches) == 1
