"""The shipped Prometheus rules: valid, behaving as their promtool tests say, reading only
metrics the gateway exports, and with every threshold in its range (promtool, from Debian's
prometheus package, as CI installs)."""

import ast
import copy
import operator
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from chassis.drift import DriftResult
from chassis.drift_push import drift_registry
from chassis.serving.metrics import GatewayMetrics, LiveReading, Readings

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deployments" / "prometheus" / "chassis-alerts.yml"
# The promtool tests; those whose series span days evaluate at a coarser step (see its header).
RULE_TESTS = [
    ROOT / "tests" / "prometheus" / "chassis-alerts-test.yml",
    ROOT / "tests" / "prometheus" / "chassis-alerts-days-test.yml",
]
METRICS_DOC = ROOT / "docs" / "metrics.md"
# diagnose: starts the diagnose deployment, pages nobody (docs/metrics.md#alerts).
SEVERITIES = {"page", "ticket", "diagnose"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: apt-get install prometheus (.ci/run does)"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def exported_sample_names() -> set[str]:
    """Every sample name the gateway's /metrics renders, each family fed once through the
    methods the gateway calls (so a family added without being fed here fails below)."""
    metrics = GatewayMetrics()
    metrics.readings = lambda: Readings(
        ready=True,
        generations={"m": 3},
        served=[("m", 1, "stable")],
        log_dropped_rows={"m": 2},
        live=[
            LiveReading("m", 1, "classification", 10, 0.9),
            LiveReading("r", 1, "regression", 10, 0.5),
        ],
        accuracy_gates={("m", 1): 0.95},
    )
    metrics.observe("m", "1", "stable", 0.001, [1], np.array([[0.0, 2.0]]))
    metrics.tally("m", "1", "shadow").record(0.001, [1], None)
    metrics.tally("r", "1", "stable").record_values(0.001, [2.5])
    metrics.version("m", "1").record_cpu(1, 0.0001)
    metrics.version("m", "1").record_wait(0.002)
    metrics.count_error("m", "1", "500")
    metrics.count_error_answer("m", 422)
    metrics.count_text_refused("m", "empty")
    metrics.count_shadow("m", "1", 1, 2)
    metrics.count_differences("r", "1", [0.01])
    metrics.set_champion_mismatch("m", (2, 1, "failed gates"))
    metrics.set_model_state("m", "serving")
    metrics.count_load_failure("m", 2, "sha256")
    metrics.in_flight["m"] = 1
    metrics.count_feedback("m", "1", "correct", 1.0)
    metrics.count_feedback("r", "1", "scored", 0.5)
    metrics.count_feedback_refused("m", "too_late")
    metrics.count_feedback_forwarded("m", 2)
    metrics.count_sanitized("m", "f0", "clipped", 2)
    metrics.count_sanitization_refused("m", "missing", 1)
    metrics.sanitization_modes["m"] = "clip"
    names: set[str] = set()
    for family in text_string_to_metric_families(metrics.render().decode()):
        assert family.samples, f"{family.name} rendered no sample: feed it above"
        names |= {sample.name for sample in family.samples}
    return names


def test_the_rules_are_valid():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_fire_as_their_unit_tests_say():
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_promtool_case_that_fires_it_and_one_that_does_not():
    tests = [test for path in RULE_TESTS for test in yaml.safe_load(path.read_text())["tests"]]
    checks = [check for test in tests for check in test["alert_rule_test"]]
    fired = {check["alertname"] for check in checks if check["exp_alerts"]}
    quiet = {check["alertname"] for check in checks if not check["exp_alerts"]}
    alerts = {rule["alert"] for rule in rules_of(load_rules()) if "alert" in rule}
    assert alerts - fired == set(), "never seen firing"
    assert alerts - quiet == set(), "never seen quiet"


def pushed_sample_names() -> set[str]:
    """Every sample name the drift check pushes to the Pushgateway."""
    result = DriftResult("drift", 10, 10, 1, 0.5)
    registry = drift_registry(result, datetime.now(UTC))
    return {sample.name for family in registry.collect() for sample in family.samples}


def test_the_rules_read_only_metrics_the_gateway_exports_or_the_drift_check_pushes():
    exported = exported_sample_names() | pushed_sample_names()
    used = set(re.findall(r"\b(chassis_[a-z_]+)\b", RULES.read_text()))
    unknown = used - exported
    assert used and not unknown, f"rules name metrics nothing exports: {unknown}"


def test_every_exported_metric_is_documented():
    documented = set(re.findall(r"`(chassis_[a-z_]+)`", METRICS_DOC.read_text()))
    families = {family.name for family in GatewayMetrics().collect()}
    # A counter family is documented under its exposed name, with `_total`.
    exposed = {
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in GatewayMetrics().collect()
    }
    assert len(exposed) == len(families)
    assert exposed - documented == set(), "exported but not in docs/metrics.md"
    assert pushed_sample_names() - documented == set(), "pushed but not in docs/metrics.md"


def test_every_alert_has_a_severity_a_summary_and_a_runbook_anchor_that_exists():
    anchors = {
        heading_anchor(line) for line in METRICS_DOC.read_text().splitlines() if line[:1] == "#"
    }
    assert rule_problems(load_rules(), anchors) == []


# ---- range checks: what promtool accepts but no sane rule says -------------------------

_OPERATORS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
# `name{matchers} > 0.05`, `name > (14.4 * 0.005)`: a series compared with a number.
_COMPARISON = re.compile(
    r"(?P<series>[a-zA-Z_:][\w:]*)(?:\{[^}]*\})?\s*(?P<op>>=|<=|>|<)\s*"
    r"(?P<number>\(?[\d.]+(?:\s*[-+*/]\s*\(?[\d.]+\)?)*\)?)"
)
_WINDOW = re.compile(r"ratio_rate(\d+)([smhd])\b")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def arithmetic(text: str) -> float:
    """The value of a number or of + - * / over numbers (a threshold such as 14.4 * 0.005)."""

    def value(node: ast.expr) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        raise ValueError(f"not arithmetic: {text}")

    return value(ast.parse(text, mode="eval").body)


def threshold_problems(name: str, expr: str) -> list[str]:
    """A ratio compared with a number outside [0, 1], a duration with one not above 0, or a
    burn-rate pair whose long window is not the first (the SRE workbook's `long and short`)
    or whose two windows are compared with different burn rates."""
    problems: list[str] = []
    comparisons = [
        (match["series"], arithmetic(match["number"])) for match in _COMPARISON.finditer(expr)
    ]
    for series, threshold in comparisons:
        if "ratio" in series and not 0 <= threshold <= 1:
            problems.append(f"{name}: ratio threshold {threshold:g} on {series} is outside [0, 1]")
        if "seconds" in series and threshold <= 0:
            problems.append(f"{name}: latency threshold {threshold:g} s on {series} is not > 0")
    windows = [int(number) * _SECONDS[unit] for number, unit in _WINDOW.findall(expr)]
    if len(windows) == 2:
        long, short = windows
        if long <= short:
            problems.append(
                f"{name}: burn-rate windows inverted: the long window ({long} s) must come "
                f"first and be longer than the short one ({short} s)"
            )
        rates = [threshold for series, threshold in comparisons if _WINDOW.search(series)]
        if len(set(rates)) != 1:
            listed = " and ".join(f"{rate:g}" for rate in rates)
            problems.append(f"{name}: the two windows use different burn-rate thresholds {listed}")
    return problems


def rule_problems(document: dict[str, Any], anchors: set[str] | None = None) -> list[str]:
    problems: list[str] = []
    for rule in rules_of(document):
        name = str(rule.get("alert") or rule.get("record") or "an unnamed rule")
        problems += threshold_problems(name, rule["expr"])
        if "alert" not in rule:
            continue
        if rule.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity must be one of {sorted(SEVERITIES)}")
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            if not annotations.get(key):
                problems.append(f"{name}: no {key} annotation")
        anchor = annotations.get("runbook_url", "").partition("#")[2]
        if anchors is not None and anchor not in anchors:
            problems.append(
                f"{name}: runbook_url anchor #{anchor} is not a docs/metrics.md heading"
            )
    return problems


def rules_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in document["groups"] for rule in group["rules"]]


