"""Writes the Grafana dashboards in deployments/grafana/dashboards/ and their Kubernetes
ConfigMap (deployments/kubernetes/grafana-dashboards.yaml).

One dashboard per dimension the gateway is watched in (system, business, model, data
quality), one for rollouts, and one for ground truth (the feedback endpoint's metrics) and
drift (what the drift check pushes to a Pushgateway). Every query reads the gateway's own
families (chassis/serving/metrics.py, docs/metrics.md) or the drift check's pushed ones
(chassis/drift_push.py); the JSON files are
what Grafana imports, this module is how they are kept consistent (one datasource
reference, one way to write a ratio, a quantile or a rate). Regenerate after editing:

    python -m deployments.grafana_dashboards

tests/unit/test_grafana_dashboards.py checks that the committed files are this module's
output and that every query names only metrics the gateway exports;
tests/integration/test_dashboards_live.py runs every query against a real Prometheus.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

FOLDER = Path(__file__).with_name("grafana") / "dashboards"
CONFIG_MAP = Path(__file__).with_name("kubernetes") / "grafana-dashboards.yaml"
SCHEMA_VERSION = 39
TAG = "chassis"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"  # Grafana's: at least four scrape intervals, so a rate has points

# ---- queries: each kind of expression written once ---------------------------------------

MODEL = 'model=~"$model"'
VERSION = 'version=~"$version"'
LIVE = 'role!="shadow"'  # answers a client received (mirrored runs are not requests)
CANDIDATE = 'role="candidate"'
SERVER_ERROR = 'code_class="5xx"'
CLIENT_ERROR = 'code_class="4xx"'
LOW_CONFIDENCE = 'le="0.5"'


def selector(*matchers: str) -> str:
    return "{" + ", ".join(matchers) + "}" if matchers else ""


def rate(metric: str, by: str, *matchers: str) -> str:
    """Per-second rate summed over replicas (counters are per replica); by "": one sum."""
    total = f"sum by ({by}) " if by else "sum "
    return f"{total}(rate({metric}{selector(*matchers)}[{RATE}]))"


def gauge(aggregation: str, metric: str, by: str, *matchers: str) -> str:
    """A gauge aggregated over replicas."""
    return f"{aggregation} by ({by}) ({metric}{selector(*matchers)})"


def in_range(metric: str, by: str, *matchers: str) -> str:
    """A counter's increase over the dashboard's time range (a bar per series)."""
    return f"sum by ({by}) (increase({metric}{selector(*matchers)}[$__range]))"


def increase(metric: str, window: str, by: str, *matchers: str) -> str:
    """A counter's increase over a fixed window, summed over replicas."""
    return f"sum by ({by}) (increase({metric}{selector(*matchers)}[{window}]))"


def or_zero(expr: str, like: str) -> str:
    """`expr`, or 0 for each series of `like` it lacks: a counter appears with its first
    event, so a ratio of errors would otherwise show no data, not 0, while all is well."""
    return f"({expr} or 0 * {like})"


def ratio(numerator: str, denominator: str) -> str:
    """numerator / denominator, 0 where the numerator has no series yet."""
    return f"{or_zero(numerator, denominator)} / {denominator}"


def quantile(q: float, histogram: str, by: str, *matchers: str) -> str:
    buckets = rate(f"{histogram}_bucket", f"{by}, le", *matchers)
    return f"histogram_quantile({q}, {buckets})"


def mean(histogram: str, by: str, *matchers: str) -> str:
    return (
        f"{rate(f'{histogram}_sum', by, *matchers)} / {rate(f'{histogram}_count', by, *matchers)}"
    )


def answered(by: str, *matchers: str) -> str:
    """Predict answers per second: successes plus error answers (docs/metrics.md)."""
    successes = rate("chassis_requests_total", by, LIVE, *matchers)
    return f"({successes} + {or_zero(rate('chassis_http_errors_total', by, *matchers), successes)})"


def version_error_ratio(*matchers: str) -> str:
    """Failed runs of a version (chassis_errors_total: 500, 504) over all its runs: what
    the rollout analysis compares between candidate and stable."""
    runs = rate("chassis_requests_total", "model, version", *matchers)
    failures = or_zero(rate("chassis_errors_total", "model, version", *matchers), runs)
    return f"{failures} / ({runs} + {failures})"


# ---- panels ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False  # one value per series (stat, bar gauge), not a time series
    heatmap: bool = False  # Prometheus buckets, one series per `le`


