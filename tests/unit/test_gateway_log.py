"""The gateway's log: every line an event with a stable name and flat fields, as logfmt text
or JSON lines, uvicorn's lines in the same style, and the split changes it reports."""

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from chassis.registry import Registry
from chassis.serving import gateway_log
from chassis.serving.access_log import AccessLog
from chassis.serving.asgi import GatewayApp
from chassis.serving.batching import MicroBatcher
from chassis.serving.gateway import Gateway, GatewayConfig, ServedModel, ServedVersion
from chassis.serving.state import RolloutState
from tests.fixtures.gateway import log_event

DIGEST_1, DIGEST_2 = "1" * 64, "2" * 64


def logged(log_format: gateway_log.LogFormat, emit: Any) -> list[str]:
    """The lines `emit(logger)` writes through a handler in `log_format`."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(gateway_log.formatter(log_format))
    logger = logging.getLogger("chassis.test_gateway_log")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue().splitlines()


def test_json_lines_parse_with_every_field_and_null_for_what_does_not_apply():
    def emit(logger: logging.Logger) -> None:
        gateway_log.event(
            logger,
            logging.INFO,
            gateway_log.SPLIT_CHANGED,
            model="m",
            generation=3,
            candidate=None,
            listen=["http://127.0.0.1:8000"],
            ready=True,
            error='a "quoted"\nsecond line',
        )

    lines = logged("json", emit)
    assert len(lines) == 1  # a newline inside a value stays inside the one line
    record = json.loads(lines[0])
    assert list(record)[:3] == ["ts", "level", "event"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["ts"])
    assert record["level"] == "info" and record["event"] == "split.changed"
    assert record["model"] == "m" and record["generation"] == 3
    assert record["candidate"] is None  # present, null: every event has the same keys
    assert record["listen"] == ["http://127.0.0.1:8000"] and record["ready"] is True
    assert record["error"] == 'a "quoted"\nsecond line'


def test_text_is_one_logfmt_line_quoting_only_what_needs_it():
    def emit(logger: logging.Logger) -> None:
        gateway_log.event(
            logger,
            logging.WARNING,
            gateway_log.VERSION_REFUSED,
            model="digits-mlp",
            version=2,
            candidate=None,
            percent=12.5,
            ready=False,
            models=["a", "b"],
            error='digest "x" differs\nsee=here',
        )

    [line] = logged("text", emit)
    assert line.startswith("ts=") and " level=warning event=version.refused model=digits-mlp " in (
        line
    )
    pairs = log_event(line)
    assert pairs is not None
    assert pairs["version"] == "2" and pairs["percent"] == "12.5" and pairs["ready"] == "false"
    assert pairs["models"] == "a,b"
    assert pairs["error"] == 'digest "x" differs\nsee=here'  # quoted, escaped, round-trips
    assert "candidate" not in pairs  # what does not apply is left out of the text form


def test_a_record_without_an_event_is_the_log_event_with_its_logger_message_and_traceback():
    def emit(logger: logging.Logger) -> None:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("Application startup %s.", "failed")

    record = json.loads(logged("json", emit)[0])
    assert record["event"] == "log" and record["level"] == "error"
    assert record["logger"] == "chassis.test_gateway_log"
    assert record["message"] == "Application startup failed."
    assert "ValueError: boom" in record["traceback"]
    [line] = logged("text", emit)  # the traceback stays on the one line
    assert "ValueError: boom" in str((log_event(line) or {})["traceback"])


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """The process's logging as it was: `configure` changes global loggers."""
    root = logging.getLogger()
    saved = [(root, root.level, list(root.handlers), root.propagate)]
    for name in (*gateway_log.GATEWAY_LOGGERS, "uvicorn.error"):
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, list(logger.handlers), logger.propagate))
    yield
    for logger, level, handlers, propagate in saved:
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate


