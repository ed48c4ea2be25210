"""The shipped Prometheus alert rules: valid, behaving as their tests say, and reading only
metrics the gateway exposes (promtool, from Debian's prometheus package, as CI installs)."""

import re
import shutil
import subprocess
from pathlib import Path

from chassis.serving.metrics import GatewayMetrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deployments" / "prometheus" / "chassis-alerts.yml"
RULE_TESTS = ROOT / "tests" / "prometheus" / "chassis-alerts-test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: apt-get install prometheus (.ci/run does)"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def test_the_rules_are_valid():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_fire_as_their_unit_tests_say():
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_read_only_metrics_the_gateway_exposes():
    exposed = {family.name for family in GatewayMetrics().collect()}
    used = set(re.findall(r"\b(chassis_[a-z_]+)\b", RULES.read_text()))
    # Counters are exposed as <name>_total; a rule may use either spelling.
    unknown = {n for n in used if n not in exposed and n.removesuffix("_total") not in exposed}
    assert used and not unknown, unknown
