"""`chassis ui`'s addresses: what the Prefect server is told, what is refused before any
server starts. The servers themselves are tested in tests/e2e/test_ui.py."""

import socket
from pathlib import Path

import pytest

from chassis.errors import ChassisError
from chassis.settings import ChassisSettings, url_host
from chassis_cli.ui import ensure_free, prefect_server_env
from tests.fixtures.cli import chassis_in_process


def settings_on(tmp_path: Path, host: str, port: int) -> ChassisSettings:
    return ChassisSettings(home=tmp_path, ui_host=host, prefect_ui_port=port)


def test_the_prefect_ui_is_told_its_api_is_on_the_port_it_serves(tmp_path: Path) -> None:
    # Prefect derives the browser's API address from its own settings, not from `--port`:
    # left alone, a UI on 18650 would call :4200.
    env = prefect_server_env(settings_on(tmp_path, "127.0.0.1", 18650), {"PATH": "/bin"})
    assert env["PREFECT_UI_API_URL"] == "http://127.0.0.1:18650/api"
    assert env["PREFECT_UI_URL"] == "http://127.0.0.1:18650"
    assert (env["PREFECT_SERVER_API_HOST"], env["PREFECT_SERVER_API_PORT"]) == (
        "127.0.0.1",
        "18650",
    )
    assert env["PATH"] == "/bin"


def test_the_prefect_server_is_not_pointed_at_another_server(tmp_path: Path) -> None:
    shell = {"PREFECT_API_URL": "http://elsewhere:4200/api"}
    env = prefect_server_env(settings_on(tmp_path, "127.0.0.1", 18650), shell)
    assert "PREFECT_API_URL" not in env
    assert env["PREFECT_UI_API_URL"] == "http://127.0.0.1:18650/api"


def test_a_ui_api_url_the_user_set_is_kept(tmp_path: Path) -> None:
    # A proxy in front: the browser must call the proxy, which only the user knows.
    shell = {"PREFECT_UI_API_URL": "https://prefect.example/api"}
    env = prefect_server_env(settings_on(tmp_path, "0.0.0.0", 18650), shell)
    assert env["PREFECT_UI_API_URL"] == "https://prefect.example/api"
    assert env["PREFECT_SERVER_API_HOST"] == "0.0.0.0"


@pytest.mark.parametrize(
    ("bind", "in_url"),
    [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("::", "127.0.0.1"), ("::1", "[::1]")],
)
def test_a_browser_is_sent_to_an_address_it_can_open(bind: str, in_url: str) -> None:
    assert url_host(bind) == in_url


def test_the_port_options_set_the_urls(tmp_path: Path) -> None:
    settings = settings_on(tmp_path, "::", 18651)
    assert settings.prefect_ui_url() == "http://127.0.0.1:18651"


def test_both_uis_on_one_port_are_refused_before_anything_starts() -> None:
    code, _, err = chassis_in_process("ui", "--prefect-port", "18652", "--mlflow-port", "18652")
    assert code == 2
    assert "cannot share port 18652" in err.splitlines()[-1]


def test_a_bad_port_is_refused() -> None:
    code, _, err = chassis_in_process("ui", "--mlflow-port", "70000")
    assert code == 2
    assert "a port is at most 65535" in err


def test_a_taken_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))  # bound, not listening: enough to hold the port
        port = holder.getsockname()[1]
        with pytest.raises(ChassisError, match=f"the Prefect UI port {port} on 127.0.0.1"):
            ensure_free("127.0.0.1", port, "the Prefect UI")
