"""Staged rollout of a challenger through the gateway: canary or blue-green, automatic
analysis at every step, then promotion in the registry or an immediate rollback."""

import contextlib
from typing import Annotated, Literal

import numpy as np
from prefect import flow, get_run_logger
from prefect.client.schemas.objects import FlowRun
from prefect.runtime import flow_run
from prefect.states import State
from pydantic import BaseModel, Field

from chassis import registry, tracking
from chassis.aliases import CHALLENGER, CHAMPION, RetiredChallenger
from chassis.console import survive_lost_console
from chassis.data import features, load_dataset
from chassis.errors import ChassisError
from chassis.modelspec import load_spec
from chassis.rollout import lease
from chassis.rollout.analysis import StepAnalysis
from chassis.rollout.fleet import Fleet, FleetError, resolve_replicas
from chassis.rollout.orphans import end_split, this_process, with_backoff
from chassis.rollout.policy import RolloutPolicy
from chassis.rollout.record import RolloutRecord
from chassis.rollout.schedule import first_share, next_share
from chassis.serving.client import GatewayClient
from chassis.serving.embedded import check_replicas, gateway_for
from chassis.settings import ChassisSettings
from flows.promotion import ModelParameter, VersionParameter
from tasks.artifacts import publish_markdown, publish_table
from tasks.promotion import actor, set_challenger
from tasks.rollout import TrafficDriver, judge_window, publish_step, run_step


class RolloutFailed(ChassisError):  # noqa: N818 (reads as what happened)
    """The candidate failed a step's analysis; its traffic is 0 and its alias removed."""


class RolloutPaused(ChassisError):  # noqa: N818 (reads as what happened)
    """Too little traffic to judge the candidate: traffic is back on the champion and the
    challenger keeps its alias, so the rollout can simply be run again."""


class RolloutAborted(ChassisError):  # noqa: N818 (reads as what happened)
    """The rollout itself failed mid-step (not the candidate, not the replicas): it was
    ended safely, or its message says what was left and that the lease will end it."""


class RolloutOutcome(BaseModel):
    model_name: str
    version: int
    strategy: str
    promoted: bool
    steps: list[dict[str, str]]
    traffic: dict[str, int]


def end_if_still_owned(flow: object, run: FlowRun, state: State) -> None:
    """Prefect hook when the run is cancelled or crashes: if a split of this run is still
    committed (the run's own rollback did not run, or did not finish), return it to stable
    and retire the challenger now, rather than when the lease passes."""
    model = run.parameters.get("model_name")
    if not isinstance(model, str):
        return
    tracking.connect(ChassisSettings())
    record = registry.read_rollout_record(model)
    if record is not None and lease.owned_by_run(record, str(run.id)):
        end_split(model, record, f"{record.owner} ({state.name} hook)", f"rollout {state.name}")


