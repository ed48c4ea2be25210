"""Unit tests start no servers, so `make test-fast` runs them in seconds on any machine.

A unit test whose code starts a server, in this process or in a Python subprocess it runs
(the CLI, a flow that starts Prefect's temporary API server, `mlflow server`), fails and
names it. Tests that need a server belong in tests/integration.
"""

import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.unit.no_servers.no_servers_guard import listening_entry_points, refusal, where

NO_SERVERS = Path(__file__).parent / "no_servers"  # its sitecustomize guards subprocesses


def installed_uvloop() -> ModuleType | None:
    try:
        import uvloop
    except ImportError:  # not installed: nothing listens through it
        return None
    return uvloop


@pytest.fixture(autouse=True)
def no_servers(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    started: list[str] = []
    for owner, name in listening_entry_points(installed_uvloop()):
        refuse = refusal(started.append, "the test itself", where(owner, name))
        monkeypatch.setattr(owner, name, refuse)
    log = tmp_path_factory.mktemp("no-servers") / "started.log"
    monkeypatch.setenv("NO_SERVERS_LOG", str(log))
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(NO_SERVERS), path])))
    yield
    if log.exists():
        started += log.read_text().splitlines()
    assert not started, "a unit test started a server (move it to tests/integration): " + (
        "; ".join(started)
    )
