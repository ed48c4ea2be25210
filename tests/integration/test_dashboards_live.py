"""Every query of every shipped Grafana dashboard, run against a real Prometheus that scrapes
two real gateway replicas under traffic, returns data.

The replicas serve v1 with v2 as a canary (a committed rollout record, as the rollout flow
writes it: half the keys to v2, every request mirrored), so the rollout panels have a
candidate, a generation and shadow comparisons to show. v2 is `fails_on_outliers` (a 500
for a row far out: version errors and 5xx answers). Traffic mixes one-row requests, bursts
of large ones (a fast model's next calls then go through the batcher's queue, whose wait
and CPU time are observed), outliers, invalid input (422) and an unknown model (404).
Template variables take the values Grafana would offer (their label_values queries, run
against the same Prometheus, every value selected); Grafana's interval variables get fixed
windows a 1 s scrape fills. The drift panel reads what a drift check pushed to a real
Pushgateway (Debian's), which the same Prometheus scrapes as the shipped
deployments/prometheus/prometheus.yml does."""

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chassis.drift_push import push_drift
from chassis.rollout.record import RolloutRecord
from chassis.serving.client import GatewayClient
from deployments import grafana_checks
from deployments.grafana_checks import PanelQuery
from tests.fixtures.fault_gateway import admin_headers, home_environment, release_into
from tests.fixtures.gateway import MODEL, GatewayProcess
from tests.fixtures.prometheus import PrometheusServer
from tests.fixtures.pushgateway import pushgateway
from tests.fixtures.registries import home_registry

