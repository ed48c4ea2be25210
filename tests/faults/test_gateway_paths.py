"""Traversal and odd names in request paths and model names, against a real gateway.

The request targets are sent as raw bytes on a socket: an HTTP client would normalise dot
segments and percent-encoding before they reach the gateway. Every answer must be a 4xx
(the application's own as JSON naming the problem), none a 5xx; no file may appear or
change outside the gateway's own directories; good traffic is served before and after;
the client's text never becomes a metric label.
"""

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from chassis.errors import ChassisError
from tests.fixtures.fault_gateway import admin_headers, home_environment, release_into
from tests.fixtures.fault_report import ScenarioResult
from tests.fixtures.gateway import MODEL, GatewayProcess
from tests.fixtures.registries import home_registry

GOOD = orjson.dumps({"instances": [[0.5, -1.0, 2.0, 0.0]]})


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's folder: the home is one level down, so a name climbing out of the
    gateway's directories lands in here, where the snapshots look."""
    return tmp_path_factory.mktemp("faults-paths")


@pytest.fixture(scope="module")
def home(root: Path) -> Path:
    home = root / "chassis"
    release_into(home, "tests.fixtures.specs:good")
    return home


@pytest.fixture(scope="module")
def gateway(home: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(home)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def auth(home: Path) -> dict[str, str]:
    return admin_headers(home)


def is_gateway_file(root: Path, path: Path) -> bool:
    """Files the gateway and the release legitimately write: the gateway's directory (cache,
    state, token), its prediction log, its process logs and MLflow's store."""
    relative = path.relative_to(root / "chassis").parts if path.is_relative_to(root) else ()
    if not relative:
        return False
    return (
        relative[0] in {"gateway", "predictions", "artifacts", "prefect"}
        or relative[0].startswith(("gateway-", "mlflow.db"))
        or relative[0].endswith(".log")
    )


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under `root` the gateway has no business writing."""
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in root.rglob("*")
        if path.is_file() and not is_gateway_file(root, path)
    }


def raw_request(port: int, method: bytes, target: bytes, headers: bytes = b"") -> tuple[int, bytes]:
    """(status, body) of one request sent byte for byte; the connection is closed after it."""
    request = (
        method + b" " + target + b" HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        b"content-type: application/json\r\nconnection: close\r\n"
        + headers
        + b"content-length: %d\r\n\r\n" % len(GOOD)
        + GOOD
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    return int(status_line.split()[1]), body


# (id, method, target, expected status, what the JSON error must say)
TARGETS = [
    ("dot-segments", b"POST", b"/v1/models/../../etc/passwd/predict", 404, "no route"),
    (
        "encoded-dot-segments",
        b"POST",
        b"/v1/models/%2e%2e%2f%2e%2e%2fetc%2fpasswd/predict",
        404,
        "no route",
    ),
    ("encoded-dotdot-name", b"POST", b"/v1/models/%2e%2e/predict", 404, "no model named '..'"),
    (
        "slash-in-name",
        b"POST",
        b"/v1/models/test-blobs%2f..%2f..%2fx/predict",
        404,
        "no route",
    ),
    ("encoded-nul", b"POST", b"/v1/models/test-blobs%00/predict", 404, "no model named"),
    ("backslashes", b"POST", b"/v1/models/..%5c..%5cx/predict", 404, "no model named"),
    ("long-8KiB", b"POST", b"/v1/models/" + b"a" * 8192 + b"/predict", 404, "no model named"),
    (
        "encoded-unicode",
        b"POST",
        b"/v1/models/%E2%98%83%F0%9F%92%A5/predict",
        404,
        "no model named",
    ),
    ("invalid-utf8", b"POST", b"/v1/models/%ff%fe/predict", 404, "no model named"),
    (
        "preview-dot-name",
        b"POST",
        b"/v1/models/%2e%2e/preview/predict",
        404,
        "no model named '..'",
    ),
    (
        "admin-encoded-traversal",
        b"POST",
        b"/admin/models/%2e%2e%2f%2e%2e%2fetc/rollout",
        404,
        "unknown admin route",
    ),
    ("admin-dotdot-sync", b"POST", b"/admin/models/%2e%2e/sync", 404, "no model named '..'"),
    ("admin-dotdot-status", b"GET", b"/admin/models/..", 404, "no model named '..'"),
]


@pytest.mark.parametrize(
    ("method", "target", "status", "names"),
    [case[1:] for case in TARGETS],
    ids=[case[0] for case in TARGETS],
)
def test_odd_request_paths_get_a_json_4xx_and_write_nothing_outside(
    gateway, auth, root, fault_report, request, method, target, status, names
):
    before = snapshot(root)
    header = b"authorization: " + auth["Authorization"].encode() + b"\r\n"
    answered, body = raw_request(gateway.port, method, target, header)
    good = httpx.post(
        f"{gateway.url}/v1/models/{MODEL}/predict",
        content=GOOD,
        headers={"content-type": "application/json"},
    ).status_code
    changed = sorted(set(snapshot(root).items()) ^ set(before.items()))
    fault_report.add(
        ScenarioResult(
            f"odd path: {request.node.callspec.id}",
            sent=2,
            answered=2,
            good_failed=int(good != 200),
            alias_matches_served=None,
            unvalidated_served=0,
            lost="nothing" if not changed else f"files written outside: {changed[:3]}",
        )
    )
    assert answered == status, body[:300]
    error = orjson.loads(body)
    assert error["status"] == status and names in error["error"], error
    assert good == 200
    assert changed == []


@pytest.mark.parametrize(
    ("target", "status"),
    [
        (b"/v1/models/test\x00blobs/predict", 400),  # a raw NUL is no valid request line
        ("/v1/models/\u2603/predict".encode(), 400),  # raw UTF-8: not a valid request line
    ],
    ids=["raw-nul", "raw-utf8"],
)
def test_request_lines_http_refuses_get_a_4xx_before_the_application(
    gateway, root, fault_report, request, target, status
):
    """These never reach the application: uvicorn's parser refuses them (400) with a plain
    text answer, which is all HTTP allows before routing."""
    before = snapshot(root)
    answered, body = raw_request(gateway.port, b"POST", target)
    good = httpx.post(
        f"{gateway.url}/v1/models/{MODEL}/predict",
        content=GOOD,
        headers={"content-type": "application/json"},
    ).status_code
    changed = sorted(set(snapshot(root).items()) ^ set(before.items()))
    fault_report.add(
        ScenarioResult(
            f"odd path: {request.node.callspec.id}",
            sent=2,
            answered=2,
            good_failed=int(good != 200),
            alias_matches_served=None,
            unvalidated_served=0,
            lost="nothing" if not changed else f"files written outside: {changed[:3]}",
        )
    )
    assert answered == status, body[:300]
    assert good == 200
    assert changed == []


def test_a_request_line_over_the_head_limit_is_refused_with_431(gateway, fault_report):
    target = b"/v1/models/" + b"a" * (40 * 1024) + b"/predict"
    answered, body = raw_request(gateway.port, b"POST", target)
    fault_report.add(
        ScenarioResult(
            "odd path: 40 KiB request line (head limit 32 KiB)",
            sent=1,
            answered=1,
            good_failed=0,
            alias_matches_served=None,
            unvalidated_served=0,
            lost="nothing",
        )
    )
    assert answered == 431, (answered, len(body))


def test_odd_names_never_become_metric_labels(gateway, auth):
    """Every odd path once more, then /metrics: it names only the served model (a label per
    client-chosen name would grow without bound)."""
    header = b"authorization: " + auth["Authorization"].encode() + b"\r\n"
    statuses = [raw_request(gateway.port, case[1], case[2], header)[0] for case in TARGETS]
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert statuses == [case[3] for case in TARGETS]  # each was answered (and counted)
    models = {
        part.split('"')[1]
        for line in metrics.splitlines()
        if not line.startswith("#")
        for part in line.split("{", 1)[1:]
        if part.startswith('model="')
    }
    assert models <= {MODEL, ""}, models
    assert "passwd" not in metrics and "..\\" not in metrics


ESCAPES = ["../../../escaped", "..", "../x"]


@pytest.mark.parametrize("name", ESCAPES)
def test_serve_with_a_traversal_model_name_writes_nothing_outside_and_never_gets_ready(
    home, root, fault_report, name
):
    before = snapshot(root)
    local = {"CHASSIS_GATEWAY_LOCAL_DIR": str(home / "gateway" / f"serve-{len(name)}")}
    # By default the name is refused at start: one error line naming it, exit 1.
    refusing = GatewayProcess(home, models=(name,), env=local)
    refusing.launch()
    assert refusing.process is not None
    assert refusing.process.wait(timeout=60) == 1
    refusal = (home / f"gateway-{refusing.port}.log").read_text()
    assert f"error: cannot serve {name!r}: no registered model named {name!r}" in refusal
    assert "Traceback" not in refusal
    # Allowed to be missing, the gateway listens: what it answers is checked below.
    process = GatewayProcess(
        home, models=(name,), env={**local, "CHASSIS_GATEWAY_ALLOW_MISSING_MODELS": "true"}
    )
    process.launch()
    assert process.process is not None
    ready: dict[str, object] = {}
    predict = 0
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.process.poll() is None:
            try:
                answer = httpx.get(f"{process.url}/readyz", timeout=2)
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            ready = answer.json()
            if ready["reason"] != "loading models":  # the load finished, or failed
                break
            time.sleep(0.2)
        if process.process.poll() is None:
            predict = httpx.post(
                f"{process.url}/v1/models/{MODEL}/predict",
                content=GOOD,
                headers={"content-type": "application/json"},
            ).status_code
    finally:
        process.stop()
    changed = sorted(set(snapshot(root).items()) ^ set(before.items()))
    escaped = [p for p in root.rglob("*escaped*")] + [p for p in root.rglob("x.rollout.json")]
    fault_report.add(
        ScenarioResult(
            f"chassis serve --model {name!r}",
            sent=2,
            answered=1 + bool(predict),
            good_failed=0,
            alias_matches_served=None,
            unvalidated_served=0,
            lost="nothing" if not changed else f"files written outside: {changed[:3]}",
        )
    )
    assert changed == [] and escaped == []
    assert ready.get("ready") is False, ready
    assert name in str(ready["reason"]) and "Traceback" not in str(ready["reason"]), ready
    # Nothing is served: not the model it was asked for, not another one by accident.
    assert predict == 404


@pytest.mark.parametrize("name", ["../../tmp/x", "../escaped", "..", "a/../../b"])
def test_fetching_a_version_by_a_traversal_name_writes_nothing_outside_the_cache(
    home, root, fault_report, name
):
    before = snapshot(root)
    cache = home / "gateway" / "fetch-cache"
    with home_environment(home), pytest.raises(ChassisError) as refused:
        home_registry().fetch_version(name, 1, cache / name)
    changed = sorted(set(snapshot(root).items()) ^ set(before.items()))
    outside = [
        p
        for p in root.rglob("*")
        if p.name in {"x", "escaped", "b"} and not p.is_relative_to(cache)
    ]
    fault_report.add(
        ScenarioResult(
            f"fetch_version({name!r}, 1)",
            sent=0,
            answered=0,
            good_failed=0,
            alias_matches_served=None,
            unvalidated_served=0,
            lost="nothing" if not (changed or outside) else f"written: {changed[:3]} {outside}",
        )
    )
    assert changed == [] and outside == []
    assert repr(name) in str(refused.value)  # refused, naming the name it was given


def test_the_registry_refuses_to_register_a_traversal_name(home):
    """The guard behind the two tests above: such a name never names a version, so no
    cache path is built from it (MLflow refuses '/' and leading dots in model names)."""
    import mlflow
    import mlflow.exceptions

    with home_environment(home):
        client = home_registry().client
        for name in ("../../tmp/x", "..", "a/b"):
            with pytest.raises(mlflow.exceptions.MlflowException):
                client.create_registered_model(name)