def test_configure_sends_uvicorns_lines_through_the_one_handler_at_the_level_asked(
    restored_logging: None,
):
    stream = io.StringIO()
    logging.getLogger("uvicorn").addHandler(logging.StreamHandler(stream))  # a second style
    gateway_log.configure("text", "info", stream)
    gateway_log.configure("json", "warning", stream)  # again: replaces, never doubles
    logging.getLogger("uvicorn.error").info("Application startup complete.")  # below warning
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    logging.getLogger("chassis.gateway").warning("a warning without an event")
    logging.getLogger("some.library").info("not the gateway's story")
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["message"] for line in lines] == [
        "Invalid HTTP request received.",
        "a warning without an event",
    ]
    assert json.loads(lines[0])["logger"] == "uvicorn.error"


def served(version: int, digest: str) -> ServedVersion:
    return ServedVersion(version, 1, digest, MicroBatcher(lambda rows: rows), ["x"])


def gateway_with_a_canary(tmp_path: Path) -> Gateway:
    # No registry: promote and rollback load nothing (a call would fail the test).
    config = GatewayConfig(tmp_path / "state", tmp_path / "cache")
    gateway = Gateway(cast(Registry, None), config, ["m"])
    state = RolloutState(
        model="m", stable_version=1, candidate_version=2, mode="canary", candidate_percent=25
    )
    state.generation = 7
    gateway.models["m"] = ServedModel("m", state, {1: served(1, DIGEST_1), 2: served(2, DIGEST_2)})
    return gateway


def captured(logger_name: str, run: Any) -> list[dict[str, Any]]:
    """The JSON events `run()` logs to `logger_name` at info and above."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(gateway_log.JsonFormatter())
    logger = logging.getLogger(logger_name)
    level, logger.level = logger.level, logging.INFO
    logger.addHandler(handler)
    try:
        run()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def gateway_events(run: Any) -> list[dict[str, Any]]:
    return captured("chassis.gateway", run)


def test_a_split_change_logs_the_new_split_by_role_with_digests_and_generation(tmp_path: Path):
    gateway = gateway_with_a_canary(tmp_path)
    [promoted] = gateway_events(lambda: gateway.promote_candidate("m"))
    assert promoted["event"] == "split.changed" and promoted["cause"] == "admin.promote"
    assert (promoted["mode"], promoted["stable"], promoted["stable_sha256"]) == (
        "stable",
        2,
        DIGEST_2,
    )
    assert promoted["generation"] == 7 and promoted["candidate"] is None
    assert (promoted["previous_mode"], promoted["previous_stable"]) == ("canary", 1)
    assert promoted["previous_candidate"] == 2
    # Nothing to change (stable already, nothing warm): no line.
    assert gateway_events(lambda: gateway.rollback("m")) == []


def test_a_repeated_refusal_is_said_once_until_it_changes(tmp_path: Path):
    gateway = gateway_with_a_canary(tmp_path)

    def refuse(why: str) -> None:
        gateway._say_once("refused:m:3", logging.ERROR, "version.refused", version=3, error=why)

    events = gateway_events(lambda: [refuse("gates failed") for _ in range(5)])
    assert [e["error"] for e in events] == ["gates failed"]
    assert [e["error"] for e in gateway_events(lambda: refuse("digest differs"))] == [
        "digest differs"
    ]


def test_the_access_log_names_method_path_status_model_version_and_latency():
    class App:
        """Answers as the gateway does: status and the x-model-version header."""

        gateway = None

        def model_label(self, path: str) -> str:
            return "m" if path.startswith("/v1/models/m/") else ""

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            headers = [(b"x-model-version", b"4")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"{}"})

    async def call() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, Any]) -> None:
            pass

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/models/m/predict",
            "client": ("10.0.0.9", 5555),
        }
        await AccessLog(cast(GatewayApp, App()))(scope, receive, send)

    [request] = captured("chassis.access", lambda: asyncio.run(call()))
    assert request["event"] == "request"
    assert (request["method"], request["path"], request["status"]) == (
        "POST",
        "/v1/models/m/predict",
        200,
    )
    assert (request["model"], request["version"], request["client"]) == ("m", 4, "10.0.0.9")
    assert isinstance(request["latency_ms"], float) and request["latency_ms"] >= 0
