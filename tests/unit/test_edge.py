"""Edge mode's pure parts: the upstream's URL, a forward's answer and failures (over
httpx's mock transport: no server), the sync state and its metrics."""

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from chassis.errors import RegistryUnreachable, SettingsError, UpstreamUnavailable
from chassis.serving.edge import EdgeState, forward_outcome
from chassis.serving.upstream import (
    feedback_url,
    forward_predict,
    parse_upstream,
    predict_url,
)

METRICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://cloud:8000", "http://cloud:8000"),
        ("https://cloud.example/gateway/", "https://cloud.example/gateway"),
        (" http://127.0.0.1:9000/ ", "http://127.0.0.1:9000"),
    ],
)
def test_an_upstream_url_is_kept_without_its_trailing_slash(given, expected):
    assert parse_upstream(given) == expected


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("cloud:8000", "is not a gateway URL"),
        ("ftp://cloud:8000", "is not a gateway URL"),
        ("http://", "is not a gateway URL"),
        ("http://cloud:99999", "is not a URL"),
        ("http://cloud:8000/?x=1", "no query or fragment"),
    ],
)
def test_a_malformed_upstream_url_is_refused_naming_it_and_its_source(given, problem):
    with pytest.raises(SettingsError) as refused:
        parse_upstream(given, "CHASSIS_GATEWAY_UPSTREAM")
    assert problem in str(refused.value)
    assert str(refused.value).startswith(f"CHASSIS_GATEWAY_UPSTREAM {given!r}")


def test_a_model_name_is_quoted_in_the_forwarded_path():
    assert predict_url("http://c", "a/../b") == "http://c/v1/models/a%2F..%2Fb/predict"
    assert predict_url("http://c", "m", preview=True) == "http://c/v1/models/m/preview/predict"
    assert feedback_url("http://c", "a b") == "http://c/v1/models/a%20b/feedback"


def forward(handler, timeout: float = 5.0):
    async def run():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await forward_predict(
                client,
                "http://cloud:8000",
                "m",
                b'{"instances":[[1]]}',
                "",
                timeout,
                request_key="k1",
            )

    return asyncio.run(run())


def test_the_upstreams_answer_is_passed_through_whatever_its_status():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            404, content=b'{"error":"no model"}', headers={"x-model-version": "7"}
        )

    answer = forward(handler)
    assert (answer.status, answer.body, answer.version) == (404, b'{"error":"no model"}', "7")
    assert str(seen[0].url) == "http://cloud:8000/v1/models/m/predict"
    assert seen[0].content == b'{"instances":[[1]]}'
    assert seen[0].headers["content-type"] == "application/json"  # none given: JSON
    assert seen[0].headers["x-request-key"] == "k1"  # the canary side stays the client's


def test_an_upstream_without_a_connection_is_a_503_naming_it():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(UpstreamUnavailable) as failed:
        forward(handler)
    assert failed.value.status == 503 and failed.value.outcome == "unreachable"
    assert "upstream http://cloud:8000 is unreachable" in failed.value.message


def test_an_upstream_past_the_timeout_is_a_504_naming_it():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(UpstreamUnavailable) as failed:
        forward(handler, timeout=1.5)
    assert failed.value.status == 504 and failed.value.outcome == "timeout"
    assert "http://cloud:8000 did not answer 'm' within 1.5 s" in failed.value.message


@pytest.mark.parametrize(
    ("status", "outcome"), [(200, "answered"), (404, "refused"), (422, "refused"), (503, "failed")]
)
def test_a_forwarded_answer_is_counted_by_its_status_class(status, outcome):
    assert forward_outcome(status) == outcome


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_sync_state_says_source_time_and_age_per_model():
    clock = Clock()
    state = EdgeState("http://cloud:8000", ["a", "b", "c"], clock)
    state.synced("a", 3)
    state.from_store("b", 2, verified_at=400.0)
    clock.now = 1030.0
    report = state.report()
    models = report["models"]
    assert report["upstream"] == "http://cloud:8000" and report["upstream_reachable"] is True
    assert models["a"] == {  # type: ignore[index]
        "version": 3,
        "source": "registry",
        "last_sync": 1000.0,
        "age_seconds": 30.0,
        "last_error": None,
    }
    assert models["b"]["source"] == "store" and models["b"]["age_seconds"] == 630.0  # type: ignore[index]
    assert models["c"]["source"] is None and models["c"]["last_sync"] is None  # type: ignore[index]


def test_a_failed_sync_keeps_the_last_sync_time_and_is_counted():
    clock = Clock()
    state = EdgeState("http://cloud:8000", ["a"], clock)
    state.synced("a", 1)
    clock.now = 1100.0
    state.failed("a", RegistryUnreachable("registry unreachable at http://mlflow"))
    state.failed("a", RegistryUnreachable("registry unreachable at http://mlflow"))
    entry = state.report()["models"]["a"]  # type: ignore[index]
    assert entry["last_sync"] == 1000.0 and entry["age_seconds"] == 100.0
    assert "RegistryUnreachable: registry unreachable" in entry["last_error"]
    assert sample(state, "chassis_edge_sync_failures_total", {"model": "a"}) == 2


def test_the_registry_answering_again_makes_a_store_copy_the_registrys():
    clock = Clock()
    state = EdgeState("http://cloud:8000", ["a"], clock)
    state.from_store("a", 1, verified_at=10.0)
    assert sample(state, "chassis_edge_serving_from_store", {"model": "a"}) == 1
    clock.now = 2000.0
    state.synced("a", 1)
    assert sample(state, "chassis_edge_serving_from_store", {"model": "a"}) == 0
    assert sample(state, "chassis_edge_last_sync_timestamp_seconds", {"model": "a"}) == 2000.0


def test_forwards_and_the_upstream_are_exported():
    state = EdgeState("http://cloud:8000", ["a"])
    state.count_forward("a", "answered")
    state.count_forward("a", "answered")
    state.count_forward("", "unreachable")
    state.upstream_up = False
    labels = {"model": "a", "outcome": "answered"}
    assert sample(state, "chassis_edge_forwarded_total", labels) == 2
    assert sample(state, "chassis_edge_forwarded_total", {"model": "", "outcome": "unreachable"})
    assert sample(state, "chassis_edge_upstream_up", {}) == 0


def test_every_edge_metric_is_documented():
    documented = set(re.findall(r"`(chassis_[a-z_]+)`", METRICS_DOC.read_text()))
    exposed = {
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in EdgeState("http://cloud:8000", []).collect()
    }
    assert exposed and exposed - documented == set()


def sample(state: EdgeState, name: str, labels: dict[str, str]) -> float | None:
    registry = CollectorRegistry()
    registry.register(state)
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return None
