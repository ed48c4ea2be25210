"""The guard of tests/unit/conftest.py: a Python subprocess a unit test starts cannot listen.

Each child here writes to a log of its own, so the guard of this very test stays quiet.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

STDLIB_SERVER = "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()"
UVLOOP_SERVER = (
    "import asyncio, uvloop; loop = uvloop.new_event_loop(); "
    "loop.run_until_complete(loop.create_server(asyncio.Protocol, '127.0.0.1', 0))"
)


@pytest.mark.parametrize(
    ("code", "entry_point"),
    [
        (STDLIB_SERVER, "socket.socket.listen"),
        (UVLOOP_SERVER, "uvloop.Loop.create_server"),  # uvicorn's loop when installed
    ],
    ids=["stdlib", "uvloop"],
)
def test_a_subprocess_that_starts_a_server_is_refused_and_named(code, entry_point, tmp_path):
    if "uvloop" in code:
        pytest.importorskip("uvloop")
    log = tmp_path / "started.log"
    child = run(code, log)
    assert child.returncode != 0
    assert "OSError: unit tests start no servers" in child.stderr
    assert f"started a server ({entry_point})" in log.read_text()


def test_a_subprocess_that_serves_nothing_runs_as_usual(tmp_path):
    log = tmp_path / "started.log"
    child = run("import socket; socket.socket().bind(('127.0.0.1', 0)); print('bound')", log)
    assert child.returncode == 0 and child.stdout == "bound\n", child.stderr
    assert not log.exists()


def run(code: str, log: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_SERVERS_LOG": str(log)}  # PYTHONPATH: as the guard set it
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
