"""Closing the loop: retraining on a drift event, and rollouts of challengers set by hand."""

from typing import Annotated

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from chassis.errors import RegistryError
from chassis.registry import Registry
from chassis.registry.tags import TAG_GATES, TAG_SPEC
from chassis.settings import ChassisSettings
from flows.parameters import ModelParameter
from flows.promotion import gates
from flows.release import release
from flows.rollout import rollout
from flows.run_form import described
from flows.run_names import by_models
from tasks.alias_changes import actor
from tasks.promotion import retire_challenger


class RetrainOutcome(BaseModel):
    model_name: str
    retrained: bool
    reason: str
    released_version: int | None = None


@described
@flow(name="retrain", flow_run_name="retrain {model_name}", log_prints=True)
def retrain(
    model_name: ModelParameter,
    champion_version: Annotated[
        int | None, Field(description="The champion that drifted (from the drift event).")
    ] = None,
    drifted_share: Annotated[
        float | None,
        Field(ge=0, le=1, description="Share of drifted columns (from the drift event)."),
    ] = None,
    live_accuracy: Annotated[
        float | None,
        Field(
            ge=0,
            le=1,
            description="The champion's live accuracy, below its accuracy gate (from the "
            "accuracy event; empty for a drift event).",
        ),
    ] = None,
    cooldown_minutes: Annotated[
        float, Field(ge=0, description="No second retraining of a model within this time.")
    ] = 60,
) -> RetrainOutcome:
    """Retrain the model's spec on the data its loader returns now, compress, gate,
    register a challenger and roll it out by canary: the release loop, started by a drift
    event or by the accuracy event (live accuracy below the champion's accuracy gate).
    Within the cooldown (or while another retraining holds it) nothing happens and the run
    says why."""
    settings = ChassisSettings()
    registry = Registry.from_settings(settings)
    logger = get_run_logger()
    claimed, why = registry.claim_retrain(model_name, cooldown_minutes * 60, actor())
    if not claimed:
        logger.info("not retraining: %s", why)
        return RetrainOutcome(model_name=model_name, retrained=False, reason=why)
    champion = champion_version or registry.version_for_alias(model_name, "champion")
    if champion is None:
        return RetrainOutcome(model_name=model_name, retrained=False, reason="no champion")
    _, tags = registry.lineage_root(model_name, champion)
    spec = tags[TAG_SPEC]
    if live_accuracy is not None:
        reason = f"live accuracy {live_accuracy:.1%} below the accuracy gate of v{champion}"
    else:
        reason = f"drift on v{champion}" + (
            f" ({drifted_share:.0%} of columns)" if drifted_share else ""
        )
    logger.info("retraining %s from %s: %s", model_name, spec, reason)
    outcome = release(spec=spec, compression="on", rollout_strategy="canary")
    if outcome.no_change:
        # The loader's data trained the same model again: nothing new to release.
        return RetrainOutcome(
            model_name=model_name, retrained=True, reason=f"{reason}; {outcome.no_change}"
        )
    return RetrainOutcome(
        model_name=model_name,
        retrained=True,
        reason=reason,
        released_version=outcome.candidate_version,
    )


@described
@flow(name="registry_watch", flow_run_name=by_models("registry watch"), log_prints=True)
def registry_watch(
    model_names: Annotated[
        list[str] | str,
        Field(
            min_length=1,
            description="Models to watch (a list, or one name as the event trigger passes it).",
        ),
    ],
) -> dict[str, int]:
    """Honour promotions made by hand in the MLflow registry: a `challenger` alias set
    outside Chassis starts a canary rollout of that version. Runs from the
    `chassis.model.challenger-set` event (`chassis webhook-relay` emits it for MLflow's
    webhook, which only an `mlflow server` on a SQL store sends) and on a schedule, which
    works with every MLflow backend. Either way it reads the registry itself: an alias that
    Chassis moved (it is audited) or that was rolled out already starts nothing."""
    settings = ChassisSettings()
    registry = Registry.from_settings(settings)
    logger = get_run_logger()
    started: dict[str, int] = {}
    refused: list[str] = []
    # A trigger's parameters are rendered per value: a list holding a template would be
    # emptied by `prefect deploy`, so the event's trigger passes the one name as a string.
    for name in [model_names] if isinstance(model_names, str) else model_names:
        if not registry.list_versions(name):
            # Deployed before the model's first release: nothing to watch yet, not a failure.
            logger.warning("%s has no registered version yet; nothing to watch", name)
            continue
        version = registry.unaudited_challenger(name)
        if version is None:
            continue
        logger.info("%s: challenger v%d was set by hand; rolling it out", name, version)
        problem = _gate_hand_set_challenger(registry, name, version)
        if problem is None:
            try:
                rollout(model_name=name, version=version, strategy="canary")
                started[name] = version
            except Exception as error:  # a failed analysis has retired the alias already
                problem = f"its rollout failed: {error}"
        if problem is not None:
            logger.error("%s v%d, set by hand as challenger: %s", name, version, problem)
            refused.append(f"{name} v{version}: {problem}")
    if refused:
        # The other models were still handled; the run fails so the UI shows what was refused.
        raise RegistryError("hand-set challenger(s) not promoted: " + "; ".join(refused))
    return started


def _gate_hand_set_challenger(registry: Registry, name: str, version: int) -> str | None:
    """Why the hand-set challenger may not take traffic, or None when its gates passed.

    A refused challenger loses the alias with an audit record saying why, so the next poll
    (or a repeated webhook) does not try it again every minute; setting it again by hand
    starts a new attempt.
    """
    try:
        if TAG_GATES not in registry.version_tags(name, version):
            gates(model_name=name, version=version)
        registry.require_passed_gates(name, version)
        return None
    except Exception as error:  # gates failed, or could not be measured: never take traffic
        reason = f"set by hand as challenger, refused: {error}"
        retire_challenger(registry, name, version, reason)
        return f"refused by its gates: {error}"
