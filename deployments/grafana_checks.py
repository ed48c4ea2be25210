"""Offline checks of the Grafana dashboards in deployments/grafana/dashboards/.

Every query may name only series the gateway exports (read from chassis/serving/metrics.py
through deployments.manifest_checks.exported_metric_names, never a list kept by hand),
that the drift check pushes to a Pushgateway (read from chassis/drift_push.py), or that
Prometheus makes itself (`up`); every panel that queries has a datasource, and every
panel a title and an id of its own. Each problem is one line naming the dashboard, the
panel and what is wrong.

    python -m deployments.grafana_checks     # exit 1 and one line per problem, if any
    make dashboards-check                    # the same

With promtool (Debian's `prometheus` package) on the PATH, every query is also parsed.
"""

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FOLDER = Path(__file__).with_name("grafana") / "dashboards"

# Series Prometheus writes for every target it scrapes, whatever the target exports.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

# PromQL words that look like a metric name but are not one.
_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_OFFSET = re.compile(r"\boffset\s+-?[\w$]+")
_IDENTIFIER = re.compile(r"(?<![\w.$:])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
# Grafana's own interval variables, and what the live check puts in their place.
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range", "__range_s", "__interval_ms"}
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<selector>.*),\s*)?(?P<label>\w+)\s*\)\s*$")


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel: where it is, and its expression."""

    dashboard: str  # the dashboard's file name
    panel_id: int | None
    panel: str  # the panel's title
    ref_id: str
    expr: str

    @property
    def where(self) -> str:
        return f"{self.dashboard}: panel {self.panel_id} {self.panel!r} query {self.ref_id}"


def load(folder: Path = FOLDER) -> dict[str, dict[str, Any]]:
    """Every dashboard in `folder`, by file name."""
    return {path.name: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows and the panels inside collapsed rows included."""
    for panel in dashboard.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


def queries(name: str, dashboard: Mapping[str, Any]) -> Iterator[PanelQuery]:
    for panel in panels(dashboard):
        for target in panel.get("targets") or []:
            yield PanelQuery(
                name,
                panel.get("id"),
                str(panel.get("title", "")),
                str(target.get("refId", "?")),
                str(target.get("expr", "")),
            )


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left once strings, label
    matchers, ranges, label lists, function calls and keywords are taken out."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("{}", text)
    text = _RANGE.sub("[]", text)
    text = _LABEL_LIST.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


def known_metrics() -> set[str]:
    """Every series name a dashboard may read: the gateway's, the drift check's pushed
    ones, and Prometheus's own."""
    from deployments.manifest_checks import exported_metric_names

    return exported_metric_names() | pushed_metric_names() | PROMETHEUS_SERIES


def pushed_metric_names() -> set[str]:
    """The series the drift check pushes (chassis/drift_push.py), as Prometheus stores them."""
    from datetime import UTC, datetime
    from types import SimpleNamespace
    from typing import Any

    from chassis.drift_push import drift_registry

    # Only the gauges' names are read: any verdict renders the same three.
    verdict: Any = SimpleNamespace(drifted_share=0.0, verdict="no drift")
    families = drift_registry(verdict, datetime.now(UTC)).collect()
    return {sample.name for family in families for sample in family.samples}


def problems(
    dashboards: Mapping[str, Mapping[str, Any]],
    known: set[str],
) -> list[str]:
    """Every problem found, one line each; empty when the dashboards pass."""
    allowed = known
    found: list[str] = []
    uids: dict[str, str] = {}
    for name, dashboard in dashboards.items():
        uid = str(dashboard.get("uid", ""))
        if not uid:
            found.append(f"{name}: no uid")
        elif uid in uids:
            found.append(f"{name}: uid {uid!r} is also {uids[uid]}'s")
        uids.setdefault(uid, name)
        found += dashboard_problems(name, dashboard)
        for query in queries(name, dashboard):
            if not query.expr.strip():
                found.append(f"{query.where}: empty expression")
            for metric in sorted(metric_names(query.expr) - allowed):
                found.append(
                    f"{query.where}: reads {metric}, which the gateway does not export "
                    "(chassis/serving/metrics.py)"
                )
    return found


