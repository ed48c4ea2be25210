"""Prefect events for Alertmanager alerts (relayed by `chassis webhook-relay`)."""

from typing import Any

from prefect.events import emit_event

from chassis.alert_delivery import Alert
from tasks.monitoring import model_resource

ALERT_FIRING_EVENT = "chassis.alert.firing"
ALERT_RESOLVED_EVENT = "chassis.alert.resolved"


def alert_resource(alert: Alert) -> dict[str, str]:
    """The model the alert is about (so a trigger runs once per model, as drift's does), or
    the alert itself for one about a replica; with the alert's name and severity to match."""
    if alert.model is not None:
        resource = model_resource(alert.model)
    else:
        resource = {"prefect.resource.id": f"chassis.alert.{alert.name}"}
    return {
        **resource,
        "chassis.alert.name": alert.name,
        "chassis.alert.severity": alert.labels.get("severity", ""),
    }


def emit_alerts(alerts: list[Alert]) -> None:
    """One event per alert that fired or resolved; raises if Prefect refused any (the relay
    then answers 503 and Alertmanager delivers again)."""
    for alert in alerts:
        payload: dict[str, Any] = {
            "labels": alert.labels,
            "annotations": alert.annotations,
            "starts_at": alert.starts_at,
            "fingerprint": alert.fingerprint,
            "generator_url": alert.generator_url,
        }
        emitted = emit_event(
            event=ALERT_FIRING_EVENT if alert.status == "firing" else ALERT_RESOLVED_EVENT,
            resource=alert_resource(alert),
            payload=payload,
        )
        if emitted is None:
            raise RuntimeError("Prefect did not accept the event (no events client configured)")