ROW = [0.5, -1.0, 2.0, 0.0]
OUTLIER = [5000.0, 0.0, 0.0, 0.0]  # fails_on_outliers fails on it (a 500 from v2 alone)
# Calls of ~1 ms here (well above batching.INLINE_BUDGET_SECONDS even on a faster CPU):
# after three in a row the batcher's moving average of a call is over that budget, so the
# next requests are queued, and their wait and their batches' CPU time are observed.
BIG = [ROW] * 16384
BURSTS: list[tuple[str, list[Any]]] = [(MODEL, BIG)] * 5
# (model, rows) of each request of a round, to each replica.
MIX: list[tuple[str, list[Any]]] = [
    *[(MODEL, [ROW])] * 6,
    (MODEL, [OUTLIER]),
    (MODEL, [[1.0, None, 3.0, 4.0]]),  # a missing value: 422
    ("nobody", [ROW]),  # no model of that name: 404
]
# Grafana's interval variables: a rate window of several 1 s scrapes, a short range.
INTERVALS = {
    "__rate_interval": "10s",
    "__interval": "2s",
    "__interval_ms": "2000",
    "__range": "1m",
    "__range_s": "60",
}
DATA_WITHIN_SECONDS = 60
# The ground-truth panels have data to show: the traffic labels some of its predictions,
# rightly or not, and sends some labels the model has no class for.
CLASSES = 3  # test-blobs' (tests/fixtures/specs.py)
NO_SUCH_CLASS = 99
# Read by a panel, yet not rendered by these gateways (their panel shows 0 instead).
NOT_RENDERED_HERE = {"chassis_text_refused_total": "a text model's; these serve numbers"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("dashboards") / "chassis"
    release_into(home, "tests.fixtures.specs:good")  # v1, the champion
    release_into(home, "tests.fixtures.specs:fails_on_outliers", rollout_strategy="none")  # v2
    return home


@pytest.fixture(scope="module")
def replicas(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Two replicas serving v1 with v2 as a canary at 50 %, every request mirrored."""
    gateways = [
        GatewayProcess(
            home,
            env={
                "CHASSIS_GATEWAY_LOCAL_DIR": str(tmp_path_factory.mktemp(f"replica-{i}")),
                "CHASSIS_GATEWAY_MAX_ROWS": str(len(BIG)),
                "CHASSIS_GATEWAY_MAX_BODY_BYTES": str(8 << 20),
            },
        )
        for i in range(2)
    ]
    for gateway in gateways:
        gateway.launch()
    try:
        for gateway in gateways:
            gateway.wait_ready()
        token = admin_headers(home)["Authorization"].removeprefix("Bearer ")
        with home_environment(home):
            current = home_registry().read_rollout_record(MODEL)
            record = home_registry().write_rollout_record(
                MODEL,
                RolloutRecord(
                    generation=0,
                    mode="canary",
                    stable_version=1,
                    candidate_version=2,
                    percent=50.0,
                    mirror_percent=100.0,
                ),
                current.generation if current else 0,
                "test",
            )
        for gateway in gateways:
            client = GatewayClient(gateway.url, token)
            assert client.sync(MODEL)["generation"] == record.generation
            client.close()
        yield [gateway.url for gateway in gateways]
    finally:
        for gateway in gateways:
            gateway.stop()


class Traffic:
    """Requests to every replica from a thread, until stopped: mostly one valid row, bursts
    of large requests, some outliers, some invalid, some for a model nobody serves."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.stopping = threading.Event()
        self.statuses: dict[int, int] = {}
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            cycle = 0
            while not self.stopping.is_set():
                cycle += 1
                for url in self.urls:
                    bodies = MIX + (BURSTS if cycle % 8 == 1 else [])
                    for index, (model, rows) in enumerate(bodies):
                        response = client.post(
                            f"{url}/v1/models/{model}/predict",
                            json={"instances": rows},
                            headers={"x-request-key": f"user-{cycle}-{index}"},
                        )
                        status = response.status_code
                        self.statuses[status] = self.statuses.get(status, 0) + 1
                        if status == 200 and len(rows) == 1:
                            self.label(client, url, response.json(), index)

    @staticmethod
    def label(client: httpx.Client, url: str, answer: dict[str, Any], index: int) -> None:
        """Feedback for a one-row answer: its own class (correct), another (wrong), or one
        the model does not have (refused)."""
        predicted = int(answer["predictions"][0])
        label = [predicted, (predicted + 1) % CLASSES, NO_SUCH_CLASS][index % 3]
        client.post(
            f"{url}/v1/models/{MODEL}/feedback", json={"id": answer["ids"][0], "label": label}
        )

    def __enter__(self) -> "Traffic":
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)


def variable_values(prometheus: PrometheusServer, dashboard: dict[str, Any]) -> dict[str, str]:
    """What Grafana would put in each template variable: every value its label_values query
    finds (all selected), or the first for a single-value variable; {} while one finds none."""
    values = dict(INTERVALS)
    for name, query, multi in grafana_checks.variables(dashboard):
        selector, label = grafana_checks.label_values(query)
        match = grafana_checks.substitute(selector, values) if selector else None
        found = sorted(prometheus.label_values(label, match))
        if not found:
            return {}
        values[name] = grafana_checks.regex_value(found if multi else found[:1])
    return values


def empty_queries(
    prometheus: PrometheusServer, dashboards: dict[str, dict[str, Any]], live: list[PanelQuery]
) -> list[str]:
    """Each query (where, and the expression run) that returns no series now."""
    values = {name: variable_values(prometheus, d) for name, d in dashboards.items()}
    empty: list[str] = []
    for query in live:
        if not values[query.dashboard]:
            empty.append(f"{query.where}: a template variable has no value yet")
            continue
        expr = grafana_checks.substitute(query.expr, values[query.dashboard])
        if not prometheus.query(expr):
            empty.append(f"{query.where}: no data from {expr}")
    return empty


@pytest.fixture
def prometheus(replicas: list[str], tmp_path: Path) -> Iterator[PrometheusServer]:
    targets = [url.removeprefix("http://") for url in replicas]
    with pushgateway(tmp_path / "pushgateway.log") as pushed_to:
        # What a drift check of the model pushes (chassis/drift_push.py), a quarter drifted.
        result: Any = SimpleNamespace(drifted_share=0.25, verdict="no drift")
        push_drift(pushed_to, MODEL, result, datetime.now(UTC))
        server = PrometheusServer(
            tmp_path / "prometheus", targets, pushgateway=pushed_to.removeprefix("http://")
        ).start()
        yield server
        server.stop()


def test_every_dashboard_query_returns_data_from_a_live_prometheus(replicas, prometheus):
    dashboards = grafana_checks.load()
    every = [q for name, d in dashboards.items() for q in grafana_checks.queries(name, d)]
    live = every
    # Not vacuous: the dashboards the issue asks for, every panel of them.
    assert len(dashboards) == 6 and len(live) >= 45, (len(dashboards), len(live))
    with Traffic(replicas) as traffic:
        deadline = time.monotonic() + DATA_WITHIN_SECONDS
        while empty := empty_queries(prometheus, dashboards, live):
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)  # the next scrape, every second
    assert {200, 404, 422, 500} <= set(traffic.statuses), traffic.statuses
    # The names the unit checks take from the gateway's registry are what it really renders.
    rendered = {
        sample.name
        for url in replicas
        for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
        for sample in family.samples
    }
    read = set().union(*(grafana_checks.metric_names(q.expr) for q in live))
    expected_missing = (
        grafana_checks.PROMETHEUS_SERIES
        | set(NOT_RENDERED_HERE)
        | grafana_checks.pushed_metric_names()  # the Pushgateway's, not the gateway's
    )
    assert read - rendered <= expected_missing, read - rendered
    assert rendered <= grafana_checks.known_metrics(), rendered - grafana_checks.known_metrics()
    assert not empty, f"{len(empty)} of {len(live)} queries returned no data:\n" + "\n".join(empty)
