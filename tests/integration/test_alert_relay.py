"""Alerts reach Prefect: a real Alertmanager (the shipped route and receiver, short
intervals) delivers to the webhook relay over HTTP with its bearer token, and each alert
that fires or resolves becomes one Prefect event in the session's Prefect API, however often
Alertmanager repeats it. A delivery with a wrong token or a malformed body is refused and
makes no event."""

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from prefect import get_client

from chassis.alert_delivery import ALERT_PATH, Alert
from tasks.alert_events import ALERT_FIRING_EVENT, ALERT_RESOLVED_EVENT, emit_alerts
from tests.fixtures.alertmanager import Alertmanager
from tests.fixtures.alerts import ALERT_TOKEN, alert, bearer, delivery
from tests.fixtures.relay import RELAY_SECRET, running_relay


def prefect_events(model: str) -> list[dict[str, Any]]:
    """The chassis.alert.* events the Prefect API stored for `model`."""
    body = {
        "filter": {
            "event": {"prefix": ["chassis.alert."]},
            "resource": {"id": [f"chassis.model.{model}"]},
        },
        "limit": 50,
    }
    with get_client(sync_client=True) as client:
        response = client.request("POST", "/events/filter", json=body)
        return response.json()["events"]


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.2)


def test_each_alert_becomes_one_prefect_event_however_often_alertmanager_repeats_it(tmp_path):
    model = f"alerting-{uuid.uuid4().hex[:8]}"
    answers: list[int] = []
    relayed: list[Alert] = []

    def on_alerts(alerts: list[Alert]) -> None:
        emit_alerts(alerts)
        relayed.extend(alerts)

    with running_relay(
        RELAY_SECRET,
        lambda event: None,
        answers,
        alert_token=ALERT_TOKEN,
        on_alerts=on_alerts,
        path=ALERT_PATH,
    ) as relay_url:
        alertmanager = Alertmanager(tmp_path, relay_url, ALERT_TOKEN, repeat_seconds=1).start()
        try:
            labels = {"alertname": "ChassisErrorRatioHigh", "model": model, "severity": "page"}
            alertmanager.fire(labels, {"summary": f"5xx ratio above 5 % on {model}"})
            # The first notification and at least two repeats of it.
            wait_until(lambda: len(answers) >= 3, "three deliveries of the firing alert")
            assert [(a.name, a.status, a.model) for a in relayed] == [
                ("ChassisErrorRatioHigh", "firing", model)
            ]
            alertmanager.resolve(labels)
            wait_until(lambda: len(relayed) >= 2, "the resolution")
            assert [a.status for a in relayed] == ["firing", "resolved"]
            assert set(answers) == {200}  # every delivery accepted, repeats included
            # Each reached the Prefect API once, on the model's resource.
            wait_until(lambda: len(prefect_events(model)) >= 2, "two events in Prefect")
            events = prefect_events(model)
            assert sorted(e["event"] for e in events) == [ALERT_FIRING_EVENT, ALERT_RESOLVED_EVENT]
            firing = next(e for e in events if e["event"] == ALERT_FIRING_EVENT)
            assert firing["resource"]["chassis.alert.name"] == "ChassisErrorRatioHigh"
            assert firing["payload"]["labels"]["model"] == model
            assert firing["payload"]["annotations"]["summary"].startswith("5xx ratio")
        finally:
            alertmanager.stop()


def test_a_wrong_token_or_a_malformed_delivery_is_refused_and_makes_no_event():
    model = f"refused-{uuid.uuid4().hex[:8]}"
    relayed: list[Alert] = []
    with running_relay(
        RELAY_SECRET, lambda event: None, alert_token=ALERT_TOKEN, on_alerts=relayed.extend
    ) as relay_url:
        url = f"{relay_url}{ALERT_PATH}"
        body = delivery(alert(model=model))
        wrong = httpx.post(url, content=body, headers=bearer("x" * 32), timeout=10)
        missing = httpx.post(url, content=body, timeout=10)
        malformed = httpx.post(url, content=b'{"version": "4"}', headers=bearer(), timeout=10)
    assert (wrong.status_code, missing.status_code, malformed.status_code) == (401, 401, 400)
    assert "does not match" in wrong.json()["error"]
    assert "alerts must be a non-empty list" in malformed.json()["error"]
    assert relayed == [] and prefect_events(model) == []
