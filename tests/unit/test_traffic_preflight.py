"""`chassis traffic` checks its gateway first (chassis/traffic.py::require_served): requests
sent to nobody, or to a gateway that does not serve the model, were only counted as
"no answer" or 404s, with no line saying why."""

import socket
from collections.abc import Callable

import httpx
import pytest

from chassis import traffic
from chassis.errors import GatewayError


def answering(respond: Callable[[httpx.Request], httpx.Response]):
    def get(url: str, timeout: float) -> httpx.Response:
        with httpx.Client(transport=httpx.MockTransport(respond)) as client:
            return client.get(url, timeout=timeout)

    return get


def closed_port() -> int:
    # Bound, never listened on, then closed: nothing answers there.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_no_gateway_at_the_address_is_named_with_how_to_start_one():
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(GatewayError, match=rf"no gateway answers at {url} .*chassis serve"):
        traffic.require_served(url, "digits-mlp", timeout=2)


def test_a_gateway_that_does_not_serve_the_model_says_what_it_serves(monkeypatch):
    monkeypatch.setattr(
        traffic.httpx,
        "get",
        answering(lambda request: httpx.Response(200, json={"models": ["churn", "topics"]})),
    )
    with pytest.raises(
        GatewayError, match=r"does not serve digits-mlp \(it serves: churn, topics\)"
    ):
        traffic.require_served("http://gw", "digits-mlp")


def test_something_else_at_the_address_is_not_taken_for_a_gateway(monkeypatch):
    monkeypatch.setattr(
        traffic.httpx, "get", answering(lambda request: httpx.Response(404, text="no such page"))
    )
    with pytest.raises(GatewayError, match=r"not a Chassis gateway: GET /v1/models answered 404"):
        traffic.require_served("http://gw", "digits-mlp")


def test_a_gateway_serving_the_model_passes(monkeypatch):
    seen: list[str] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"models": ["digits-mlp"]})

    monkeypatch.setattr(traffic.httpx, "get", answering(respond))
    traffic.require_served("http://gw/", "digits-mlp")
    assert seen == ["http://gw/v1/models"]