@dataclass(frozen=True)
class Panel:
    kind: str  # Grafana panel type: timeseries, stat, heatmap, bargauge, text
    title: str
    description: str
    queries: tuple[Query, ...] = ()
    unit: str = "short"
    width: int = 12
    height: int = 8
    stacked: bool = False
    stepped: bool = False  # a value that changes in steps (a generation, a role)
    thresholds: tuple[tuple[float, str], ...] = ()  # (from value, colour) above green
    content: str = ""  # a text panel's Markdown


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    query: str  # Grafana's label_values(selector, label)
    include_all: bool = True


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    variables: tuple[Variable, ...] = ()
    extra_tags: tuple[str, ...] = ()


MODEL_VARIABLE = Variable("model", "Model", "label_values(chassis_model_serving, model)")
VERSION_VARIABLE = Variable(
    "version", "Version", f"label_values(chassis_requests_total{selector(MODEL)}, version)"
)
JOB_VARIABLE = Variable(
    "job", "Scrape job", "label_values(chassis_build_info, job)", include_all=False
)
INSTANCE_VARIABLE = Variable(
    "instance", "Replica", 'label_values(chassis_build_info{job=~"$job"}, instance)'
)


def ts(title: str, description: str, *queries: Query, **options: Any) -> Panel:
    return Panel("timeseries", title, description, queries, **options)


def stat(title: str, description: str, query: Query, **options: Any) -> Panel:
    return Panel("stat", title, description, (query,), width=6, height=4, **options)


# ---- the dashboards ----------------------------------------------------------------------

LIVE_BY_VERSION = rate("chassis_requests_total", "model, version", LIVE, MODEL)
CLASSES = rate("chassis_predicted_class_total", "model, version, label", MODEL, VERSION)
CLASSED_ROWS = rate("chassis_predicted_class_total", "model, version", MODEL, VERSION)
CONFIDENCE = "chassis_prediction_confidence_ratio"
LOW_CONFIDENCE_ROWS = rate(f"{CONFIDENCE}_bucket", "model, version", MODEL, VERSION, LOW_CONFIDENCE)
CONFIDENCE_ROWS = rate(f"{CONFIDENCE}_count", "model, version", MODEL, VERSION)

REPLICA = ('job=~"$job"', 'instance=~"$instance"')

