"""Per-model readiness: which failures stop a gateway, when it is ready, what /readyz says.
Pure rules (chassis/serving/readiness.py), then the gateway's first pass against a real
MLflow store (SQLite, no server)."""

import asyncio
from typing import Any

import pytest
from mlflow import MlflowClient

from chassis.errors import (
    IntegrityError,
    NotServable,
    RegistryError,
    RegistryUnreachable,
)
from chassis.registry import Registry
from chassis.serving.asgi import GatewayApp
from chassis.serving.gateway import Gateway, GatewayConfig
from chassis.serving.readiness import (
    LOADING,
    SERVING,
    ModelReadiness,
    fatal_problem,
    is_ready,
    model_report,
    retry_wait,
    startup_overdue,
    waiting_reason,
)

MISSING = ModelReadiness.failed(NotServable("'b' has no champion alias"))
UNREACHABLE = ModelReadiness.failed(RegistryUnreachable("registry unreachable: refused"))


def test_what_waiting_cannot_fix_is_missing_and_what_it_may_fix_is_retried():
    assert (MISSING.state, MISSING.reason) == ("missing", "'b' has no champion alias")
    digest = IntegrityError("m v1: model.onnx does not match (expected sha256 a, actual b)")
    assert ModelReadiness.failed(digest).state == "missing"
    assert (UNREACHABLE.state, UNREACHABLE.reason) == (
        "retrying",
        "RegistryUnreachable: registry unreachable: refused",
    )
    # The artifact store down reads as a plain RegistryError: worth retrying, not fatal.
    assert ModelReadiness.failed(RegistryError("m v1 has no model.onnx")).state == "retrying"
    assert ModelReadiness.failed(OSError("disk")).state == "retrying"


def test_by_default_every_model_must_serve_to_be_ready():
    assert is_ready({"a": SERVING, "b": SERVING}, allow_missing=False)
    assert not is_ready({"a": SERVING, "b": MISSING}, allow_missing=False)
    assert not is_ready({"a": SERVING, "b": UNREACHABLE}, allow_missing=False)
    assert not is_ready({"a": SERVING, "b": LOADING}, allow_missing=False)
    assert not is_ready({}, allow_missing=False)


def test_with_missing_models_allowed_one_serving_model_makes_it_ready():
    assert is_ready({"a": SERVING, "b": MISSING}, allow_missing=True)
    assert is_ready({"a": SERVING, "b": UNREACHABLE}, allow_missing=True)
    # Nothing to answer with: a load balancer must not send it traffic.
    assert not is_ready({"a": MISSING, "b": UNREACHABLE}, allow_missing=True)
    assert not is_ready({"a": LOADING}, allow_missing=True)


def test_a_missing_model_is_fatal_by_default_naming_it_and_the_way_out():
    problem = fatal_problem({"a": SERVING, "b": MISSING}, allow_missing=False)
    assert problem == (
        "cannot serve 'b': 'b' has no champion alias; or start with --allow-missing-models "
        "to serve the others and keep looking for it"
    )
    assert "\n" not in problem


def test_every_missing_model_is_named_in_the_one_line():
    other = ModelReadiness.failed(NotServable("no registered model named 'c'"))
    problem = fatal_problem({"b": MISSING, "c": other}, allow_missing=False)
    assert problem is not None
    assert problem.startswith("cannot serve 'b': 'b' has no champion alias; cannot serve 'c': ")
    assert problem.endswith("--allow-missing-models to wait for them instead")


def test_nothing_is_fatal_when_allowed_or_when_only_waiting_may_help():
    assert fatal_problem({"a": SERVING, "b": MISSING}, allow_missing=True) is None
    assert fatal_problem({"a": SERVING, "b": UNREACHABLE}, allow_missing=False) is None
    assert fatal_problem({"a": LOADING}, allow_missing=False) is None


def test_the_startup_timeout_stops_a_gateway_still_not_ready_naming_what_it_waits_for():
    states = {"a": SERVING, "b": UNREACHABLE}
    assert startup_overdue(states, False, waited_seconds=9.9, timeout_seconds=10) is None
    assert startup_overdue(states, False, waited_seconds=50, timeout_seconds=0) is None  # no limit
    assert startup_overdue(states, False, waited_seconds=10, timeout_seconds=10) == (
        f"cannot serve 'b' within the 10 s startup timeout: b: {UNREACHABLE.reason}"
    )
    assert startup_overdue(states, True, waited_seconds=10, timeout_seconds=10) is None  # ready


