"""A gateway told to stop (SIGTERM, as Kubernetes and systemd do) drains: /readyz says 503
at once, requests keep being answered through the drain, the prediction log is written,
and the process exits within drain + grace."""

import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx

from chassis.serving.prediction_log import read_window
from chassis.settings import ChassisSettings
from chassis.storage import BlobStore
from flows.release import release
from tests.fixtures.gateway import MODEL, GatewayProcess

ROW = [0.5, -1.0, 2.0, 0.0]
DRAIN_SECONDS = 3.0


def test_sigterm_drains_answers_every_request_and_writes_the_prediction_log(chassis_home):
    release(spec="tests.fixtures.specs:good", seed=0, compression="off")
    gateway = GatewayProcess(
        chassis_home,
        env={
            "CHASSIS_GATEWAY_DRAIN_SECONDS": str(DRAIN_SECONDS),
            "CHASSIS_GATEWAY_GRACE_SECONDS": "10",
            # Longer than the test: only the shutdown can have written the log.
            "CHASSIS_PREDICTION_LOG_FLUSH_SECONDS": "3600",
            "CHASSIS_GATEWAY_ACCESS_LOG": "true",
        },
    )
    gateway.start()
    assert gateway.process is not None
    answered: list[int] = []
    refused = threading.Event()
    stop = threading.Event()

    def users() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    response = client.post(
                        f"{gateway.url}/v1/models/{MODEL}/predict", json={"instances": [ROW]}
                    )
                except httpx.TransportError:
                    refused.set()  # the listener is closed: the drain is over
                    return
                answered.append(response.status_code)

    thread = threading.Thread(target=users)
    thread.start()
    deadline = time.monotonic() + 60
    while len(answered) < 50:  # traffic is flowing before the signal
        assert thread.is_alive() and time.monotonic() < deadline, f"no traffic: {answered}"
        time.sleep(0.05)
    signalled = time.monotonic()
    gateway.process.send_signal(signal.SIGTERM)
    readiness = httpx.get(f"{gateway.url}/readyz", timeout=5)
    assert readiness.status_code == 503 and "draining" in readiness.json()["reason"]
    at_signal = len(answered)
    gateway.process.wait(timeout=DRAIN_SECONDS + 10 + 5)
    exited = time.monotonic() - signalled
    stop.set()
    thread.join(timeout=10)

    assert refused.is_set()
    assert set(answered) == {200}, "a request got an error during the drain"
    assert len(answered) > at_signal + 50, "requests were not answered during the drain"
    assert DRAIN_SECONDS <= exited < DRAIN_SECONDS + 10
    settings = ChassisSettings(home=chassis_home)
    now = datetime.now(UTC)
    logged = read_window(
        BlobStore(settings, settings.resolved_prediction_log_root()),
        MODEL,
        now - timedelta(minutes=10),
        now + timedelta(minutes=1),
    )
    assert len(logged) == len(answered)
    # Its log: the drain from the signal to the end, and a `request` line per answer.
    [drain] = gateway.events("drain.started")
    assert (drain["signal"], drain["drain_seconds"]) == ("SIGTERM", f"{DRAIN_SECONDS:g}")
    [ended] = gateway.events("drain.ended")
    assert float(str(ended["seconds"])) >= DRAIN_SECONDS and "in_flight" in ended
    predictions = [
        e for e in gateway.events("request") if e["path"] == f"/v1/models/{MODEL}/predict"
    ]
    assert len(predictions) == len(answered)
    assert {(e["status"], e["model"], e["version"]) for e in predictions} == {("200", MODEL, "1")}