SYSTEM = Dashboard(
    "chassis-system",
    "Chassis / System",
    "Gateway replicas: CPU, memory, latency, throughput, in-flight requests and queue wait.",
    variables=(JOB_VARIABLE, INSTANCE_VARIABLE, MODEL_VARIABLE),
    rows=(
        Row(
            "Replicas",
            (
                stat(
                    "Replicas scraped",
                    "Gateway targets Prometheus reached at its last scrape (`up`).",
                    Query(f"sum(up{selector(*REPLICA)})", instant=True),
                ),
                stat(
                    "Replicas ready",
                    "Replicas whose /readyz answers 200 (`chassis_gateway_ready`): models "
                    "serve and the replica is not draining.",
                    Query(f"sum(chassis_gateway_ready{selector(*REPLICA)})", instant=True),
                ),
                stat(
                    "Answers per second",
                    "Predict answers per second over all selected models and replicas, "
                    "errors included.",
                    Query(answered("", MODEL, *REPLICA), instant=True),
                    unit="reqps",
                ),
                stat(
                    "In flight now",
                    "Predict requests being answered now (queued or running), all replicas.",
                    Query(
                        f"sum(chassis_requests_in_flight{selector(MODEL, *REPLICA)})",
                        instant=True,
                    ),
                ),
            ),
        ),
        Row(
            "Resources",
            (
                ts(
                    "CPU per replica",
                    "CPU seconds per second the gateway process uses (cores), from "
                    "`process_cpu_seconds_total`. A micro-batching gateway's CPU per request "
                    "falls as load grows: scale on in-flight requests or queue wait instead.",
                    Query(
                        rate("process_cpu_seconds_total", "instance", *REPLICA),
                        "{{instance}}",
                    ),
                    unit="none",
                ),
                ts(
                    "Resident memory per replica",
                    "Resident set size of the gateway process "
                    "(`process_resident_memory_bytes`): every version it holds is in memory.",
                    Query(
                        gauge("sum", "process_resident_memory_bytes", "instance", *REPLICA),
                        "{{instance}}",
                    ),
                    unit="bytes",
                ),
            ),
        ),
        Row(
            "Latency and throughput",
            (
                ts(
                    "Answers per second by model",
                    "Successful answers and error answers per second, summed over replicas.",
                    Query(
                        rate("chassis_requests_total", "model", LIVE, MODEL, *REPLICA),
                        "{{model}} ok",
                    ),
                    Query(
                        rate("chassis_http_errors_total", "model", MODEL, *REPLICA),
                        "{{model}} error",
                    ),
                    unit="reqps",
                ),
                ts(
                    "Latency quantiles by model",
                    "p50, p90 and p99 of the gateway's predict latency (queue wait plus model "
                    "call), from `chassis_request_latency_seconds` over all replicas.",
                    *(
                        Query(
                            quantile(
                                q, "chassis_request_latency_seconds", "model", MODEL, *REPLICA
                            ),
                            f"{{{{model}}}} p{round(q * 100)}",
                        )
                        for q in (0.5, 0.9, 0.99)
                    ),
                    unit="s",
                ),
                ts(
                    "Mean latency by model",
                    "Mean predict latency: what the mean-latency alert compares with its budget.",
                    Query(
                        mean("chassis_request_latency_seconds", "model", MODEL, *REPLICA),
                        "{{model}}",
                    ),
                    unit="s",
                ),
                Panel(
                    "heatmap",
                    "Latency distribution",
                    "Answers per latency bucket (four buckets per doubling) over time.",
                    (
                        Query(
                            rate("chassis_request_latency_seconds_bucket", "le", MODEL, *REPLICA),
                            "{{le}}",
                            heatmap=True,
                        ),
                    ),
                    unit="s",
                ),
            ),
        ),
        Row(
            "Saturation (what the autoscaler reads)",
            (
                ts(
                    "In-flight requests per replica",
                    "Predict requests being answered now on each replica "
                    "(`chassis_requests_in_flight`): the autoscaler's signal per pod.",
                    Query(
                        gauge(
                            "sum", "chassis_requests_in_flight", "instance, model", MODEL, *REPLICA
                        ),
                        "{{instance}} {{model}}",
                    ),
                ),
                ts(
                    "Queue wait p99 by model",
                    "How long queued requests waited for their batch (`chassis_queue_wait_"
                    "seconds`). Requests a fast model answers at once wait for nothing and are "
                    "not observed.",
                    Query(
                        quantile(0.99, "chassis_queue_wait_seconds", "model", MODEL, *REPLICA),
                        "{{model}} p99",
                    ),
                    unit="s",
                ),
                ts(
                    "Requests waiting (Little's law)",
                    "Seconds waited per second: the mean number of requests waiting in the "
                    "queue, 0 when idle (the KEDA ScaledObject's query).",
                    Query(
                        rate("chassis_queue_wait_seconds_sum", "model", MODEL, *REPLICA),
                        "{{model}}",
                    ),
                ),
            ),
        ),
    ),
)