def test_backoff_while_something_outside_does_not_answer_else_the_steady_pace():
    assert retry_wait({"a": UNREACHABLE, "b": MISSING}, 4.0, 5.0) == 4.0
    assert retry_wait({"a": SERVING, "b": MISSING}, 4.0, 5.0) == 5.0


def test_the_report_gives_each_model_its_state_and_version_or_reason():
    states = {"a": SERVING, "b": MISSING, "c": UNREACHABLE}
    assert model_report(states, {"a": 3}) == {
        "a": {"state": "serving", "version": 3},
        "b": {"state": "missing", "reason": "'b' has no champion alias"},
        "c": {"state": "retrying", "reason": UNREACHABLE.reason},
    }
    assert waiting_reason(states) == f"b: {MISSING.reason}; c: {UNREACHABLE.reason}"
    assert waiting_reason({"a": SERVING}) == ""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A real MLflow registry (SQLite) with one model that has no version at all."""
    store = tmp_path_factory.mktemp("registry")
    client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    client.create_registered_model("unpromoted")
    return Registry(client, "signing-key")


def gateway(registry: Registry, tmp_path, names: list[str], allow: bool) -> Gateway:
    config = GatewayConfig(tmp_path / "state", tmp_path / "cache", allow_missing_models=allow)
    return Gateway(registry, config, names)


def test_the_first_pass_refuses_an_unknown_and_an_unpromoted_model_naming_both(registry, tmp_path):
    strict = gateway(registry, tmp_path, ["nope", "unpromoted", "../x"], allow=False)
    with pytest.raises(NotServable) as refused:
        strict.first_pass()
    message = str(refused.value)
    assert "cannot serve 'nope': no registered model named 'nope'" in message
    assert "cannot serve 'unpromoted': 'unpromoted' has no champion alias" in message
    assert "chassis promote --model unpromoted" in message
    assert "cannot serve '../x': no registered model named '../x'" in message  # refused name
    assert strict.fatal == message
    assert {s.state for s in strict.readiness.values()} == {"missing"}
    assert strict.metrics.model_states == {n: "missing" for n in ("nope", "unpromoted", "../x")}


def test_allowed_missing_models_pass_the_first_pass_and_are_reported(registry, tmp_path):
    lenient = gateway(registry, tmp_path, ["nope"], allow=True)
    lenient.first_pass()
    assert lenient.fatal is None
    assert lenient.readiness["nope"].state == "missing"
    assert not lenient.ready  # nothing serves
    assert "no registered model named 'nope'" in lenient.not_ready_reason()
    refusal = lenient.not_served("nope")
    assert refusal.status == 503 and "no registered model named 'nope'" in refusal.message
    assert lenient.not_served("other").status == 404


class OnceUnreachable(Registry):
    """The registry above, not answering its first look-up (an outage at start)."""

    calls: list[str]

    def model_exists(self, name: str) -> bool:
        self.calls.append(name)
        if len(self.calls) == 1:
            raise RegistryUnreachable("registry unreachable: connection refused")
        return super().model_exists(name)


def test_a_model_found_missing_after_an_outage_stops_a_gateway_that_needs_every_model(
    registry, tmp_path
):
    flaky = OnceUnreachable(registry.client, registry.signing_key)
    object.__setattr__(flaky, "calls", [])
    strict = gateway(flaky, tmp_path, ["nope"], allow=False)
    strict.first_pass()  # unreachable: waiting may fix it, so not fatal yet
    assert strict.readiness["nope"].state == "retrying" and strict.fatal is None
    strict.keep_loading()  # returns: the registry answered that there is no such model
    assert flaky.calls == ["nope", "nope"]
    assert strict.fatal is not None
    assert strict.fatal.startswith("cannot serve 'nope': no registered model named 'nope'")
    assert strict.readiness["nope"].state == "missing"


def test_under_another_asgi_server_the_app_fails_its_startup_naming_the_model(registry, tmp_path):
    """The Python API takes the same path: the ASGI lifespan's startup fails (uvicorn then
    exits before it listens) with the same line `chassis serve` prints."""
    app = GatewayApp(gateway(registry, tmp_path, ["nope"], allow=False), "t" * 32)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert len(sent) == 1 and sent[0]["type"] == "lifespan.startup.failed"
    assert sent[0]["message"].startswith(
        "error: cannot serve 'nope': no registered model named 'nope'"
    )
    assert app.gateway.stopping.is_set()  # closed: nothing keeps retrying
