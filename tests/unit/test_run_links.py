"""Run links name the servers in effect, not Chassis's default UI ports, and MLflow links open
the machine-learning view."""

from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

from chassis.mlflow_links import MlflowLinks
from chassis.settings import ChassisSettings
from chassis.tracking import StoredArtifact, flow_run_url, prefect_ui_url
from tasks.rollout import fleet_description


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


def test_every_mlflow_link_opens_the_machine_learning_view():
    # MLflow 3's UI opens pages in its GenAI view unless the link names the other one.
    links = MlflowLinks("http://127.0.0.1:5100")
    assert links.experiment("3") == (
        "http://127.0.0.1:5100/#/experiments/3?workflowType=machine_learning"
    )
    assert links.run("3", "ab12") == (
        "http://127.0.0.1:5100/#/experiments/3/runs/ab12?workflowType=machine_learning"
    )
    assert links.artifact("3", "ab12", "drift/report 1.html") == (
        "http://127.0.0.1:5100/#/experiments/3/runs/ab12/artifactPath/drift/report%201.html"
        "?workflowType=machine_learning"
    )
    assert links.registered_model("digits-mlp") == (
        "http://127.0.0.1:5100/#/models/digits-mlp?workflowType=machine_learning"
    )
    assert links.model_version("digits-mlp", 2) == (
        "http://127.0.0.1:5100/#/models/digits-mlp/versions/2?workflowType=machine_learning"
    )


def test_a_model_name_is_one_segment_of_the_link():
    # As the UI encodes it: a `/` or `?` in the name must not end the segment or the route.
    assert MlflowLinks("http://m").model_version("team/churn?x", 1) == (
        "http://m/#/models/team%2Fchurn%3Fx/versions/1?workflowType=machine_learning"
    )


def test_mlflow_links_go_to_the_ui_a_person_looks_at(chassis_home, monkeypatch):
    monkeypatch.setenv("CHASSIS_MLFLOW_UI_PORT", "5100")
    artifact = StoredArtifact("file:///a/drift/r.html", "3", "ab12", "drift/r.html")
    assert artifact.ui_url(ChassisSettings()) == (
        "http://127.0.0.1:5100/#/experiments/3/runs/ab12/artifactPath/drift/r.html"
        "?workflowType=machine_learning"
    )


def test_a_temporary_gateway_is_not_logged_as_a_link():
    # It is stopped when the rollout ends: a link in the run's log would lead nowhere.
    line = fleet_description(["http://127.0.0.1:41234"], embedded=True)
    assert "http" not in line
    assert "127.0.0.1:41234" in line and "temporary" in line
    # Gateways that outlive the run are named by their URLs.
    assert fleet_description(["http://gw:8000"], embedded=False) == (
        "1 gateway replica(s) http://gw:8000 (already running)"
    )