BUSINESS = Dashboard(
    "chassis-business",
    "Chassis / Business",
    "Requests and errors per model and version, and answers by status class.",
    variables=(MODEL_VARIABLE, VERSION_VARIABLE),
    rows=(
        Row(
            "Overview",
            (
                stat(
                    "Answers per second",
                    "Predict answers per second, errors included, all selected models.",
                    Query(answered("", MODEL), instant=True),
                    unit="reqps",
                ),
                stat(
                    "Server-error ratio",
                    "Share of answers that were 5xx (the availability SLO's bad events; the "
                    "error-ratio alert fires above 5 %).",
                    Query(
                        ratio(
                            rate("chassis_http_errors_total", "", MODEL, SERVER_ERROR),
                            answered("", MODEL),
                        ),
                        instant=True,
                    ),
                    unit="percentunit",
                    thresholds=((0.01, "orange"), (0.05, "red")),
                ),
                stat(
                    "Client-error ratio",
                    "Share of answers that were 4xx (bad input, unknown model, limits): the "
                    "clients' errors, which spend no error budget.",
                    Query(
                        ratio(
                            rate("chassis_http_errors_total", "", MODEL, CLIENT_ERROR),
                            answered("", MODEL),
                        ),
                        instant=True,
                    ),
                    unit="percentunit",
                    thresholds=((0.05, "orange"), (0.2, "red")),
                ),
                stat(
                    "Versions answering",
                    "Versions that answered live requests in the last rate window.",
                    Query(
                        f"count({LIVE_BY_VERSION} > 0)",
                        instant=True,
                    ),
                ),
            ),
        ),
        Row(
            "Requests",
            (
                ts(
                    "Answers per second by model and version",
                    "Successful predict answers per second of each version (canary and "
                    "blue-green traffic included, mirrored runs not).",
                    Query(
                        rate("chassis_requests_total", "model, version", LIVE, MODEL, VERSION),
                        "{{model}} v{{version}}",
                    ),
                    unit="reqps",
                    stacked=True,
                ),
                ts(
                    "Answers per second by role",
                    "stable, candidate (canary or blue-green new color), preview and shadow "
                    "(mirrored runs, compared and never returned).",
                    Query(
                        rate("chassis_requests_total", "model, role", MODEL, VERSION),
                        "{{model}} {{role}}",
                    ),
                    unit="reqps",
                ),
                Panel(
                    "bargauge",
                    "Answers in the time range by version",
                    "Successful answers of each version over the dashboard's time range.",
                    (
                        Query(
                            in_range(
                                "chassis_requests_total", "model, version", LIVE, MODEL, VERSION
                            ),
                            "{{model}} v{{version}}",
                            instant=True,
                        ),
                    ),
                    width=24,
                    height=6,
                ),
            ),
        ),
        Row(
            "Errors",
            (
                ts(
                    "Error ratio by model and version",
                    "Failed runs of each version (500: the model call raised, 504: not "
                    "answered in time; `chassis_errors_total`) over all its runs: the share "
                    "the rollout analysis compares between candidate and stable.",
                    Query(version_error_ratio(MODEL, VERSION), "{{model}} v{{version}}"),
                    unit="percentunit",
                    thresholds=((0.05, "red"),),
                ),
                ts(
                    "Server-error ratio by model",
                    "Share of a model's answers that were 5xx, refusals before any version "
                    'ran included (`chassis_http_errors_total{code_class="5xx"}`).',
                    Query(
                        ratio(
                            rate("chassis_http_errors_total", "model", MODEL, SERVER_ERROR),
                            answered("model", MODEL),
                        ),
                        "{{model}}",
                    ),
                    unit="percentunit",
                    thresholds=((0.05, "red"),),
                ),
                ts(
                    "Error answers per second by code class",
                    "4xx (the client's: bad input, 401, 404, 413) and 5xx (the service's) "
                    "answers per second.",
                    Query(
                        rate("chassis_http_errors_total", "model, code_class", MODEL),
                        "{{model}} {{code_class}}",
                    ),
                    unit="reqps",
                    stacked=True,
                ),
                ts(
                    "Error answers per second by status",
                    'Every error status the gateway answered, by model. Model "" counts '
                    "paths that name no served model (not shown when a model is selected).",
                    Query(
                        rate("chassis_http_errors_total", "model, status", MODEL),
                        "{{model}} {{status}}",
                    ),
                    unit="reqps",
                ),
            ),
        ),
    ),
)

MODEL_DASHBOARD = Dashboard(
    "chassis-model",
    "Chassis / Model",
    "Per version: prediction time, predicted classes and confidence. Live accuracy is on "
    "the Chassis / Ground truth and drift dashboard.",
    variables=(MODEL_VARIABLE, VERSION_VARIABLE),
    rows=(
        Row(
            "Prediction time",
            (
                ts(
                    "Model CPU time per row, by version",
                    "p50 and p99 of the CPU time per row of each model call "
                    "(`chassis_model_cpu_seconds`): the model's own cost, independent of "
                    "load. Observed for queued batches and mirrored calls.",
                    *(
                        Query(
                            quantile(
                                q, "chassis_model_cpu_seconds", "model, version", MODEL, VERSION
                            ),
                            f"{{{{model}}}} v{{{{version}}}} p{round(q * 100)}",
                        )
                        for q in (0.5, 0.99)
                    ),
                    unit="s",
                ),
                ts(
                    "Latency p99 by version",
                    "p99 of each version's predict latency in the gateway (queue wait plus "
                    "model call).",
                    Query(
                        quantile(
                            0.99,
                            "chassis_request_latency_seconds",
                            "model, version",
                            MODEL,
                            VERSION,
                        ),
                        "{{model}} v{{version}}",
                    ),
                    unit="s",
                ),
                ts(
                    "Mean latency by version",
                    "Mean predict latency of each version.",
                    Query(
                        mean("chassis_request_latency_seconds", "model, version", MODEL, VERSION),
                        "{{model}} v{{version}}",
                    ),
                    unit="s",
                ),
            ),
        ),
        Row(
            "Predictions",
            (
                ts(
                    "Predicted-class share by version",
                    "Each class's share of a version's answered rows "
                    "(`chassis_predicted_class_total`): a shift here is a shift in what the "
                    "model sees or in the model.",
                    Query(
                        f"{CLASSES} / ignoring (label) group_left {CLASSED_ROWS}",
                        "{{model}} v{{version}} class {{label}}",
                    ),
                    unit="percentunit",
                    stacked=True,
                ),
                Panel(
                    "bargauge",
                    "Predicted classes in the time range",
                    "Rows answered with each class over the dashboard's time range.",
                    (
                        Query(
                            in_range("chassis_predicted_class_total", "label", MODEL, VERSION),
                            "class {{label}}",
                            instant=True,
                        ),
                    ),
                ),
                Panel(
                    "heatmap",
                    "Confidence distribution",
                    "Answered rows per confidence bucket (the top class's softmax "
                    "probability; a sample of one answer in 16).",
                    (
                        Query(
                            rate(
                                "chassis_prediction_confidence_ratio_bucket", "le", MODEL, VERSION
                            ),
                            "{{le}}",
                            heatmap=True,
                        ),
                    ),
                    unit="percentunit",
                ),
                ts(
                    "Mean confidence by version",
                    "Mean top-class probability of each version's sampled answers.",
                    Query(
                        mean(
                            "chassis_prediction_confidence_ratio", "model, version", MODEL, VERSION
                        ),
                        "{{model}} v{{version}}",
                    ),
                    unit="percentunit",
                ),
            ),
        ),
    ),
)

