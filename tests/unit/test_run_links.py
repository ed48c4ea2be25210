"""Run links name the Prefect server in effect, not Chassis's default UI port."""

from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

from chassis.settings import ChassisSettings
from chassis.tracking import flow_run_url, prefect_ui_url


def test_the_link_follows_the_api_url_in_effect():
    with temporary_settings(
        updates={PREFECT_API_URL: "http://10.0.0.5:4311/api"}, restore_defaults={PREFECT_UI_URL}
    ):
        assert flow_run_url(ChassisSettings(), "abc") == "http://10.0.0.5:4311/runs/flow-run/abc"


def test_an_explicit_ui_url_wins():
    with temporary_settings(
        updates={PREFECT_API_URL: "http://10.0.0.5:4311/api", PREFECT_UI_URL: "https://ui.example/"}
    ):
        assert prefect_ui_url(ChassisSettings()) == "https://ui.example"


def test_without_an_api_url_the_chassis_default_is_used(chassis_home, monkeypatch):
    monkeypatch.setenv("CHASSIS_PREFECT_UI_PORT", "4999")
    with temporary_settings(restore_defaults={PREFECT_API_URL, PREFECT_UI_URL}):
        assert prefect_ui_url(ChassisSettings()) == ChassisSettings().prefect_ui_url()
        assert prefect_ui_url(ChassisSettings()).endswith(":4999")