@flow(
    name="rollout",
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
    with nothing lost. Success promotes the version to champion (audited)."""
    settings = ChassisSettings()
    tracking.connect(settings)
    # Registry calls must fail within the lease, not after MLflow's minutes of retries: a
    # renewal that cannot land before the lease ends means the replicas ended the split.
    tracking.bound_http_retries()
    # A dead worker must not end this run at its next log line (chassis/console.py).
    survive_lost_console()
    rollout_policy = policy or RolloutPolicy()
    registry.require_passed_gates(model_name, version)
    aliases = registry.current_aliases(model_name)
    champion = aliases.get(CHAMPION)
    if champion is None:
        raise ChassisError(f"{model_name} has no champion to roll out against; promote one first")
    if champion == version:
        raise ChassisError(f"{model_name} v{version} is already the champion")
    retired = registry.retirement(model_name, version)
    if retired is not None and not allow_retired:
        # Also when the challenger alias was set by hand in MLflow (no set_challenger here).
        raise RetiredChallenger(
            f"{model_name} {retired.describe()}; roll it out again only with allow_retired "
            "(chassis rollout --allow-retired); nothing was changed"
        )
    run_url = tracking.flow_run_url(settings, flow_run.id)
    evidence = {
        "flow_run": run_url,
        "analysis": f"prefect artifact {model_name}-v{version}-rollout-steps",
    }

    rows = test_rows(model_name, version)
    analyses: list[StepAnalysis] = []
    failure: StepAnalysis | None = None
    who = actor()
    with contextlib.ExitStack() as stack:
        if replicas:
            urls = resolve_replicas(replicas)
            check_replicas(settings, urls, model_name, champion)
            embedded, traffic_url = False, gateway_url or urls[0]
        else:
            gateway = stack.enter_context(
                gateway_for(settings, model_name, champion, explicit_url=gateway_url)
            )
            urls, embedded, traffic_url = [gateway.url], gateway.embedded, gateway.url
        fleet = Fleet(
            [GatewayClient(url, settings.admin_token()) for url in urls],
            model_name,
            sync_seconds=rollout_policy.sync_seconds,
            # A replica restarting comes back at the committed split within this; longer,
            # the step cannot be judged on the whole fleet and the rollout pauses.
            retry_seconds=max(rollout_policy.retry_seconds, rollout_policy.sync_seconds),
            # Every split this run commits holds only while it renews the lease: if this
            # process dies, the replicas return to the champion by themselves.
            owner=lease.owner_for_run(str(flow_run.id), str(flow_run.name), this_process()),
            lease_seconds=rollout_policy.lease_seconds,
        )
        stack.callback(fleet.close)
        fleet.claim(who)  # another live rollout: refused; an orphaned one: ended first
        # Only now, with every replica known to serve the champion, does an alias move.
        if aliases.get(CHALLENGER) != version:
            set_challenger(
                model_name,
                version,
                f"rollout by {strategy}",
                {"flow_run": run_url},
                allow_retired=allow_retired,
            )
        driver = None
        drive = drive_traffic == "always" or (drive_traffic == "auto" and embedded)
        get_run_logger().info(
            "%d gateway replica(s) %s (%s); replaying test rows: %s; each step needs %d "
            "candidate samples",
            len(urls),
            ", ".join(urls),
            "started for this run" if embedded else "already running",
            "yes" if drive else "no",
            rollout_policy.required_samples,
        )
        if drive:
            budget = (
                rollout_policy.step_seconds
                * (rollout_policy.max_extensions + 1)
                * (rollout_policy.max_steps + 2)
            )
            driver = stack.enter_context(TrafficDriver(traffic_url, model_name, rows, 4, budget))
        try:
            if strategy == "blue-green":
                analyses = blue_green(fleet, version, champion, rollout_policy, who)
            else:
                analyses = canary(fleet, version, champion, rollout_policy, who)
        except FleetError as error:
            # The replicas, not the candidate, failed: back to the champion, challenger kept.
            left = end_safely(fleet, version, champion, who, None)
            raise RolloutPaused(f"{model_name} v{version}: {error}. {left}") from error
        except Exception as error:
            # The rollout itself broke (the registry, a lost lease, a bug): end it safely.
            left = end_safely(fleet, version, champion, who, f"{type(error).__name__}: {error}")
            raise RolloutAborted(
                f"{model_name} v{version}: the rollout stopped mid-step on "
                f"{type(error).__name__}: {error}. {left}"
            ) from error
        except BaseException as error:
            # Cancelled (Prefect's TerminationSignal on SIGTERM) or interrupted: the same.
            get_run_logger().error(
                "%s", end_safely(fleet, version, champion, who, f"{type(error).__name__}")
            )
            raise
        last = analyses[-1]
        if last.verdict != "pass":
            failure = last
            # Candidate traffic to 0 first (retried; the lease ends it if that fails).
            warn_if_lagging(fleet.back_to_champion(who, retry_seconds=rollout_policy.lease_seconds))
        else:
            # Registry first (compare-and-set), then the replicas: each serves the champion
            # alias once the record says "stable".
            try:
                registry.promote(
                    model_name,
                    version,
                    expected_champion=champion,
                    actor=who,
                    reason=f"{strategy} rollout passed {len(analyses)} step(s)",
                    evidence=evidence,
                )
            except ChassisError:
                # Serve what the registry says.
                warn_if_lagging(
                    fleet.back_to_champion(who, retry_seconds=rollout_policy.lease_seconds)
                )
                raise
            # Blue-green keeps the old color warm (not compared) for an instant rollback.
            # The record written here has no owner and no lease: stable needs neither.
            warm = champion if strategy == "blue-green" else None
            warn_if_lagging(
                fleet.back_to_champion(
                    who, warm_version=warm, retry_seconds=rollout_policy.lease_seconds
                )
            )

    # Read after the driver stopped: its report is complete only then.
    traffic = dict(driver.report.statuses) if driver else {}
    table = [row for analysis in analyses for row in analysis.rows()]
    publish_table(
        table,
        model_name,
        f"v{version}",
        "rollout-steps",
        description=f"{strategy} rollout of {model_name} v{version}: one row per check",
    )
    if failure is not None and failure.verdict == "paused":
        reason = f"{strategy} rollout paused at {failure.step}: {failure.reason}"
        publish_decision(model_name, version, strategy, "PAUSED", reason, analyses)
        raise RolloutPaused(
            f"{model_name} v{version}: {reason}. Traffic is back on v{champion}; "
            f"v{version} keeps its challenger alias: run the rollout again"
        )
    if failure is not None:
        reason = f"{strategy} rollout failed at {failure.step}: {failure.reason}"
        with_backoff(
            lambda: registry.retire_challenger(
                model_name, version, actor=actor(), reason=reason, evidence=evidence
            ),
            seconds=rollout_policy.lease_seconds,
        )
        publish_decision(model_name, version, strategy, "ROLLED BACK", reason, analyses)
        raise RolloutFailed(f"{model_name} v{version}: {reason}; traffic is back on v{champion}")
    reason = f"{strategy} rollout passed {len(analyses)} step(s)"
    publish_decision(model_name, version, strategy, "PROMOTED to champion", reason, analyses)
    return RolloutOutcome(
        model_name=model_name,
        version=version,
        strategy=strategy,
        promoted=True,
        steps=table,
        traffic={str(k): v for k, v in traffic.items()},
    )


def end_safely(
    fleet: Fleet, version: int, champion: int, who: str, retire_because: str | None
) -> str:
    """After a failure mid-step: the champion alone in the record (no lease), and with
    `retire_because` the challenger retired, each retried with backoff for up to the lease
    (past it the replicas end the rollout themselves). Returns what state was left."""
    model = fleet.model
    held = fleet.held
    try:
        problem = fleet.back_to_champion(who, retry_seconds=fleet.lease_seconds)
    except Exception as error:
        if held is None:
            return f"No split of this run was committed; the rollback failed too ({error})"
        return (
            f"The rollback could not be written ({error}): the record still names "
            f"{lease.describe(held)}. When that lease passes, every replica serves the "
            f"champion v{champion} by itself and one of them retires v{version}"
        )
    left = f"Traffic is back on v{champion}" + (f" ({problem})" if problem else "")
    if retire_because is None:
        return f"{left}; v{version} keeps its challenger alias: run the rollout again"
    try:
        with_backoff(
            lambda: registry.retire_challenger(
                model,
                version,
                actor=who,
                reason=f"rollout aborted mid-step ({retire_because})"[:500],
                evidence={"owner": fleet.owner},
            ),
            seconds=fleet.lease_seconds,
        )
    except Exception as error:
        return f"{left}; v{version} could NOT be retired ({error}) and keeps its alias"
    return f"{left}; v{version} retired (its challenger alias removed)"


def warn_if_lagging(problem: str | None) -> None:
    if problem:
        get_run_logger().warning(
            "the champion alone is committed; %s (they serve it when they are back)", problem
        )


def canary(
    fleet: Fleet, version: int, champion: int, policy: RolloutPolicy, who: str
) -> list[StepAnalysis]:
    """Shadow (optional), then shares that grow on health and halve on degradation.
    Ends with the last step's analysis: "pass" at 100 %, or the reason it stopped."""
    analyses: list[StepAnalysis] = []
    if policy.shadow_first:
        analysis = run_step(fleet, version, champion, "shadow", 0.0, policy, who)
        analyses.append(analysis)
        if analysis.verdict != "pass":
            return analyses
    percent: float | None = first_share(policy)
    while percent is not None:
        analysis = run_step(fleet, version, champion, "canary", percent, policy, who)
        analyses.append(analysis)
        if analysis.verdict in ("fail", "paused"):
            return analyses
        step = next_share(policy, percent, analysis.verdict, len(analyses))
        if step.rollback:
            reason = f"{analysis.reason}; {step.reason}"
            analyses.append(StepAnalysis(analysis.step, "fail", analysis.checks, reason))
            return analyses
        percent = step.percent
    return analyses


def blue_green(
    fleet: Fleet, version: int, champion: int, policy: RolloutPolicy, who: str
) -> list[StepAnalysis]:
    """Preview: the idle color runs a mirror of every live request and is judged against
    the live one. Switch. Live window: the new color answers, the old one stays warm and
    runs `mirror_percent` of requests for comparison. A slower color is not switched to
    (there is no share to halve), so "degraded" fails here."""
    preview_split = RolloutRecord(
        generation=0, mode="blue-green", stable_version=champion, candidate_version=version
    )
    fleet.commit(preview_split, who)
    preview = judge_window(fleet, version, champion, "blue-green preview", policy, True)
    publish_step(preview, fleet.model, version)
    if preview.verdict != "pass":
        return [_degraded_fails(preview)]
    switched = RolloutRecord(
        generation=0,
        stable_version=version,
        warm_version=champion,
        mirror_percent=policy.mirror_percent,
    )
    fleet.commit(switched, who)
    live = judge_window(
        fleet, version, champion, "blue-green live", policy, policy.mirror_percent > 0
    )
    publish_step(live, fleet.model, version)
    return [preview, _degraded_fails(live)]


def _degraded_fails(analysis: StepAnalysis) -> StepAnalysis:
    if analysis.verdict != "degraded":
        return analysis
    return StepAnalysis(
        analysis.step, "fail", analysis.checks, analysis.reason, analysis.candidate_samples
    )


def test_rows(model_name: str, version: int) -> np.ndarray:
    """The test split of the version's spec: traffic for demos and blue-green previews."""
    reference = registry.version_tags(model_name, version)[registry.TAG_SPEC]
    spec = load_spec(reference)
    dataset = load_dataset(spec.load_data, spec.name)
    return features(dataset.test, dataset)


def publish_decision(
    model: str,
    version: int,
    strategy: str,
    decision: str,
    reason: str,
    analyses: list[StepAnalysis],
) -> None:
    lines = [
        f"# Rollout of {model} v{version} ({strategy}): {decision}",
        "",
        reason,
        "",
        "| step | verdict | reason |",
        "|---|---|---|",
    ] + [f"| {a.step} | {a.verdict} | {a.reason} |" for a in analyses]
    publish_markdown(
        "\n".join(lines),
        model,
        f"v{version}",
        "rollout-decision",
        description=f"Rollout decision for {model} v{version}",
    )