INVALID_STATUSES = 'status=~"400|413|415|422"'
DATA_QUALITY = Dashboard(
    "chassis-data-quality",
    "Chassis / Data quality",
    "What the gateway can see of its inputs: refused rows (missing values, wrong shape), "
    "low-confidence answers, prediction-log drops. Drift share is on the Chassis / Ground "
    "truth and drift dashboard.",
    variables=(MODEL_VARIABLE, VERSION_VARIABLE),
    rows=(
        Row(
            "Inputs",
            (
                ts(
                    "Invalid-input share by model",
                    "Share of a model's answers that refused the input: 422 (a missing or "
                    "non-numeric value, a wrong number of features, no instances), 400 "
                    "(malformed JSON, NaN or infinity), 413 (too large), 415 (not JSON). The "
                    "gateway refuses such rows whole: it never predicts on a missing value.",
                    Query(
                        ratio(
                            rate("chassis_http_errors_total", "model", MODEL, INVALID_STATUSES),
                            answered("model", MODEL),
                        ),
                        "{{model}}",
                    ),
                    unit="percentunit",
                ),
                ts(
                    "Invalid inputs per second by status",
                    "Refused inputs per second by status (see the panel on the left).",
                    Query(
                        rate("chassis_http_errors_total", "model, status", MODEL, INVALID_STATUSES),
                        "{{model}} {{status}}",
                    ),
                    unit="reqps",
                ),
                ts(
                    "Text inputs refused per second",
                    "A text model's requests refused before it ran "
                    "(`chassis_text_refused_total`: too_long, empty, not_text); 0 for models "
                    "that read numbers.",
                    Query(
                        or_zero(
                            rate("chassis_text_refused_total", "model", MODEL),
                            rate("chassis_requests_total", "model", LIVE, MODEL),
                        ),
                        "{{model}}",
                    ),
                    unit="reqps",
                ),
            ),
        ),
        Row(
            "Outliers and logging",
            (
                ts(
                    "Low-confidence share by version",
                    "Share of sampled answers whose confidence was at most 0.5: rows far from "
                    "what the model learned (outliers, new kinds of input) raise it. A proxy: "
                    "the gateway exports no per-feature outlier count.",
                    Query(
                        f"{LOW_CONFIDENCE_ROWS} / {CONFIDENCE_ROWS}",
                        "{{model}} v{{version}}",
                    ),
                    unit="percentunit",
                ),
                ts(
                    "Prediction-log rows dropped per second",
                    "Rows the prediction log dropped because its buffer was full "
                    "(`chassis_prediction_log_dropped_rows_total`): drift checks then see "
                    "fewer rows than were answered.",
                    Query(
                        rate("chassis_prediction_log_dropped_rows_total", "model", MODEL),
                        "{{model}}",
                    ),
                ),
            ),
        ),
    ),
)

