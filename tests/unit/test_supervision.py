"""The local supervisor's decisions (which ports, when a replica that exited starts again),
`chassis serve --replicas` refusing bad values, the gateway's restart endpoint and health
answer, and fail points scoped to one replica. The processes themselves are exercised in
tests/integration/test_diagnose_flow.py."""

import asyncio
import signal
from types import SimpleNamespace
from typing import Any

import pytest

from chassis import failpoints
from chassis.errors import InjectedFault
from chassis.serving.asgi import GatewayApp
from chassis.serving.supervision import (
    MAX_BACKOFF_SECONDS,
    MAX_REPLICAS,
    REPLICA_ENV,
    RESTART_EXIT_CODE,
    STABLE_SECONDS,
    Exit,
    after_exit,
    replica_ports,
)
from chassis_cli.main import build_parser
from chassis_cli.serve import replica_command, without_options
from tests.fixtures.cli import chassis_in_process


def test_replicas_take_consecutive_ports_and_bad_counts_are_refused_naming_the_problem():
    assert replica_ports(8000, 3) == [8000, 8001, 8002]
    assert replica_ports(65535, 1) == [65535]
    for count, problem in (
        (0, "--replicas must be at least 1, got 0"),
        (-2, "--replicas must be at least 1, got -2"),
        (MAX_REPLICAS + 1, f"--replicas must be at most {MAX_REPLICAS}"),
    ):
        with pytest.raises(ValueError, match=problem):
            replica_ports(8000, count)
    with pytest.raises(ValueError, match="need ports up to 65536, past 65535"):
        replica_ports(65534, 3)


def crash(code: int = -signal.SIGKILL, ran: float = 1.0, in_a_row: int = 0, first: bool = False):
    return after_exit(Exit(code, ran, first, in_a_row), stopping=False)


def test_a_replica_asked_to_restart_starts_again_at_once_even_in_a_crash_loop():
    decided = after_exit(Exit(RESTART_EXIT_CODE, 0.5, False, 5), stopping=False)
    assert (decided.restart, decided.delay_seconds, decided.crashes_in_a_row) == (True, 0.0, 0)


def test_a_crash_loop_backs_off_doubling_up_to_the_cap_and_a_stable_run_starts_over():
    delays: list[float] = []
    in_a_row = 0
    for _ in range(8):
        decided = crash(in_a_row=in_a_row)
        assert decided.restart
        delays.append(decided.delay_seconds)
        in_a_row = decided.crashes_in_a_row
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, MAX_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS]
    after_a_stable_run = crash(ran=STABLE_SECONDS, in_a_row=in_a_row)
    assert after_a_stable_run.delay_seconds == 0.0 and after_a_stable_run.crashes_in_a_row == 1


def test_a_replica_that_refuses_to_start_is_not_started_again():
    refused = crash(code=1, first=True)
    assert not refused.restart and "refused to start (exit 1)" in refused.why
    # Killed at its first start is a crash, not a refusal; exit 1 after a restart too.
    assert crash(code=-signal.SIGKILL, first=True).restart
    assert crash(code=1, first=False).restart


def test_nothing_is_restarted_while_the_supervisor_stops():
    for code in (0, -signal.SIGTERM, RESTART_EXIT_CODE, 1):
        assert not after_exit(Exit(code, 60.0, False, 0), stopping=True).restart


@pytest.mark.parametrize(
    ("replicas", "problem"),
    [
        ("0", "error: --replicas must be at least 1, got 0"),
        ("-1", "error: --replicas must be at least 1, got -1"),
        ("2 --port 65535", "error: 2 replicas from port 65535 need ports up to 65536, past 65535"),
    ],
)
def test_chassis_serve_refuses_a_bad_replica_count_in_one_line(
    replicas: str, problem: str, chassis_home
):
    code, _, stderr = chassis_in_process("serve", "--model", "m", "--replicas", *replicas.split())
    assert code == 1
    assert stderr.strip() == problem


def test_each_replica_runs_the_command_as_given_on_its_own_port_and_alone():
    given = ["serve", "--model", "a", "--replicas", "2", "--port=9000", "--drain-seconds", "1"]
    options = without_options(given, ("--replicas", "--port"))
    assert options == ["serve", "--model", "a", "--drain-seconds", "1"]
    command = replica_command(options, 9001)
    assert command[1:3] == ["-m", "chassis_cli.main"]
    assert command[3:] == [*options, "--port", "9001", "--replicas", "1"]
    # An abbreviation left in place is overridden: the replica parses --replicas 1 last.
    parsed = build_parser().parse_args(
        replica_command(["serve", "--model", "a", "--rep", "3"], 1)[3:]
    )
    assert (parsed.replicas, parsed.port) == (1, 1)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def body(self) -> bytes:
        return bytes(self.sent[1]["body"])


TOKEN = "t" * 32


def app_without_models() -> GatewayApp:
    counted = SimpleNamespace(count_error_answer=lambda *_: None)
    gateway: Any = SimpleNamespace(
        model_names=[],
        models={},
        metrics=counted,
        config=SimpleNamespace(peers=()),  # no peers: feedback is not forwarded
        replica="0123abcd",
    )
    return GatewayApp(gateway, TOKEN)


def call(app: GatewayApp, method: str, path: str) -> Recorder:
    sent = Recorder()
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(b"authorization", f"Bearer {TOKEN}".encode())],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    asyncio.run(app(scope, receive, sent))
    return sent


def test_a_gateway_not_supervised_refuses_a_restart_and_says_so_on_healthz(monkeypatch):
    monkeypatch.delenv(REPLICA_ENV, raising=False)
    app = app_without_models()
    assert b'"supervised":false' in call(app, "GET", "/healthz").body
    refused = call(app, "POST", "/admin/restart")
    assert refused.status == 409
    assert b"does not run under the local supervisor" in refused.body
    assert not app.restart_asked


def test_a_supervised_replica_takes_a_restart_once_however_often_it_is_asked(monkeypatch):
    monkeypatch.setenv(REPLICA_ENV, "1")
    app = app_without_models()
    assert b'"supervised":true,"supervised_replica":1' in call(app, "GET", "/healthz").body
    drains: list[bool] = []
    app.on_restart = lambda: drains.append(True)
    assert call(app, "POST", "/admin/restart").status == 202
    assert call(app, "POST", "/admin/restart").status == 202
    assert app.restart_asked and drains == [True]


def test_a_fail_point_scoped_to_a_replica_fails_there_only(monkeypatch):
    monkeypatch.setenv(failpoints.ENV, "gateway.load@1=fail")
    for replica, fails in (("0", False), ("1", True)):
        monkeypatch.setenv(REPLICA_ENV, replica)
        monkeypatch.setattr(failpoints, "_armed", None)
        if fails:
            with pytest.raises(InjectedFault, match=r"fail point gateway\.load reached"):
                failpoints.failpoint("gateway.load")
        else:
            failpoints.failpoint("gateway.load")
    monkeypatch.setattr(failpoints, "_armed", None)