def load_rules() -> dict[str, Any]:
    return yaml.safe_load(RULES.read_text())


def heading_anchor(line: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces -."""
    text = line.lstrip("#").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def with_rule(name: str, edit: Callable[[str], str]) -> dict[str, Any]:
    document = copy.deepcopy(load_rules())
    for rule in rules_of(document):
        if rule.get("alert") == name:
            rule["expr"] = edit(rule["expr"])
            return document
    raise AssertionError(f"no alert {name}")


def test_the_shipped_thresholds_are_in_range():
    assert rule_problems(load_rules()) == []


@pytest.mark.parametrize(
    ("alert", "edit", "problem"),
    [
        (
            "ChassisErrorRatioHigh",
            lambda expr: expr.replace("> 0.05", "> 5"),
            "ChassisErrorRatioHigh: ratio threshold 5 on "
            "chassis:predict_server_errors:ratio_rate5m is outside [0, 1]",
        ),
        (
            "ChassisErrorBudgetBurnFast",
            lambda expr: expr.replace("0.005", "0.5"),
            "ChassisErrorBudgetBurnFast: ratio threshold 7.2 on "
            "chassis:predict_server_errors:ratio_rate1h is outside [0, 1]\n"
            "ChassisErrorBudgetBurnFast: ratio threshold 7.2 on "
            "chassis:predict_server_errors:ratio_rate5m is outside [0, 1]",
        ),
        (
            "ChassisErrorBudgetBurnSlow",
            lambda expr: (
                expr.replace("rate6h", "rateXX")
                .replace("rate30m", "rate6h")
                .replace("rateXX", "rate30m")
            ),
            "ChassisErrorBudgetBurnSlow: burn-rate windows inverted: the long window (1800 s) "
            "must come first and be longer than the short one (21600 s)",
        ),
        (
            "ChassisErrorBudgetBurnFast",
            lambda expr: expr.replace("(14.4 * 0.005)", "(6 * 0.005)", 1),
            "ChassisErrorBudgetBurnFast: the two windows use different burn-rate thresholds "
            "0.03 and 0.072",
        ),
    ],
    ids=["error ratio above 1", "burn rate past 100 %", "windows inverted", "rates differ"],
)
def test_a_threshold_out_of_range_is_caught_with_the_rule_name(
    alert: str, edit: Callable[[str], str], problem: str, tmp_path: Path
):
    document = with_rule(alert, edit)
    # Valid PromQL: promtool alone lets each of these through.
    edited = tmp_path / "rules.yml"
    edited.write_text(yaml.safe_dump(document))
    assert promtool("check", "rules", str(edited)).returncode == 0
    assert rule_problems(document) == problem.split("\n")


def test_a_missing_runbook_anchor_is_caught_with_the_rule_name():
    document = copy.deepcopy(load_rules())
    rule = next(r for r in rules_of(document) if r.get("alert") == "ChassisNoTraffic")
    rule["annotations"]["runbook_url"] = "docs/metrics.md#no-such-heading"
    problems = rule_problems(document, {"chassisnotraffic"})
    assert [p for p in problems if p.startswith("ChassisNoTraffic")] == [
        "ChassisNoTraffic: runbook_url anchor #no-such-heading is not a docs/metrics.md heading"
    ]