ROLLOUTS = Dashboard(
    "chassis-rollouts",
    "Chassis / Rollouts",
    "Canary, shadow and blue-green rollouts over time: the candidate's share, the rollout "
    "generation each replica serves, the versions held by role, and what the rollout "
    "analysis compares (errors, p99 latency, shadow agreement).",
    variables=(MODEL_VARIABLE,),
    rows=(
        Row(
            "Split",
            (
                ts(
                    "Candidate share of live answers",
                    "Share of a model's successful live answers given by the candidate "
                    "(canary or blue-green new color): each rollout step shows as a level.",
                    Query(
                        ratio(
                            rate("chassis_requests_total", "model", MODEL, CANDIDATE),
                            rate("chassis_requests_total", "model", MODEL, LIVE),
                        ),
                        "{{model}}",
                    ),
                    unit="percentunit",
                    stepped=True,
                ),
                ts(
                    "Rollout generation by replica",
                    "The rollout record generation each replica serves "
                    "(`chassis_rollout_generation`): a new step raises it; a replica below the "
                    "others has not followed the record yet.",
                    Query(
                        gauge("max", "chassis_rollout_generation", "model, instance", MODEL),
                        "{{model}} {{instance}}",
                    ),
                    stepped=True,
                ),
                stat(
                    "Generation spread",
                    "Newest minus oldest generation served across replicas: 0 once every "
                    "replica follows the same record.",
                    Query(
                        f"max by (model) (chassis_rollout_generation{selector(MODEL)}) - "
                        f"min by (model) (chassis_rollout_generation{selector(MODEL)})",
                        "{{model}}",
                        instant=True,
                    ),
                    thresholds=((1, "orange"),),
                ),
                stat(
                    "Replicas holding a candidate",
                    "Replicas that hold a candidate version (canary, shadow or blue-green "
                    "idle color) now.",
                    Query(
                        f"count by (model) (chassis_model_version_info{selector(MODEL, CANDIDATE)})"
                        f" or 0 * count by (model) (chassis_model_version_info{selector(MODEL)})",
                        "{{model}}",
                        instant=True,
                    ),
                ),
                ts(
                    "Replicas holding each version, by role",
                    "How many replicas hold each version as stable, candidate or warm "
                    "(`chassis_model_version_info`): a promotion shows the candidate becoming "
                    "stable and the old version warm.",
                    Query(
                        gauge("sum", "chassis_model_version_info", "model, version, role", MODEL),
                        "{{model}} v{{version}} {{role}}",
                    ),
                    stepped=True,
                    width=24,
                ),
            ),
        ),
        Row(
            "What the analysis compares",
            (
                ts(
                    "Error ratio by version",
                    "Failed runs over all runs of each version: a candidate above stable "
                    "rolls back.",
                    Query(version_error_ratio(MODEL), "{{model}} v{{version}}"),
                    unit="percentunit",
                ),
                ts(
                    "Latency p99 by version",
                    "p99 predict latency of each version, candidate against stable.",
                    Query(
                        quantile(0.99, "chassis_request_latency_seconds", "model, version", MODEL),
                        "{{model}} v{{version}}",
                    ),
                    unit="s",
                ),
                ts(
                    "Shadow agreement by version",
                    "Share of mirrored rows whose answer equals the other version's "
                    "(`chassis_shadow_comparisons_total`), for the version judged.",
                    Query(
                        ratio(
                            rate(
                                "chassis_shadow_comparisons_total",
                                "model, version",
                                MODEL,
                                'agreed="yes"',
                            ),
                            rate("chassis_shadow_comparisons_total", "model, version", MODEL),
                        ),
                        "{{model}} v{{version}}",
                    ),
                    unit="percentunit",
                ),
                ts(
                    "Mirrored runs per second by version",
                    "Requests run on a version off the request path to compare it (role shadow).",
                    Query(
                        rate("chassis_requests_total", "model, version", MODEL, 'role="shadow"'),
                        "{{model}} v{{version}}",
                    ),
                    unit="reqps",
                ),
            ),
        ),
    ),
)

