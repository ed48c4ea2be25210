"""Hostile input against a real gateway process: no request harms another's, limits hold.

One gateway over one released champion, with small limits (read time 2 s, 32 KiB heads, 40
connections) so each limit is reached quickly; good traffic runs beside every attack and
every scenario records what it sent and what came back.
"""

import concurrent.futures
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from chassis.settings import ChassisSettings
from flows.release import release
from tests.fixtures.fault_report import ScenarioResult
from tests.fixtures.gateway import MODEL, GatewayProcess

ROW = [0.5, -1.0, 2.0, 0.0]
GOOD = {"instances": [ROW]}
READ_TIMEOUT_SECONDS = 2.0
MAX_CONNECTIONS = 40


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("faults-gateway") / "chassis"
    previous = os.environ.get("CHASSIS_HOME")
    os.environ["CHASSIS_HOME"] = str(home)
    try:
        release(spec="tests.fixtures.specs:good", seed=0, compression="off")
    finally:
        if previous is None:
            os.environ.pop("CHASSIS_HOME", None)
        else:
            os.environ["CHASSIS_HOME"] = previous
    yield home


@pytest.fixture(scope="module")
def gateway(home: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(
        home,
        env={
            "CHASSIS_GATEWAY_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT_SECONDS),
            "CHASSIS_GATEWAY_MAX_HEAD_BYTES": str(32 * 1024),
            "CHASSIS_GATEWAY_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        },
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def auth(home: Path) -> dict[str, str]:
    previous = os.environ.get("CHASSIS_HOME")
    os.environ["CHASSIS_HOME"] = str(home)
    try:
        return {"Authorization": f"Bearer {ChassisSettings().admin_token()}"}
    finally:
        if previous is not None:
            os.environ["CHASSIS_HOME"] = previous


def stable_errors(url: str) -> float:
    """chassis_errors_total summed over every status of the served versions."""
    total = 0.0
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("chassis_errors_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def metric_value(url: str, prefix: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def errors_series(status: int) -> str:
    """chassis_http_errors_total's series for `status` (labels as rendered: sorted)."""
    labels = f'code_class="{status // 100}xx",model="{MODEL}",status="{status}"'
    return f"chassis_http_errors_total{{{labels}}}"


def run_side_by_side(
    good: Callable[[], int], bad: Callable[[], int], good_n: int, bad_n: int
) -> tuple[list[int], list[int]]:
    """Status codes of `good_n` good and `bad_n` bad calls, interleaved on 8 threads."""
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        bad_futures = [pool.submit(bad) for _ in range(bad_n)]
        good_futures = [pool.submit(good) for _ in range(good_n)]
        return [f.result() for f in good_futures], [f.result() for f in bad_futures]


def test_rows_one_level_too_deep_are_refused_and_fail_no_one_else(gateway, fault_report):
    url = f"{gateway.url}/v1/models/{MODEL}/predict"
    nested = {"instances": [[[v] for v in ROW]]}  # 4 lists of one number: right length
    before = stable_errors(gateway.url)
    with httpx.Client(timeout=30) as client:
        good, bad = run_side_by_side(
            lambda: client.post(url, json=GOOD).status_code,
            lambda: client.post(url, json=nested).status_code,
            good_n=400,
            bad_n=400,
        )
        message = client.post(url, json=nested).json()["error"]
    version_errors = stable_errors(gateway.url) - before
    fault_report.add(
        ScenarioResult(
            "3-D rows mixed with good requests",
            sent=800,
            answered=len(good) + len(bad),
            good_failed=sum(status != 200 for status in good),
            alias_matches_served=None,
            unvalidated_served=0,
            lost="nothing",
        )
    )
    assert good == [200] * 400
    assert bad == [422] * 400
    assert "row 0 must be a flat list of 4 numbers, got nested lists" in message
    assert version_errors == 0  # client errors never count against the version


def test_an_oversize_head_is_refused_early_and_others_are_served(gateway, fault_report):
    header_bytes = 64 << 20
    sent_bytes = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as attacker:
        attacker.sendall(f"POST /v1/models/{MODEL}/predict HTTP/1.1\r\nhost: x\r\nx-pad: ".encode())
        chunk = b"a" * (64 * 1024)
        try:
            while sent_bytes < header_bytes:
                attacker.sendall(chunk)
                sent_bytes += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway closed the connection: what should happen
        try:
            answer = attacker.recv(4096)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    statuses = [httpx.post(f"{gateway.url}/v1/models/{MODEL}/predict", json=GOOD).status_code]
    fault_report.add(
        ScenarioResult(
            "64 MiB request header",
            sent=2,
            answered=1 + bool(answer),
            good_failed=sum(s != 200 for s in statuses),
            alias_matches_served=None,
            unvalidated_served=0,
            lost="nothing",
        )
    )
    assert sent_bytes < header_bytes  # refused long before the whole header was read
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431")
    assert statuses == [200]


def test_stalled_clients_are_cut_off_after_the_read_timeout(gateway, fault_report):
    stalled: list[socket.socket] = []
    try:
        for _ in range(20):  # half the connection limit: the rest stay free for good traffic
            conn = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
            conn.sendall(
                f"POST /v1/models/{MODEL}/predict HTTP/1.1\r\nhost: x\r\n"
                "content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
                '{"instances": [[0.5,'.encode()
            )
            stalled.append(conn)
        good = [
            httpx.post(f"{gateway.url}/v1/models/{MODEL}/predict", json=GOOD).status_code
            for _ in range(20)
        ]
        answers = []
        for conn in stalled:  # each waits (recv blocks) until the gateway gives up on it
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
            answers.append(data)
    finally:
        for conn in stalled:
            conn.close()
    fault_report.add(
        ScenarioResult(
            "20 partial bodies left hanging",
            sent=40,
            answered=len(good) + sum(bool(a) for a in answers),
            good_failed=sum(s != 200 for s in good),
            alias_matches_served=None,
            unvalidated_served=0,
            lost="nothing",
        )
    )
    assert good == [200] * 20
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[:2]


def test_connections_beyond_the_limit_get_503_at_once_then_service_resumes(gateway, fault_report):
    idle = [socket.create_connection(("127.0.0.1", gateway.port)) for _ in range(MAX_CONNECTIONS)]
    try:
        over = httpx.post(
            f"{gateway.url}/v1/models/{MODEL}/predict", json=GOOD, timeout=10
        ).status_code
    finally:
        for conn in idle:
            conn.close()
    deadline = time.monotonic() + 10
    after = 0
    while time.monotonic() < deadline:  # the closed connections leave the server's count
        after = httpx.post(f"{gateway.url}/v1/models/{MODEL}/predict", json=GOOD).status_code
        if after == 200:
            break
    fault_report.add(
        ScenarioResult(
            f"{MAX_CONNECTIONS} idle connections (the limit) held open",
            sent=2,
            answered=2,
            good_failed=int(after != 200),
            alias_matches_served=None,
            unvalidated_served=0,
            lost="nothing",
        )
    )
    assert over == 503
    assert after == 200


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        (b"not json", 400, "malformed JSON"),
        (b"[]", 422, "must be a JSON object"),
        (b'{"mode": "canary", "candidate_version": 2, "percent": "abc"}', 422, "percent"),
        (b'{"mode": "canary", "candidate_version": 1.5, "percent": 10}', 422, "candidate_version"),
        (b'{"mode": "canary", "candidate_version": 2, "percent": true}', 422, "percent"),
        (b'{"mode": "canary", "candidate_version": 2, "percent": 250}', 422, "percent"),
        (b'{"mode": "sideways", "candidate_version": 2}', 422, "mode"),
        (b'{"mode": "canary", "candidate": 2}', 422, "candidate"),
    ],
    ids=["not-json", "list", "string", "fraction", "boolean", "range", "mode", "unknown-field"],
)
def test_malformed_admin_bodies_get_a_4xx_naming_the_field_and_change_nothing(
    gateway, auth, fault_report, request, body, status, names
):
    before = httpx.get(f"{gateway.url}/admin/models/{MODEL}", headers=auth).json()
    counted_before = metric_value(gateway.url, errors_series(status))
    response = httpx.post(
        f"{gateway.url}/admin/models/{MODEL}/rollout",
        content=body,
        headers={**auth, "content-type": "application/json"},
    )
    after = httpx.get(f"{gateway.url}/admin/models/{MODEL}", headers=auth).json()
    counted = metric_value(gateway.url, errors_series(status)) - counted_before
    fault_report.add(
        ScenarioResult(
            f"admin rollout body: {request.node.callspec.id}",
            sent=1,
            answered=1,
            good_failed=0,
            alias_matches_served=None,
            unvalidated_served=0,
            lost="nothing" if after["state"] == before["state"] else "split changed",
        )
    )
    assert response.status_code == status, response.text
    assert names in response.json()["error"]
    assert "Traceback" not in response.text and "Error:" not in response.json()["error"]
    assert after["state"] == before["state"]  # no traffic moved
    assert counted == 1  # every 4xx is counted by status


@pytest.mark.parametrize("where", ["environment", "token file"])
def test_an_empty_admin_token_is_refused_at_start(tmp_path, where, fault_report):
    env = {**os.environ, "CHASSIS_HOME": str(tmp_path / "chassis")}
    if where == "environment":
        env["CHASSIS_GATEWAY_ADMIN_TOKEN"] = ""
    else:
        token_file = tmp_path / "chassis" / "gateway" / "admin-token"
        token_file.parent.mkdir(parents=True)
        token_file.write_text("\n")
    result = subprocess.run(
        [sys.executable, "-m", "chassis_cli.main", "serve", "--model", MODEL, "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    fault_report.add(
        ScenarioResult(
            f"empty admin token ({where})",
            sent=0,
            answered=0,
            good_failed=0,
            alias_matches_served=None,
            unvalidated_served=0,
            lost="nothing",
        )
    )
    assert result.returncode != 0
    assert "admin token" in result.stderr and "has 0 characters" in result.stderr
    assert "Traceback" not in result.stderr
