"""The shipped Grafana dashboards (deployments/grafana/): what deployments/grafana_dashboards.py
writes, reading only metrics the gateway exports (derived from chassis/serving/metrics.py),
valid PromQL (promtool), and every panel with a datasource, a title and an id of its own.
Each check is shown to catch a broken copy, naming the dashboard, the panel and the metric.
tests/integration/test_dashboards_live.py runs every query against a live Prometheus."""

import copy
import shutil
from typing import Any

import yaml

from deployments import grafana_dashboards
from deployments.grafana_checks import (
    FOLDER,
    PanelQuery,
    known_metrics,
    label_values,
    load,
    metric_names,
    panels,
    problems,
    pushed_metric_names,
    queries,
    regex_value,
    substitute,
    syntax_problems,
    used_variables,
    variables,
)
from deployments.manifest_checks import load_base

DASHBOARDS = load()
KNOWN = known_metrics()
PROVISIONING = FOLDER.parent / "provisioning"


def every_query(dashboards: dict[str, dict[str, Any]]) -> list[PanelQuery]:
    return [q for name, d in dashboards.items() for q in queries(name, d)]


def broken(file: str, change: Any) -> list[str]:
    """The problems of a copy of the dashboards in which `change` edited `file`'s JSON."""
    dashboards = copy.deepcopy(DASHBOARDS)
    change(dashboards[file])
    return problems(dashboards, KNOWN)