# Ground truth (the feedback endpoint's metrics) and drift (pushed by the drift check).
FEEDBACK = (MODEL, VERSION)
CORRECT = (*FEEDBACK, 'outcome="correct"')
JUDGED = (*FEEDBACK, 'outcome=~"correct|wrong"')
GROUND_TRUTH = Dashboard(
    "chassis-ground-truth",
    "Chassis / Ground truth and drift",
    "Live accuracy from the feedback endpoint, against the model's gate, and the drift "
    "share of the last drift check (pushed to a Pushgateway, scraped with honor_labels).",
    variables=(MODEL_VARIABLE, VERSION_VARIABLE),
    rows=(
        Row(
            "Live accuracy",
            (
                ts(
                    "Live accuracy by version over the last hour, and its gate",
                    "Share of a version's predictions with feedback whose class was right, "
                    "over all replicas in the last hour (`chassis_feedback_total`: correct "
                    "over correct and wrong), against the accuracy the version's gates ask of "
                    "it (`chassis_accuracy_gate_ratio`). Below it, the drift check emits the "
                    "event the retraining deployment triggers on.",
                    Query(
                        ratio(
                            increase("chassis_feedback_total", "1h", "model, version", *CORRECT),
                            increase("chassis_feedback_total", "1h", "model, version", *JUDGED),
                        ),
                        "{{model}} v{{version}}",
                    ),
                    Query(
                        gauge("max", "chassis_accuracy_gate_ratio", "model, version", *FEEDBACK),
                        "{{model}} v{{version}} gate",
                    ),
                    unit="percentunit",
                ),
                ts(
                    "Live accuracy per replica",
                    "Each replica's accuracy over a version's last labels "
                    "(`chassis_live_accuracy_ratio`; 1,000 by default): what the "
                    "live-accuracy alert reads.",
                    Query(
                        gauge(
                            "max",
                            "chassis_live_accuracy_ratio",
                            "model, version, instance",
                            *FEEDBACK,
                        ),
                        "{{model}} v{{version}} {{instance}}",
                    ),
                    unit="percentunit",
                ),
                ts(
                    "Feedback per second by outcome",
                    "Labels accepted and joined with a prediction, per version and outcome "
                    "(`chassis_feedback_total`: correct, wrong; scored for a regressor).",
                    Query(
                        rate("chassis_feedback_total", "model, version, outcome", *FEEDBACK),
                        "{{model}} v{{version}} {{outcome}}",
                    ),
                    unit="reqps",
                ),
                ts(
                    "Feedback refused per second by reason",
                    "Feedback answered with a 4xx (`chassis_feedback_refused_total`): "
                    "malformed, unknown_id, too_late, duplicate, bad_label.",
                    Query(
                        rate("chassis_feedback_refused_total", "model, reason", MODEL),
                        "{{model}} {{reason}}",
                    ),
                    unit="reqps",
                ),
            ),
        ),
        Row(
            "Drift",
            (
                ts(
                    "Drift share of the last check",
                    "Share of features the last drift check found drifted "
                    "(`chassis_drift_share_ratio`; its name is not settled yet).",
                    Query(
                        gauge("max", "chassis_drift_share_ratio", "model", MODEL),
                        "{{model}}",
                    ),
                    unit="percentunit",
                    width=24,
                ),
            ),
        ),
    ),
)

DASHBOARDS = (SYSTEM, BUSINESS, MODEL_DASHBOARD, DATA_QUALITY, ROLLOUTS, GROUND_TRUTH)


# ---- Grafana's JSON model ----------------------------------------------------------------


def variable_json(variable: Variable) -> dict[str, Any]:
    return {
        "name": variable.name,
        "label": variable.label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": variable.query,
        # The classic string form: every Grafana version reads it (newer ones migrate it
        # to their query editor's object on load).
        "query": variable.query,
        "refresh": 2,  # on time range change: versions come and go
        "sort": 1,
        "multi": variable.include_all,
        "includeAll": variable.include_all,
        "current": {},
        "options": [],
        "hide": 0,
        "regex": "",
        "skipUrlSync": False,
    }


def datasource_variable() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "options": [],
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def target_json(query: Query, ref_id: str) -> dict[str, Any]:
    target: dict[str, Any] = {
        "datasource": DATASOURCE,
        "refId": ref_id,
        "expr": query.expr,
        "legendFormat": query.legend or "__auto",
        "range": not query.instant,
        "instant": query.instant,
        "editorMode": "code",
    }
    if query.heatmap:
        target["format"] = "heatmap"
    return target


def field_config(panel: Panel) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    steps += [{"color": colour, "value": value} for value, colour in panel.thresholds]
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "thresholds": {"mode": "absolute", "steps": steps},
        "color": {"mode": "thresholds" if panel.kind == "stat" else "palette-classic"},
    }
    if panel.unit == "percentunit":
        defaults |= {"min": 0, "max": 1}
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineInterpolation": "stepAfter" if panel.stepped else "linear",
            "lineWidth": 1,
            "fillOpacity": 20 if panel.stacked else 0,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if panel.stacked else "none", "group": "A"},
            "thresholdsStyle": {"mode": "line" if panel.thresholds else "off"},
        }
    return {"defaults": defaults, "overrides": []}


