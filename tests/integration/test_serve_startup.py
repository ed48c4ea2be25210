"""`chassis serve` for a model it cannot serve, as a user starts it against a real MLflow
registry: by default it stops at once with one error line naming the model and why, and
nothing listens; with --allow-missing-models it serves the others, names the missing one
on /readyz and in metrics, and serves it once it is released, without a restart."""

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from chassis.digests import sha256_file
from chassis.registry import tags
from chassis.serving.embedded import free_port
from tests.fixtures.cli import chassis
from tests.fixtures.fault_gateway import home_environment, release_into
from tests.fixtures.gateway import MODEL, GatewayProcess, log_events
from tests.fixtures.registries import home_registry
from tests.fixtures.registry_versions import stored_onnx

ROW = [0.5, -1.0, 2.0, 0.0]
OTHER = "test-other"  # tests.fixtures.specs:other, released by one test below
# What "at once" means here: the command's own start (imports, MLflow's store) and one
# look at the registry; it never waits for the model to appear.
FAIL_FAST_SECONDS = 30


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """test-blobs v1 champion (gated and signed) in a SQLite store."""
    home = tmp_path_factory.mktemp("serve-startup") / "chassis"
    release_into(home, "tests.fixtures.specs:good")
    yield home


def serve(home: Path, tmp_path: Path, *models: str) -> tuple[int, str, float, int]:
    """`chassis serve` run to its end: exit code, stderr, seconds taken, and its port."""
    port = free_port()
    arguments = [argument for model in models for argument in ("--model", model)]
    env = {"CHASSIS_HOME": str(home), "CHASSIS_GATEWAY_LOCAL_DIR": str(tmp_path / "local")}
    started = time.monotonic()
    result = chassis("serve", *arguments, "--port", str(port), env=env, timeout=120)
    return result.returncode, result.stderr, time.monotonic() - started, port


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_a_model_that_does_not_exist_stops_serve_at_once_naming_it(home, tmp_path):
    code, stderr, seconds, port = serve(home, tmp_path, MODEL, "nope")
    assert code == 1
    line = one_error_line(stderr)
    assert line.startswith("error: cannot serve 'nope': no registered model named 'nope'")
    assert MODEL not in line  # the good model is not blamed
    assert seconds < FAIL_FAST_SECONDS, f"took {seconds:.1f} s"
    assert not listening(port)


def test_a_model_without_champion_stops_serve_naming_it(home, tmp_path):
    with home_environment(home):
        home_registry().client.create_registered_model("unpromoted")
    code, stderr, seconds, port = serve(home, tmp_path, "unpromoted")
    assert code == 1
    line = one_error_line(stderr)
    assert line.startswith("error: cannot serve 'unpromoted': 'unpromoted' has no champion alias")
    assert seconds < FAIL_FAST_SECONDS, f"took {seconds:.1f} s"
    assert not listening(port)


def test_a_champion_with_tampered_bytes_stops_serve_naming_both_digests(home, tmp_path):
    with home_environment(home):
        stored = stored_onnx(MODEL, 1)
        recorded = home_registry().version_tags(MODEL, 1)[tags.TAG_ONNX_SHA256]
    original = stored.read_bytes()
    stored.write_bytes(original[:-8] + b"tampered")
    try:
        tampered = sha256_file(stored)
        code, stderr, seconds, port = serve(home, tmp_path, MODEL)
    finally:
        stored.write_bytes(original)
    assert code == 1
    line = one_error_line(stderr)
    assert line.startswith(f"error: cannot serve '{MODEL}': {MODEL} v1: model.onnx does not match")
    assert f"expected sha256 {recorded}, actual {tampered}" in line
    # The log (text, the default) names the refusal with both digests as fields.
    [refused] = log_events(stderr, "version.refused")
    assert (refused["model"], refused["version"], refused["check"]) == (MODEL, "1", "sha256")
    assert (refused["expected_sha256"], refused["found_sha256"]) == (recorded, tampered)
    assert seconds < FAIL_FAST_SECONDS, f"took {seconds:.1f} s"
    assert not listening(port)


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll `condition` (a gateway not listening yet counts as false)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


def predict(gateway: GatewayProcess, model: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/models/{model}/predict", json={"instances": [ROW]}, timeout=10
    )


