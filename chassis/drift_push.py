"""The drift check's result for Prometheus, pushed to a Pushgateway.

A drift check is a batch job (a Prefect flow run), gone before any scrape: Prometheus's
convention for such a job is to push its last result to a Pushgateway, which Prometheus
scrapes (with `honor_labels: true`). One group per model (job `chassis-drift`, label
`model`), replaced whole at each push, so a model's series always describe its latest
judged check. Only checks that reached a verdict push: a data-quality failure judged no
drift, and the staleness alert (time since the last push) says that no verdict came.
"""

from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import push_to_gateway

from chassis.drift import DriftResult

PUSH_JOB = "chassis-drift"
PUSH_TIMEOUT_SECONDS = 10.0


def drift_registry(result: DriftResult, checked_at: datetime) -> CollectorRegistry:
    """The check's three gauges, unlabelled: the group's `model` label names the model."""
    registry = CollectorRegistry()
    Gauge(
        "chassis_drift_share_ratio",
        "Share of the judged features that drifted in the model's last drift check (0-1).",
        registry=registry,
    ).set(result.drifted_share)
    Gauge(
        "chassis_drift_detected",
        "1 when the model's last drift check found dataset drift, else 0.",
        registry=registry,
    ).set(1.0 if result.verdict == "drift" else 0.0)
    Gauge(
        "chassis_drift_check_timestamp_seconds",
        "Unix time of the model's last drift check that reached a verdict.",
        registry=registry,
    ).set(checked_at.timestamp())
    return registry


def push_drift(url: str, model: str, result: DriftResult, checked_at: datetime) -> None:
    """Replace the model's group on the Pushgateway at `url` with this check's gauges."""
    push_to_gateway(
        url,
        job=PUSH_JOB,
        grouping_key={"model": model},
        registry=drift_registry(result, checked_at),
        timeout=PUSH_TIMEOUT_SECONDS,
    )
