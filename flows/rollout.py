"""Staged rollout of a challenger through the gateway: canary or blue-green, automatic
analysis at every step, then promotion in the registry or an immediate rollback.

The control flow is chassis/rollout/runner.py; this flow wires it to the gateways, the
registry's audited alias tasks and Prefect's artifacts."""

import contextlib
from dataclasses import replace
from functools import partial
from typing import Annotated, Any, Literal

from prefect import Flow, flow, get_run_logger
from prefect.client.schemas.objects import FlowRun, State
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from chassis import tracking
from chassis.cascade.spec import validation_escalation_share
from chassis.console import survive_lost_console
from chassis.markdown import PlotLinks
from chassis.registry import Registry
from chassis.registry.connection import bound_http_retries
from chassis.rollout import lease
from chassis.rollout.orphans import end_split
from chassis.rollout.policy import RolloutPolicy
from chassis.rollout.runner import (
    Candidate,
    RolloutAborted,
    RolloutFailed,
    RolloutPaused,
    run_steps,
)
from chassis.settings import ChassisSettings
from chassis.tracking import Tracking
from flows.parameters import ModelParameter, VersionParameter
from flows.run_form import described
from tasks.alias_changes import actor
from tasks.artifacts import artifact_key
from tasks.promotion import promote_champion, retire_challenger, set_challenger
from tasks.rollout import (
    finish,
    open_fleet,
    plot_rollout,
    preflight,
    replays_traffic,
    run_step,
    start_traffic,
    test_rows,
)

__all__ = ["RolloutAborted", "RolloutFailed", "RolloutPaused", "rollout", "test_rows"]


class RolloutOutcome(BaseModel):
    model_name: str
    version: int
    strategy: str
    promoted: bool
    steps: list[dict[str, str]]
    traffic: dict[str, int]


def end_if_still_owned(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
    """Prefect hook when the run is cancelled or crashes: if a split of this run is still
    committed (the run's own rollback did not run, or did not finish), return it to stable
    and retire the challenger now, rather than when the lease passes."""
    model = flow_run.parameters.get("model_name")
    if not isinstance(model, str):
        return
    registry = Registry.from_settings(ChassisSettings())
    record = registry.read_rollout_record(model)
    if record is not None and lease.owned_by_run(record, str(flow_run.id)):
        end_split(
            registry, model, record, f"{record.owner} ({state.name} hook)", f"rollout {state.name}"
        )


@described
@flow(
    name="rollout",
    flow_run_name="rollout {model_name} v{version}",
    log_prints=True,
    on_cancellation=[end_if_still_owned],
    on_crashed=[end_if_still_owned],
)
def rollout(
    model_name: ModelParameter,
    version: VersionParameter,
    strategy: Annotated[
        Literal["canary", "blue-green"],
        Field(
            description="canary: shadow, then growing traffic shares; blue-green: the idle "
            "color sees a mirror of live traffic, then an atomic switch, old color kept warm."
        ),
    ] = "canary",
    policy: Annotated[
        RolloutPolicy | None,
        Field(description="Analysis thresholds and step schedule (defaults when empty)."),
    ] = None,
    drive_traffic: Annotated[
        Literal["auto", "always", "never"],
        Field(
            description="Replay the spec's test rows against the gateway meanwhile. auto: "
            "only when this run started its own gateway (the embedded default has no users)."
        ),
    ] = "auto",
    gateway_url: Annotated[
        str | None,
        Field(
            description="Gateway to drive. Empty: CHASSIS_GATEWAY_URL if it serves the "
            "model, else a gateway started for this run. With replicas: where test rows "
            "are replayed (the load balancer's address)."
        ),
    ] = None,
    replicas: Annotated[
        list[str] | None,
        Field(
            description="Every gateway replica serving the model: URLs, or dns:HOST:PORT for "
            "each address a name resolves to (a Kubernetes headless Service). The split is "
            "committed once in the registry; each step waits until every replica serves it, "
            "and the analysis sums all replicas' counters."
        ),
    ] = None,
    allow_retired: Annotated[
        bool,
        Field(
            description="Roll out a version that an earlier rollout retired (the audit "
            "record names the override). Without it such a version is refused."
        ),
    ] = False,
) -> RolloutOutcome:
    """Roll a gated version out. Every step commits a split on the gateway and judges the
    candidate against the champion in the same window, on live and mirrored requests:
    error rates, latency quantiles, the p99 budget and agreement, each with a confidence
    bound (docs/architecture.md, "Rollout analysis"). A healthy step grows the candidate's
    share; a degraded one halves it; a failure sets its traffic to 0 at once, removes its
    challenger alias, records why, and fails this run. Too little traffic pauses the rollout
    with nothing lost. Success promotes the version to champion (audited). A plot of the
    steps (share, latency and errors, with the analysis's intervals) is stored with the
    version's MLflow run and shown in the rollout-decision artifact."""
    settings = ChassisSettings()
    registry = Registry.from_settings(settings)
    # Registry calls must fail within the lease, not after MLflow's minutes of retries: a
    # renewal that cannot land before the lease ends means the replicas ended the split.
    bound_http_retries()
    # A dead worker must not end this run at its next log line (chassis/console.py).
    survive_lost_console()
    champion, challenger = preflight(registry, model_name, version, allow_retired)
    run_url = tracking.flow_run_url(settings, flow_run.id)
    evidence = {
        "flow_run": run_url,
        "analysis": f"prefect artifact {artifact_key('rollout-steps', model_name)}",
    }
    candidate = Candidate(
        model_name,
        version,
        champion,
        strategy,
        policy or RolloutPolicy(),
        actor(),
        escalation_share=validation_escalation_share(registry.version_tags(model_name, version)),
    )
    rows = test_rows(registry, model_name, version)
    promote = partial(promote_champion, registry, model_name, version, champion, evidence=evidence)
    retire = partial(retire_challenger, registry, model_name, version)
    with contextlib.ExitStack() as stack:
        fleet, embedded, traffic_url = open_fleet(
            stack, settings, registry, candidate, replicas, gateway_url
        )
        fleet.claim(candidate.actor)  # another live rollout: refused; an orphan: ended first
        # Only now, with every replica known to serve the champion, does an alias move.
        if challenger != version:
            reason = f"rollout by {strategy}"
            set_challenger(
                registry, model_name, version, reason, {"flow_run": run_url}, allow_retired
            )
        candidate = replace(candidate, paced=replays_traffic(drive_traffic, embedded))
        driver = start_traffic(stack, traffic_url, candidate, rows)
        step = partial(run_step, fleet, candidate=candidate)
        decision = run_steps(fleet, candidate, step, promote, retire, get_run_logger())
    # Read after the driver stopped: its report is complete only then.
    traffic = dict(driver.report.statuses) if driver else {}
    stored = plot_rollout(registry, Tracking.from_settings(settings), decision)
    plot = PlotLinks(stored.file_url(settings), stored.ui_url(settings)) if stored else None
    table = finish(decision, retire, evidence, plot)
    return RolloutOutcome(
        model_name=model_name,
        version=version,
        strategy=strategy,
        promoted=True,
        steps=table,
        traffic={str(k): v for k, v in traffic.items()},
    )
