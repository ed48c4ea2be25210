"""Edge mode (`chassis serve --edge --upstream URL`) with real processes: an edge gateway
reading its registry through a real `mlflow server`, and an upstream gateway (the cloud)
with a registry of its own. Stopping the mlflow server is the edge's registry outage; the
cloud keeps answering. One upstream and one mlflow server serve the whole module.

The edge's registry: `edge-local` v1 (champion). The cloud's: `edge-local` v1 and v2
(champion v2, so an answer the cloud gave for it says version 2) and `cloud-model` v1,
which the edge's registry has never heard of.
"""

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chassis.serving import verified_cache
from chassis.serving.embedded import free_port
from chassis.serving.upstream import VERSION_HEADER
from tests.fixtures.cli import chassis
from tests.fixtures.gateway import GatewayProcess
from tests.fixtures.mlflow_server import MlflowServer
from tests.fixtures.registries import home_registry
from tests.fixtures.registry_versions import register_tiny_versions

LOCAL = "edge-local"
CLOUD = "cloud-model"
SERVED_BY = "x-chassis-served-by"


@contextlib.contextmanager
def chassis_home(home: Path) -> Iterator[None]:
    previous = os.environ.get("CHASSIS_HOME")
    os.environ["CHASSIS_HOME"] = str(home)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("CHASSIS_HOME", None)
        else:
            os.environ["CHASSIS_HOME"] = previous


def registered(home: Path, champions: dict[str, tuple[int, int]]) -> Path:
    """`home` with each model's versions (count, champion), tiny real ONNX files."""
    with chassis_home(home):
        for model, (count, champion) in champions.items():
            register_tiny_versions(model, count)
            home_registry().promote(
                model, champion, expected_champion=None, actor="user:test", reason="edge test"
            )
    return home


@pytest.fixture(scope="module")
def edge_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return registered(tmp_path_factory.mktemp("edge") / "chassis", {LOCAL: (1, 1)})


