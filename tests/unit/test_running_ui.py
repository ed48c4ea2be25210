"""Where the UIs are: `chassis ui`'s record and the rules every other process follows to
find them (explicit settings win; a record counts only while its process and servers are
there). No server runs here: a server's answer is stood in for where a rule needs one."""

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from chassis import running_ui
from chassis.errors import ChassisError
from chassis.running_ui import RunningUi, read_record, remove_record, write_record
from chassis.settings import ChassisSettings
from chassis_cli import context
from chassis_cli.ui import refuse_a_second_ui

RECORDED = RunningUi(
    pid=os.getpid(),  # a process that is alive: this one
    prefect_ui_url="http://127.0.0.1:4300",
    prefect_api_url="http://127.0.0.1:4300/api",
    mlflow_ui_url="http://127.0.0.1:5100",
)


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every health check stands in for servers that answer; the URLs asked are kept."""
    urls: list[str] = []

    def answers(url: str) -> bool:
        urls.append(url)
        return True

    monkeypatch.setattr(running_ui, "answers", answers)
    return urls


@pytest.fixture
def home(chassis_home: Path) -> Path:
    chassis_home.mkdir(parents=True)
    return chassis_home


def gone_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port held without listening: a connection there is refused at once."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])


def test_the_record_is_written_whole_and_read_back(home: Path) -> None:
    path = write_record(home, RECORDED)
    assert path == home / "ui.json"
    assert read_record(home) == RECORDED
    assert [p.name for p in home.iterdir()] == ["ui.json"]  # no draft left beside it


def test_a_stray_or_broken_record_is_no_record(home: Path) -> None:
    assert read_record(home) is None
    (home / "ui.json").write_text('{"pid": 12')
    assert read_record(home) is None
    (home / "ui.json").write_text('{"pid": 12}')
    assert read_record(home) is None


def test_a_ui_removes_only_its_own_record(home: Path) -> None:
    write_record(home, RECORDED)
    remove_record(home, RECORDED.pid + 1)
    assert read_record(home) == RECORDED
    remove_record(home, RECORDED.pid)
    assert not (home / "ui.json").exists()


def test_a_record_whose_process_is_gone_is_ignored(home: Path, asked: list[str]) -> None:
    write_record(home, replace(RECORDED, pid=gone_pid()))
    assert running_ui.running_ui(home) is None
    assert asked == []  # the dead process settles it


def test_a_record_whose_servers_do_not_answer_is_ignored(home: Path, closed_port: int) -> None:
    # Its process lives (a reused pid, say) but nothing answers at the recorded addresses.
    dead = f"http://127.0.0.1:{closed_port}"
    write_record(home, RunningUi(os.getpid(), dead, f"{dead}/api", dead))
    assert running_ui.running_ui(home) is None


def test_a_current_record_has_both_servers_checked(home: Path, asked: list[str]) -> None:
    write_record(home, RECORDED)
    assert running_ui.running_ui(home) == RECORDED
    assert asked == ["http://127.0.0.1:4300/api/health", "http://127.0.0.1:5100/health"]


def test_links_and_runs_go_to_the_running_ui_on_its_own_ports(home: Path, asked: list[str]) -> None:
    write_record(home, RECORDED)
    settings = ChassisSettings()
    assert settings.mlflow_ui_url() == "http://127.0.0.1:5100"
    assert settings.prefect_urls() == ("http://127.0.0.1:4300", "http://127.0.0.1:4300/api")
    assert settings.prefect_ui_url() == "http://127.0.0.1:4300"
    # What `chassis ui` itself serves with these settings is unchanged by the record.
    assert settings.served_mlflow_ui_url() == "http://127.0.0.1:5000"


def test_explicit_ports_win_over_the_record(
    home: Path, asked: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_record(home, RECORDED)
    monkeypatch.setenv("CHASSIS_MLFLOW_UI_PORT", "5200")
    monkeypatch.setenv("CHASSIS_PREFECT_UI_PORT", "4400")
    settings = ChassisSettings()
    assert settings.mlflow_ui_url() == "http://127.0.0.1:5200"
    assert settings.prefect_urls() == ("http://127.0.0.1:4400", "http://127.0.0.1:4400/api")
    # So does an option of `chassis ui` (it assigns the setting).
    settings = ChassisSettings()
    settings.mlflow_ui_port = 5300
    assert settings.mlflow_ui_url() == "http://127.0.0.1:5300"


def test_a_remote_tracking_server_is_its_own_ui(
    home: Path, asked: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_record(home, RECORDED)
    monkeypatch.setenv("CHASSIS_TRACKING_URI", "http://mlflow.internal:5000/")
    assert ChassisSettings().mlflow_ui_url() == "http://mlflow.internal:5000"


def test_without_a_current_record_the_defaults_stand(home: Path) -> None:
    write_record(home, replace(RECORDED, pid=gone_pid()))
    settings = ChassisSettings()
    assert settings.mlflow_ui_url() == "http://127.0.0.1:5000"
    assert settings.prefect_urls() == ("http://127.0.0.1:4200", "http://127.0.0.1:4200/api")


def test_commands_report_their_runs_to_the_recorded_prefect_server(
    home: Path, asked: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_record(home, replace(RECORDED, prefect_ui_url="https://p.example"))
    for name in ("PREFECT_API_URL", "PREFECT_UI_URL"):
        # Set, then deleted: monkeypatch records a variable only if it was there, and the
        # command below sets both in this process; unrecorded, they outlived the test and
        # sent a later test's run links (same pytest-xdist worker) to https://p.example.
        monkeypatch.setenv(name, "unset by this test")
        monkeypatch.delenv(name)
    probed: list[str] = []
    monkeypatch.setattr(context, "prefect_answers", lambda url, timeout: probed.append(url) or True)
    context.use_running_prefect_server(ChassisSettings())
    assert probed == ["http://127.0.0.1:4300/api"]
    assert os.environ["PREFECT_API_URL"] == "http://127.0.0.1:4300/api"
    # The UI address the server was given (a proxy in front) is where run links point.
    assert os.environ["PREFECT_UI_URL"] == "https://p.example"


def test_a_prefect_api_url_of_the_users_wins(
    home: Path, asked: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_record(home, RECORDED)
    monkeypatch.setenv("PREFECT_API_URL", "http://elsewhere:4200/api")
    context.use_running_prefect_server(ChassisSettings())
    assert os.environ["PREFECT_API_URL"] == "http://elsewhere:4200/api"
    assert asked == []


def test_a_second_ui_over_the_same_home_is_refused(home: Path, asked: list[str]) -> None:
    write_record(home, replace(RECORDED, pid=os.getppid()))
    with pytest.raises(ChassisError, match=rf"already running over {home} \(pid {os.getppid()}"):
        refuse_a_second_ui(ChassisSettings())
