"""Hermetic test environment: temporary HOME and state, telemetry off, no network.

This runs before any test module imports Prefect, MLflow, onnxruntime or Great Expectations,
so the environment below is what those libraries see when they first read it.
"""

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_SESSION_ROOT = Path(tempfile.mkdtemp(prefix="chassis-tests-"))
for _name in ("home", "prefect", "xdg-cache", "xdg-config", "xdg-data"):
    (_SESSION_ROOT / _name).mkdir()

os.environ.update(
    {
        "HOME": str(_SESSION_ROOT / "home"),
        "XDG_CACHE_HOME": str(_SESSION_ROOT / "xdg-cache"),
        "XDG_CONFIG_HOME": str(_SESSION_ROOT / "xdg-config"),
        "XDG_DATA_HOME": str(_SESSION_ROOT / "xdg-data"),
        "PREFECT_HOME": str(_SESSION_ROOT / "prefect"),
        "CHASSIS_HOME": str(_SESSION_ROOT / "chassis"),
    }
)
for _name in list(os.environ):
    # A developer's own settings must not leak into the tests.
    if _name.startswith("CHASSIS_") and _name != "CHASSIS_HOME":
        del os.environ[_name]
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)
if "PYTEST_XDIST_WORKER" in os.environ:
    # Under pytest-xdist every core already runs a worker: torch's OpenMP pool (one thread per
    # core by default) in each worker and its subprocesses would oversubscribe the cores, and
    # its spinning threads then slow everything (the MiniLM distillation beside one busy core:
    # 120 s with two threads, 58 s with one). A count set by hand still wins.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from chassis.quiet import apply_quiet_environment  # noqa: E402

apply_quiet_environment()


@pytest.fixture
def chassis_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh CHASSIS_HOME per test: its own MLflow database, artifacts and registry."""
    home = tmp_path / "chassis"
    monkeypatch.setenv("CHASSIS_HOME", str(home))
    yield home


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """One real temporary Prefect API server for the whole session (integration and fault
    tests share it: a fresh server takes ~20 s on a 2-core machine)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: the controller, a worker done
@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A local S3 server (moto, over HTTP on loopback) with one bucket: AWS cannot be
    reached from here."""
    import boto3
    from moto.server import ThreadedMotoServer

    from tests.fixtures.s3 import BUCKET, boto_credentials

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, **boto_credentials()).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, s3_endpoint: str, chassis_home: Path) -> str:
    """The environment that points Chassis (and boto3) at the local S3 server."""
    from tests.fixtures.s3 import CREDENTIALS

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CHASSIS_S3_ENDPOINT_URL", s3_endpoint)
    for name in ("MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    return s3_endpoint


def pytest_testnodedown(node: Any, error: object) -> None:
    from tests.fixtures.fault_report import REPORT

    REPORT.merge(getattr(node, "workeroutput", {}).get("fault_rows", []))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The fault table is written once, by the process that saw every scenario (a worker
    hands its rows to the xdist controller); the temporary HOME and state go away."""
    import shutil

    from tests.fixtures.fault_report import REPORT

    worker_output: dict[str, Any] | None = getattr(session.config, "workeroutput", None)
    if worker_output is not None:
        worker_output["fault_rows"] = REPORT.exported()
    else:
        REPORT.write()
    shutil.rmtree(_SESSION_ROOT, ignore_errors=True)