def dashboard_problems(name: str, dashboard: Mapping[str, Any]) -> Iterator[str]:
    variables = {str(v.get("name")) for v in (dashboard.get("templating") or {}).get("list") or []}
    if "datasource" not in variables:
        yield f"{name}: no `datasource` template variable (the panels' ${{datasource}})"
    seen: dict[int, str] = {}
    for panel in panels(dashboard):
        title = str(panel.get("title") or "").strip()
        panel_id = panel.get("id")
        where = f"{name}: panel {panel_id} {title!r}"
        if not title:
            yield f"{where}: no title"
        if not isinstance(panel_id, int):
            yield f"{where}: no numeric id"
        elif panel_id in seen:
            yield f"{where}: id {panel_id} is also panel {seen[panel_id]!r}'s"
        else:
            seen[panel_id] = title
        targets = panel.get("targets") or []
        if panel.get("type") == "row":
            continue
        if not targets and panel.get("type") != "text":
            yield f"{where}: no query (targets is empty)"
        sources = [panel.get("datasource"), *(t.get("datasource") for t in targets)]
        if targets and not all(_is_prometheus(source) for source in sources):
            yield f"{where}: datasource is not the Prometheus ${{datasource}} variable"
        for target in targets:
            for variable in used_variables(str(target.get("expr", ""))):
                if variable not in variables | BUILTIN_VARIABLES:
                    yield (
                        f"{where} query {target.get('refId')}: ${variable} is no template "
                        "variable of the dashboard"
                    )


def _is_prometheus(source: Any) -> bool:
    return (
        isinstance(source, dict)
        and source.get("type") == "prometheus"
        and source.get("uid") == "${datasource}"
    )


def used_variables(expr: str) -> set[str]:
    return {a or b for a, b in _VARIABLE.findall(expr)}


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """`expr` with each $name and ${name} replaced by values[name] (as Grafana does before
    it sends a query), for running it outside Grafana."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for ${name} in {expr}")
        return values[name]

    return _VARIABLE.sub(value, expr)


def regex_value(values: list[str]) -> str:
    """Several selected values as Grafana writes them into a Prometheus `=~` matcher: each
    regex-escaped (the backslash doubled inside a PromQL string), joined by |."""
    escaped = [re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", value) for value in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def label_values(query: str) -> tuple[str | None, str]:
    """(selector or None, label) of a Grafana `label_values(selector, label)` query."""
    match = _LABEL_VALUES.match(query)
    if match is None:
        raise ValueError(f"not a label_values(...) query: {query}")
    return match["selector"], match["label"]


def variables(dashboard: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """The dashboard's query variables in order: (name, label_values query, multi). The
    query is a string, or (Grafana 10's editor) an object holding it."""
    return [
        (str(v["name"]), _variable_query(v), bool(v.get("multi")))
        for v in (dashboard.get("templating") or {}).get("list") or []
        if v.get("type") == "query"
    ]


def syntax_problems(checked: list[PanelQuery], promtool: str) -> list[str]:
    """Queries Prometheus would refuse to parse, by `promtool check rules` on a rule file of
    them (each variable given a value of its kind first, as Grafana does)."""
    values = {name: "1m" for name in BUILTIN_VARIABLES} | {"__interval_ms": "60000"}
    rules = [
        {"record": f"dashboard:query_{index}", "expr": _with_values(query.expr, values)}
        for index, query in enumerate(checked)
    ]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "queries.yml"
        path.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}))
        result = subprocess.run(
            [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
        )
    if result.returncode == 0:
        return []
    output = result.stdout + result.stderr
    named = [
        f"{query.where}: not valid PromQL: {line.strip()}"
        for index, query in enumerate(checked)
        for line in output.splitlines()
        if f"dashboard:query_{index}:" in line or f'"dashboard:query_{index}"' in line
    ]
    return named or [f"promtool refused the dashboards' queries: {output.strip()}"]


def _with_values(expr: str, values: Mapping[str, str]) -> str:
    """`expr` with interval variables as durations and any other variable as a label value."""
    return _VARIABLE.sub(lambda m: values.get(m.group(1) or m.group(2), "x"), expr)


def _variable_query(variable: Mapping[str, Any]) -> str:
    query = variable.get("query")
    if isinstance(query, dict):
        query = query.get("query")
    return str(query or variable.get("definition", ""))


def main() -> int:
    dashboards = load()
    found = problems(dashboards, known_metrics())
    checked = [q for name, d in dashboards.items() for q in queries(name, d)]
    promtool = shutil.which("promtool")
    if promtool:
        found += syntax_problems(checked, promtool)
    for line in found:
        print(line, file=sys.stderr)
    if not found:
        parsed = "valid PromQL (promtool), " if promtool else ""
        print(
            f"deployments/grafana: {len(dashboards)} dashboards, {len(checked)} queries: "
            f"{parsed}reading only metrics the gateway exports or the drift check pushes"
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