def options(panel: Panel) -> dict[str, Any]:
    reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    if panel.kind == "timeseries":
        return {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if panel.kind == "stat":
        return {
            "reduceOptions": reduce,
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
        }
    if panel.kind == "bargauge":
        return {
            "reduceOptions": reduce,
            "displayMode": "gradient",
            "orientation": "horizontal",
            "showUnfilled": True,
        }
    if panel.kind == "heatmap":
        return {
            "calculate": False,  # Prometheus buckets, already counted
            "yAxis": {"axisPlacement": "left", "unit": panel.unit},
            "rowsFrame": {"layout": "auto"},
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64, "exponent": 0.5},
            "cellGap": 1,
            "tooltip": {"show": True, "yHistogram": False},
            "legend": {"show": True},
        }
    return {"mode": "markdown", "content": panel.content}


class Layout:
    """Panel ids and grid positions, left to right and top to bottom on Grafana's 24
    columns; ids are unique within a dashboard."""

    def __init__(self) -> None:
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.row_height = 0

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def place(self, width: int, height: int) -> dict[str, int]:
        if self.x + width > 24:
            self.newline()
        position = {"h": height, "w": width, "x": self.x, "y": self.y}
        self.x += width
        self.row_height = max(self.row_height, height)
        return position

    def newline(self) -> None:
        self.y += self.row_height
        self.x = 0
        self.row_height = 0


def panel_json(panel: Panel, layout: Layout) -> dict[str, Any]:
    result: dict[str, Any] = {
        "id": layout.new_id(),
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "gridPos": layout.place(panel.width, panel.height),
        "fieldConfig": field_config(panel),
        "options": options(panel),
    }
    if panel.queries:
        result["datasource"] = DATASOURCE
        result["targets"] = [
            target_json(query, chr(ord("A") + index)) for index, query in enumerate(panel.queries)
        ]
    return result


def dashboard_json(dashboard: Dashboard) -> dict[str, Any]:
    layout = Layout()
    panels: list[dict[str, Any]] = []
    for row in dashboard.rows:
        layout.newline()
        panels.append(
            {
                "id": layout.new_id(),
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": layout.place(24, 1),
                "panels": [],
            }
        )
        layout.newline()
        panels += [panel_json(panel, layout) for panel in row.panels]
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": [TAG, *dashboard.extra_tags],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,  # a shared crosshair: steps line up across panels
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "id": None,
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "Chassis dashboards",
                "type": "dashboards",
                "tags": [TAG],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": {
            "list": [datasource_variable(), *(variable_json(v) for v in dashboard.variables)]
        },
        "panels": panels,
    }


def file_name(dashboard: Dashboard) -> str:
    return f"{dashboard.uid}.json"


def rendered() -> dict[str, str]:
    """Each dashboard's file name and JSON text, as committed."""
    return {
        file_name(d): json.dumps(dashboard_json(d), indent=2, ensure_ascii=False) + "\n"
        for d in DASHBOARDS
    }


def config_map(files: dict[str, str]) -> str:
    """The ConfigMap Grafana's dashboard sidecar (label grafana_dashboard) loads: the same
    JSON, compact (a ConfigMap holds at most 1 MiB)."""
    document = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "chassis-grafana-dashboards",
            "labels": {"grafana_dashboard": "1", "app.kubernetes.io/name": "chassis-grafana"},
            "annotations": {"grafana_folder": "Chassis"},
        },
        "data": {
            name: json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
            for name, text in sorted(files.items())
        },
    }
    header = (
        "# Generated by `python -m deployments.grafana_dashboards` from the dashboards in\n"
        "# deployments/grafana/dashboards/ (do not edit): Grafana's dashboard sidecar loads\n"
        "# ConfigMaps labelled grafana_dashboard (docs/dashboards.md).\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, width=1 << 20)


def main() -> None:
    FOLDER.mkdir(parents=True, exist_ok=True)
    files = rendered()
    for stale in set(p.name for p in FOLDER.glob("*.json")) - set(files):
        (FOLDER / stale).unlink()
    for name, text in files.items():
        (FOLDER / name).write_text(text)
    CONFIG_MAP.write_text(config_map(files))
    print(f"wrote {len(files)} dashboards to {FOLDER} and {CONFIG_MAP}")


if __name__ == "__main__":
    main()