def panel(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    return next(p for p in panels(dashboard) if p.get("title") == title)


def test_the_shipped_dashboards_pass_every_check():
    assert problems(DASHBOARDS, KNOWN) == []
    uids = {d["uid"] for d in DASHBOARDS.values()}
    # One per dimension of issue 15, one for rollouts, one for ground truth and drift.
    assert uids == {
        "chassis-system",
        "chassis-business",
        "chassis-model",
        "chassis-data-quality",
        "chassis-rollouts",
        "chassis-ground-truth",
    }
    for dashboard in DASHBOARDS.values():
        assert dashboard["schemaVersion"] == grafana_dashboards.SCHEMA_VERSION
        assert any(p.get("targets") for p in panels(dashboard)), dashboard["uid"]


def test_the_committed_files_are_what_the_generator_writes():
    files = grafana_dashboards.rendered()
    on_disk = {p.name: p.read_text() for p in FOLDER.glob("*.json")}
    assert on_disk == files, "run: python -m deployments.grafana_dashboards"
    assert grafana_dashboards.CONFIG_MAP.read_text() == grafana_dashboards.config_map(files)


def test_the_exported_names_come_from_the_gateways_registry():
    # Histogram suffixes, counter _total and the process collector: what /metrics renders.
    for name in (
        "chassis_request_latency_seconds_bucket",
        "chassis_queue_wait_seconds_sum",
        "chassis_requests_total",
        "chassis_rollout_generation",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ):
        assert name in KNOWN, name
    assert "chassis_requests" not in KNOWN  # a counter is exposed with _total only


def test_a_misspelt_metric_is_named_with_its_dashboard_and_panel():
    def misspell(dashboard: dict[str, Any]) -> None:
        target = panel(dashboard, "Error ratio by model and version")["targets"][0]
        target["expr"] = target["expr"].replace("chassis_errors_total", "chassis_error_total")

    found = broken("chassis-business.json", misspell)
    assert len(found) == 1, found
    problem = found[0]
    assert problem.startswith("chassis-business.json: panel ")
    assert "'Error ratio by model and version' query A" in problem
    assert "reads chassis_error_total, which the gateway does not export" in problem


def test_a_metric_the_gateway_stops_exporting_is_named_in_every_panel_reading_it():
    without = KNOWN - {"chassis_rollout_generation"}
    found = problems(DASHBOARDS, without)
    readers = [q for q in every_query(DASHBOARDS) if "chassis_rollout_generation" in q.expr]
    assert len(found) == len(readers) >= 2
    assert all("reads chassis_rollout_generation" in p for p in found)


def test_a_panel_without_a_datasource_is_named():
    def drop(dashboard: dict[str, Any]) -> None:
        del panel(dashboard, "Resident memory per replica")["datasource"]

    [problem] = broken("chassis-system.json", drop)
    assert "chassis-system.json: panel" in problem and "'Resident memory per replica'" in problem
    assert "datasource" in problem


def test_a_datasource_other_than_the_template_variable_is_named():
    def fixed(dashboard: dict[str, Any]) -> None:
        target = panel(dashboard, "Mean confidence by version")["targets"][0]
        target["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}

    [problem] = broken("chassis-model.json", fixed)
    assert "'Mean confidence by version'" in problem and "${datasource}" in problem


def test_a_duplicate_panel_id_and_a_missing_title_are_named():
    def clash(dashboard: dict[str, Any]) -> None:
        first, second = [p for p in panels(dashboard) if p.get("targets")][:2]
        second["id"] = first["id"]
        first["title"] = ""

    found = broken("chassis-rollouts.json", clash)
    assert len(found) == 2, found
    assert any("no title" in p for p in found)
    assert any("is also panel" in p for p in found)


def test_a_query_using_a_variable_the_dashboard_lacks_is_named():
    def stray(dashboard: dict[str, Any]) -> None:
        target = panel(dashboard, "Rollout generation by replica")["targets"][0]
        target["expr"] = target["expr"].replace('model=~"$model"', 'model=~"$modle"')

    [problem] = broken("chassis-rollouts.json", stray)
    assert "'Rollout generation by replica' query A: $modle is no template variable" in problem


def test_every_query_is_valid_promql():
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (.ci/run does)"
    assert syntax_problems(every_query(DASHBOARDS), promtool) == []


def test_a_query_prometheus_cannot_parse_is_named():
    promtool = shutil.which("promtool")
    assert promtool
    checked = every_query(DASHBOARDS)
    index = next(i for i, q in enumerate(checked) if q.panel == "Mean latency by model")
    query = checked[index]
    checked[index] = PanelQuery(
        query.dashboard, query.panel_id, query.panel, query.ref_id, query.expr + ")"
    )
    [problem] = syntax_problems(checked, promtool)
    assert problem.startswith(f"{query.where}: not valid PromQL"), problem


def test_metric_names_are_the_selected_series_only():
    expr = (
        'sum by (model, le) (rate(chassis_x_bucket{model=~"$model", status="up"}[$__rate_interval]'
        " offset 5m)) / on (model) group_left (version) max without (instance) (foo:rate5m)"
        " * 1e3 and up or vector(0) unless absent(bar_total)"
    )
    assert metric_names(expr) == {"chassis_x_bucket", "foo:rate5m", "up", "bar_total"}


def test_the_drift_panel_reads_what_the_drift_check_pushes_and_nothing_else_unknown():
    # The drift share is not the gateway's: it is allowed because the drift check pushes it.
    assert "chassis_drift_share_ratio" in pushed_metric_names()
    reads = {name for q in every_query(DASHBOARDS) for name in metric_names(q.expr)}
    assert "chassis_drift_share_ratio" in reads
    assert problems(DASHBOARDS, KNOWN - pushed_metric_names()) != []


def test_template_values_are_written_as_grafana_writes_them():
    assert label_values("label_values(chassis_model_serving, model)") == (
        "chassis_model_serving",
        "model",
    )
    assert label_values('label_values(x{job=~"$job"}, instance)') == ('x{job=~"$job"}', "instance")
    assert regex_value(["a.b", "c"]) == "(a\\\\.b|c)"
    values = {"model": "m", "__rate_interval": "1m"}
    assert substitute('x{m=~"$model"}[${__rate_interval}]', values) == 'x{m=~"m"}[1m]'
    assert substitute("$model $__rate_interval", values) == "m 1m"


def test_every_variable_is_a_label_values_query_on_variables_defined_before_it():
    for name, dashboard in DASHBOARDS.items():
        defined = {"datasource"}
        for variable, query, _ in variables(dashboard):
            selector, _label = label_values(query)
            assert used_variables(selector or "") <= defined, (name, variable)
            defined.add(variable)
        assert {"model"} <= defined, name
    # Grafana 10's editor writes the query as an object: read the same way.
    editor = {"templating": {"list": [{"type": "query", "name": "m", "query": {"query": "q"}}]}}
    assert variables(editor) == [("m", "q", False)]


def test_the_config_map_is_in_the_kustomize_base_for_grafanas_sidecar():
    [config_map] = [m for m in load_base() if m.name == "chassis-grafana-dashboards"]
    assert config_map.kind == "ConfigMap"
    assert config_map.document["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert sorted(config_map.document["data"]) == sorted(DASHBOARDS)


def test_the_provisioned_datasource_interval_is_the_scrape_interval():
    datasource = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    [prometheus] = datasource["datasources"]
    monitor = next(m for m in load_base() if m.kind == "ServiceMonitor")
    assert prometheus["type"] == "prometheus"
    assert (
        prometheus["jsonData"]["timeInterval"]
        == monitor.document["spec"]["endpoints"][0]["interval"]
    )
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "chassis.yaml").read_text())
    assert [p["type"] for p in provider["providers"]] == ["file"]


def test_the_dashboards_folder_holds_only_dashboards():
    assert {p.suffix for p in FOLDER.iterdir()} == {".json"}
