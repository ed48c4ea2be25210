"""The webhook relay as a real HTTP server (uvicorn on a loopback port): what it answers
MLflow for each kind of delivery, built exactly as MLflow 3 sends them."""

from collections.abc import Iterator

import httpx
import pytest

from chassis.registry_webhooks import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AliasSet,
    sign,
)
from chassis.webhook_relay import WEBHOOK_PATH
from tests.fixtures.relay import RELAY_SECRET as SECRET
from tests.fixtures.relay import delivery, running_relay


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