@pytest.fixture(scope="module")
def server(edge_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """The edge's registry: an `mlflow server` in front of the edge home's SQLite store."""
    server = MlflowServer(
        ["--backend-store-uri", f"sqlite:///{edge_home / 'mlflow.db'}"],
        {},
        tmp_path_factory.mktemp("edge-mlflow") / "server.log",
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The cloud: a plain gateway on a registry of its own (SQLite, up throughout)."""
    home = registered(tmp_path_factory.mktemp("cloud") / "chassis", {LOCAL: (2, 2), CLOUD: (1, 1)})
    gateway = GatewayProcess(home, models=(LOCAL, CLOUD))
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def edge_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The edge's own disk (verified store and committed split), kept across its restarts."""
    return tmp_path_factory.mktemp("edge-disk")


def edge_gateway(
    edge_home: Path, server: MlflowServer, upstream: GatewayProcess, edge_dir: Path
) -> GatewayProcess:
    """The edge, told to serve both models (its registry has only one), in edge mode through
    its settings (the CLI's --edge/--upstream are the bad-input test's)."""
    return GatewayProcess(
        edge_home,
        env={
            "CHASSIS_TRACKING_URI": server.url,
            "CHASSIS_GATEWAY_LOCAL_DIR": str(edge_dir),
            "CHASSIS_GATEWAY_EDGE": "true",
            "CHASSIS_GATEWAY_UPSTREAM": upstream.url,
        },
        models=(LOCAL, CLOUD),
    )


def predict(gateway: GatewayProcess, model: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/models/{model}/predict", json={"instances": [[0.5]]}, timeout=30
    )


def readyz(gateway: GatewayProcess) -> dict[str, Any]:
    return httpx.get(f"{gateway.url}/readyz", timeout=5).json()


def edge_report(gateway: GatewayProcess) -> dict[str, object]:
    return readyz(gateway)["edge"]


def edge_model(gateway: GatewayProcess, model: str) -> dict[str, object]:
    return edge_report(gateway)["models"][model]  # type: ignore[index]


def metric(gateway: GatewayProcess, series: str) -> float | None:
    """The value of one series (`name{labels}` as exported) on /metrics; None if absent."""
    for line in httpx.get(f"{gateway.url}/metrics", timeout=5).text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if condition():
                return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


def registry_up(server: MlflowServer) -> None:
    """The edge's registry answering. The tests leave it as they end (down): an mlflow
    server takes 17 s and more to start here, so it is started only when a test needs it."""
    if server.process is None or server.process.poll() is not None:
        server.start()


def upstream_up(upstream: GatewayProcess) -> None:
    """The cloud answering (the last test stops it)."""
    if upstream.process is None or upstream.process.poll() is not None:
        upstream.start()


def test_edge_serves_what_it_holds_and_forwards_the_rest_with_the_registry_down(
    edge_home, server, upstream, edge_dir
):
    registry_up(server)
    upstream_up(upstream)
    edge = edge_gateway(edge_home, server, upstream, edge_dir)
    edge.start()
    try:
        at_start = readyz(edge)
        synced_at = edge_model(edge, LOCAL)["last_sync"]
        local = predict(edge, LOCAL)
        cloud = predict(edge, CLOUD)
        # Feedback on the upstream's answer is joined there (its id names its replica).
        feedback = httpx.post(
            f"{edge.url}/v1/models/{CLOUD}/feedback",
            json={"id": cloud.json()["ids"][0], "label": 0},
            timeout=30,
        )
        unknown = predict(edge, "held-nowhere")
        server.stop()
        failures = f'chassis_edge_sync_failures_total{{model="{LOCAL}"}}'
        wait_for(lambda: (metric(edge, failures) or 0) >= 1, 60, "a failed sync counted")
        during_local = [predict(edge, LOCAL) for _ in range(20)]
        during_cloud = [predict(edge, CLOUD) for _ in range(5)]
        during = edge_model(edge, LOCAL)
        answered = metric(
            edge, f'chassis_edge_forwarded_total{{model="{CLOUD}",outcome="answered"}}'
        )
        refused = metric(edge, 'chassis_edge_forwarded_total{model="",outcome="refused"}')
        up = metric(edge, "chassis_edge_upstream_up")
    finally:
        edge.stop()

    edge_part = at_start["edge"]
    assert edge_part["upstream"] == upstream.url and edge_part["upstream_reachable"] is True
    assert edge_part["models"][LOCAL]["source"] == "registry"
    assert edge_part["models"][LOCAL]["version"] == 1
    assert edge_part["models"][CLOUD]["source"] is None  # not held: forwarded
    assert at_start["models"][CLOUD]["state"] == "missing"  # not fatal in edge mode
    # What it holds, it answers itself.
    assert local.status_code == 200 and local.headers[VERSION_HEADER] == "1"
    assert SERVED_BY not in local.headers
    # What it does not, the upstream answers, passed through and marked.
    assert cloud.status_code == 200 and cloud.headers[SERVED_BY] == "upstream"
    assert cloud.json()["model"] == CLOUD and cloud.headers[VERSION_HEADER] == "1"
    assert unknown.status_code == 404 and unknown.headers[SERVED_BY] == "upstream"
    assert feedback.status_code == 200 and feedback.headers[SERVED_BY] == "upstream"
    assert feedback.json()["accepted"] == 1
    # The registry down: the last verified version keeps answering, the rest is forwarded.
    assert [r.status_code for r in during_local] == [200] * 20
    assert {r.headers[VERSION_HEADER] for r in during_local} == {"1"}
    assert all(SERVED_BY not in r.headers for r in during_local)
    assert [r.status_code for r in during_cloud] == [200] * 5
    assert all(r.headers[SERVED_BY] == "upstream" for r in during_cloud)
    assert during["last_sync"] == synced_at  # no sync since the outage began
    assert "Unreachable" in str(during["last_error"])
    assert isinstance(during["age_seconds"], float) and during["age_seconds"] > 0
    assert answered == 6 and refused == 1 and up == 1


def test_a_tampered_store_is_refused_and_the_model_forwarded(edge_home, server, upstream, edge_dir):
    """Restarts with the registry down serve the store, until a byte of it changes."""
    upstream_up(upstream)
    copy = verified_cache.version_dir(edge_dir / "cache", LOCAL, 1) / "model.onnx"
    if not copy.exists():  # run alone: the first test has not filled the store
        registry_up(server)
        filling = edge_gateway(edge_home, server, upstream, edge_dir)
        filling.start()
        filling.stop()
    server.stop()
    edge = edge_gateway(edge_home, server, upstream, edge_dir)
    edge.start()
    try:
        from_store = edge_model(edge, LOCAL)
        served = [predict(edge, LOCAL) for _ in range(10)]
    finally:
        edge.stop()
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))

    tampered = edge_gateway(edge_home, server, upstream, edge_dir)
    tampered.start()  # ready: the upstream answers for what it cannot serve
    try:
        wait_for(
            lambda: "local copy changed" in str(readyz(tampered)["models"][LOCAL]),
            60,
            "the refusal on /readyz",
        )
        forwarded = [predict(tampered, LOCAL) for _ in range(5)]
        upstream.stop()
        wait_for(
            lambda: edge_report(tampered)["upstream_reachable"] is False,
            30,
            "the upstream seen down",
        )
        neither = predict(tampered, LOCAL)
        unreachable = metric(
            tampered, f'chassis_edge_forwarded_total{{model="{LOCAL}",outcome="unreachable"}}'
        )
        up = metric(tampered, "chassis_edge_upstream_up")
    finally:
        tampered.stop()

    assert from_store["source"] == "store" and from_store["version"] == 1
    assert [r.status_code for r in served] == [200] * 10
    assert {r.headers[VERSION_HEADER] for r in served} == {"1"}
    # The changed copy never answers: the cloud's champion (v2) does, marked as such.
    assert [r.status_code for r in forwarded] == [200] * 5
    assert all(r.headers[SERVED_BY] == "upstream" for r in forwarded)
    assert {r.headers[VERSION_HEADER] for r in forwarded} == {"2"}
    # Neither a verified copy nor an upstream: 503 with both reasons, counted.
    assert neither.status_code == 503
    error = neither.json()["error"]
    assert "local copy changed" in error and upstream.url in error
    assert unreachable == 1 and up == 0


@pytest.mark.parametrize(
    ("upstream_option", "message"),
    [
        ((), "--edge needs --upstream"),
        (("--upstream", "ftp://cloud:8000"), "'ftp://cloud:8000' is not a gateway URL"),
        (("--upstream", "http://127.0.0.1:{port}"), "does not answer"),
    ],
)
def test_bad_upstream_stops_serve_with_one_line(tmp_path, upstream_option, message):
    port = free_port()
    options = [o.format(port=port) for o in upstream_option]
    result = chassis(
        "serve", "--model", LOCAL, "--edge", *options, env={"CHASSIS_HOME": str(tmp_path)}
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    if "{port}" in "".join(upstream_option):
        assert f"127.0.0.1:{port}" in lines[0]