def test_allowed_missing_model_is_reported_while_the_others_serve_then_served_once_released(
    home, tmp_path
):
    gateway = GatewayProcess(
        home,
        models=(MODEL, OTHER),
        env={
            "CHASSIS_GATEWAY_ALLOW_MISSING_MODELS": "true",
            "CHASSIS_GATEWAY_LOCAL_DIR": str(tmp_path / "local"),
        },
    )
    gateway.start()  # /readyz says 200: the good model serves
    try:
        good = [predict(gateway, MODEL) for _ in range(20)]
        missing = predict(gateway, OTHER)
        readiness = httpx.get(f"{gateway.url}/readyz", timeout=5)
        metrics = httpx.get(f"{gateway.url}/metrics", timeout=5).text

        release_into(home, "tests.fixtures.specs:other")  # registered and promoted
        wait_for(
            lambda: (
                httpx.get(f"{gateway.url}/readyz", timeout=5).json()["models"][OTHER]["state"]
                == "serving"
            ),
            60,
            f"{OTHER} to be served",
        )
        released = predict(gateway, OTHER)
        after = httpx.get(f"{gateway.url}/readyz", timeout=5).json()
        still_good = predict(gateway, MODEL)
        assert gateway.process is not None and gateway.process.poll() is None  # no restart
    finally:
        gateway.stop()

    assert [r.status_code for r in good] == [200] * 20
    assert missing.status_code == 503
    assert f"no registered model named '{OTHER}'" in missing.json()["error"]
    assert readiness.status_code == 200
    body = readiness.json()
    assert body["ready"] is True
    assert body["models"][MODEL] == {"state": "serving", "version": 1}
    assert body["models"][OTHER]["state"] == "missing"
    assert f"no registered model named '{OTHER}'" in body["models"][OTHER]["reason"]
    assert OTHER in body["reason"]
    assert f'chassis_model_serving{{model="{OTHER}",state="missing"}} 0.0' in metrics
    assert f'chassis_model_serving{{model="{MODEL}",state="serving"}} 1.0' in metrics

    assert released.status_code == 200 and released.json()["version"] == 1
    assert after["models"][OTHER] == {"state": "serving", "version": 1}
    assert after["reason"] == "ready"
    assert still_good.status_code == 200


def test_a_model_whose_files_do_not_come_never_makes_another_answer_503(home, tmp_path):
    """By default too: a model the artifact store does not answer for is retried (waiting
    may fix it), the gateway stays up and not ready, and the other model answers."""
    with home_environment(home):
        if OTHER not in {m.name for m in home_registry().client.search_registered_models()}:
            release_into(home, "tests.fixtures.specs:other")
        files = stored_onnx(OTHER, 1).parent
    away = files.with_name(files.name + ".away")
    files.rename(away)
    gateway = GatewayProcess(
        home, models=(MODEL, OTHER), env={"CHASSIS_GATEWAY_LOCAL_DIR": str(tmp_path / "local")}
    )
    gateway.launch()
    try:
        wait_for(
            lambda: "retrying" in httpx.get(f"{gateway.url}/readyz", timeout=5).text,
            60,
            f"{OTHER}'s reason",
        )
        waiting = httpx.get(f"{gateway.url}/readyz", timeout=5)
        good = [predict(gateway, MODEL) for _ in range(20)]
        other = predict(gateway, OTHER)
        away.rename(files)
        wait_for(
            lambda: httpx.get(f"{gateway.url}/readyz", timeout=5).status_code == 200,
            90,
            "ready once the files are back",
        )
        served = predict(gateway, OTHER)
    finally:
        gateway.stop()
        if away.exists():
            away.rename(files)
    assert waiting.status_code == 503
    assert waiting.json()["models"][OTHER]["state"] == "retrying"
    assert waiting.json()["models"][MODEL] == {"state": "serving", "version": 1}
    assert [r.status_code for r in good] == [200] * 20
    assert other.status_code == 503 and f"{OTHER} v1 has no model.onnx" in other.text
    assert served.status_code == 200


def test_a_registry_that_never_answers_stops_serve_at_its_startup_timeout(home, tmp_path):
    """Without a limit the gateway waits for the registry (a pod restarted during an
    outage: tests/faults/test_registry_outages.py); with one it stops, naming why."""
    port = free_port()
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {
        "CHASSIS_HOME": str(home),
        "CHASSIS_TRACKING_URI": nobody,
        "CHASSIS_GATEWAY_LOCAL_DIR": str(tmp_path / "local"),  # no verified copy to serve
        "CHASSIS_GATEWAY_STARTUP_TIMEOUT_SECONDS": "5",
    }
    started = time.monotonic()
    result = chassis("serve", "--model", MODEL, "--port", str(port), env=env, timeout=120)
    seconds = time.monotonic() - started
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert line.startswith(f"error: cannot serve '{MODEL}' within the 5 s startup timeout: ")
    assert "registry unreachable" in line
    assert seconds < FAIL_FAST_SECONDS + 5, f"took {seconds:.1f} s"
    assert not listening(port)
