"""Prefect events for registry moves made outside Chassis (relayed from MLflow webhooks)."""

from prefect.events import emit_event

from chassis.registry_webhooks import AliasSet
from tasks.monitoring import model_resource

CHALLENGER_SET_EVENT = "chassis.model.challenger-set"


def emit_challenger_set(event: AliasSet) -> None:
    """Tell Prefect a challenger alias was set; the registry-watch deployment's trigger
    runs a check of that model (which rolls the version out if no Chassis move set it)."""
    emitted = emit_event(
        event=CHALLENGER_SET_EVENT,
        resource=model_resource(event.model_name),
        payload={
            "model_name": event.model_name,
            "version": event.version,
            "delivery_id": event.delivery_id,
        },
    )
    if emitted is None:
        raise RuntimeError("Prefect did not accept the event (no events client configured)")
