"""Where a running `chassis ui` serves: the record other processes find the UIs by.

`chassis ui` may serve on ports given as options, which no other process can read from its
own settings: a `chassis` command in another shell, a flow run a Prefect worker starts. So
while it runs it records its addresses in `<home>/ui.json` (written whole, removed when it
stops), and every process over the same home reads them there unless its own settings name
the place (`ChassisSettings.mlflow_ui_url`, `prefect_ui_url`, `prefect_api_url`). A record
is believed only while its process lives and its servers answer, so one left behind by a
`chassis ui` killed with SIGKILL (or a machine that rebooted) changes nothing.
"""

import json
import os
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

RECORD_NAME = "ui.json"


@dataclass(frozen=True)
class RunningUi:
    """The addresses one `chassis ui` serves, as processes on this machine reach them."""

    pid: int
    prefect_ui_url: str  # what a browser opens (PREFECT_UI_URL of its server)
    prefect_api_url: str  # what a process on this machine reports runs to
    mlflow_ui_url: str  # its MLflow server, or the remote tracking server it shows


def record_path(home: Path) -> Path:
    return home / RECORD_NAME


def write_record(home: Path, ui: RunningUi) -> Path:
    """Writes the record whole: a reader sees the previous file or this one, never half."""
    path = record_path(home)
    draft = path.with_name(f".{path.name}.{ui.pid}")
    draft.write_text(json.dumps(asdict(ui), indent=2) + "\n")
    draft.replace(path)
    return path


def remove_record(home: Path, pid: int) -> None:
    """Removes the record if it is `pid`'s (never another `chassis ui`'s)."""
    record = read_record(home)
    if record is not None and record.pid == pid:
        record_path(home).unlink(missing_ok=True)


def read_record(home: Path) -> RunningUi | None:
    """The record as written, or None if there is none or it is not one (a stray file)."""
    try:
        fields = json.loads(record_path(home).read_text())
        return RunningUi(
            pid=int(fields["pid"]),
            prefect_ui_url=str(fields["prefect_ui_url"]).rstrip("/"),
            prefect_api_url=str(fields["prefect_api_url"]).rstrip("/"),
            mlflow_ui_url=str(fields["mlflow_ui_url"]).rstrip("/"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running_ui(home: Path) -> RunningUi | None:
    """The `chassis ui` serving over `home`, if its record is current: its process is alive
    and both servers answer their health checks (a pid can be reused; a server can hang)."""
    record = read_record(home)
    if record is None or not process_alive(record.pid):
        return None
    if not answers(f"{record.prefect_api_url}/health"):
        return None
    if not answers(f"{record.mlflow_ui_url}/health"):
        return None
    return record


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: it exists
    return True


# Generous for loopback: a busy 2-core machine can take a second to answer, and a record
# wrongly thought stale sends links to the default ports.
HEALTH_TIMEOUT_SECONDS = 2.0


def answers(url: str) -> bool:
    """Whether `url` answers 200 (a server's health check)."""
    # No proxy: the servers are on this machine, and an HTTP_PROXY in the environment would
    # otherwise be asked for them.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=HEALTH_TIMEOUT_SECONDS) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False
