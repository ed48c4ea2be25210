"""The shipped Prometheus and Alertmanager configurations are valid for the tools that read
them (promtool and amtool, from Debian's prometheus and prometheus-alertmanager packages),
and the Alertmanager route sends every alert to the relay's authenticated endpoint."""

import shutil
import subprocess
from pathlib import Path

import yaml

from chassis.alert_delivery import ALERT_PATH

DEPLOYMENTS = Path(__file__).resolve().parents[2] / "deployments"


def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which(tool)
    assert path, f"{tool} is missing: .ci/run installs it (Debian packages)"
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=60)


def test_the_prometheus_config_and_its_rule_files_are_valid():
    checked = run("promtool", "check", "config", str(DEPLOYMENTS / "prometheus" / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "rule files found" in checked.stdout + checked.stderr


def test_prometheus_scrapes_the_drift_checks_pushgateway_keeping_the_pushed_labels():
    # The drift alerts read `model` from what the drift check pushed: without honor_labels
    # Prometheus would rename the pushed labels to exported_* and the alerts see none.
    config = yaml.safe_load((DEPLOYMENTS / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["chassis-drift"]["honor_labels"] is True
    assert "chassis-gateway" in jobs  # the job name ChassisReplicaDown reads


def test_the_alertmanager_config_is_valid_and_delivers_to_the_relay_with_a_token():
    config_path = DEPLOYMENTS / "alertmanager" / "alertmanager.yml"
    checked = run("amtool", "check-config", str(config_path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load(config_path.read_text())
    receiver = next(r for r in config["receivers"] if r["name"] == config["route"]["receiver"])
    (webhook,) = receiver["webhook_configs"]
    assert webhook["url"].endswith(ALERT_PATH)
    assert webhook["send_resolved"] is True  # the relay passes resolutions on too
    assert webhook["http_config"]["authorization"]["type"] == "Bearer"
    assert webhook["http_config"]["authorization"]["credentials_file"]
    # A group per alert and model: each model's trigger sees its own alert.
    assert set(config["route"]["group_by"]) == {"alertname", "model"}


def test_a_broken_alertmanager_config_is_caught_by_the_same_check(tmp_path):
    broken = tmp_path / "alertmanager.yml"
    broken.write_text("route:\n  receiver: nobody\nreceivers: []\n")
    checked = run("amtool", "check-config", str(broken))
    assert checked.returncode != 0 and "nobody" in checked.stdout + checked.stderr
