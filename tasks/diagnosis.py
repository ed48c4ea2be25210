"""The diagnose flow's steps: ask the replicas, watch their counters, judge the served
data, read the rollout state; and publish the diagnosis."""

import time
from datetime import datetime
from functools import partial

import pandas as pd
from prefect import get_run_logger, task

from chassis.diagnosis.accuracy_checks import accuracy_findings, live_accuracy
from chassis.diagnosis.data_checks import data_findings
from chassis.diagnosis.findings import Diagnosis, Finding
from chassis.diagnosis.fleet_checks import business_findings, service_findings
from chassis.diagnosis.policy import DiagnosisPolicy
from chassis.diagnosis.probes import ReplicaProbe, metrics_texts, observe, probe, probe_fleet
from chassis.diagnosis.recovery import (
    AUTOMATIC_FALLBACK,
    AUTOMATIC_RESTART,
    AUTOMATIC_SANITIZATION,
    RecoveryPlan,
    needs_restart,
    plan_recovery,
)
from chassis.diagnosis.report import to_markdown
from chassis.diagnosis.traffic_checks import (
    LOOK_SECONDS,
    early_alpha,
    final_alpha,
    surely_failing,
    traffic_findings,
)
from chassis.errors import ChassisError, GatewayError, RecoveryFailed
from chassis.expectations import SuiteResult
from chassis.prediction_window import Window
from chassis.registry import Registry
from chassis.registry.tags import TAG_TEXT_INPUT
from chassis.serving.client import GatewayClient
from chassis.settings import ChassisSettings
from chassis.tracking import StoredArtifact, Tracking
from tasks.alias_changes import actor, publish_alias_change
from tasks.artifacts import publish_markdown
from tasks.options import NO_CACHE_TASK


@task(name="check-services", **NO_CACHE_TASK)
def check_services(
    clients: list[GatewayClient], model: str
) -> tuple[list[ReplicaProbe], list[Finding]]:
    probes = probe_fleet(clients, model)
    return probes, service_findings(probes, model)


@task(name="check-model-performance", **NO_CACHE_TASK)
def check_model_performance(
    clients: list[GatewayClient], model: str, policy: DiagnosisPolicy
) -> list[Finding]:
    logger = get_run_logger()
    logger.info("watching %d replica(s) for up to %g s", len(clients), policy.observe_seconds)
    started = time.monotonic()
    counts, early = observe(
        clients,
        model,
        policy.observe_seconds,
        settled=partial(surely_failing, policy=policy),
        look_seconds=LOOK_SECONDS,
    )
    if early:
        logger.info(
            "a version is surely failing after %.0f s: watched no longer",
            time.monotonic() - started,
        )
    findings = traffic_findings(
        counts, policy, early_alpha(policy) if early else final_alpha(policy)
    )
    return findings + accuracy_findings(live_accuracy(metrics_texts(clients), model), policy)


@task(name="check-data-quality", **NO_CACHE_TASK)
def check_data_quality(
    reference: pd.DataFrame,
    features: list[str],
    window: Window,
    policy: DiagnosisPolicy,
    suite: SuiteResult | None,
) -> list[Finding]:
    failures = None if suite is None else [r.describe() for r in suite.failures]
    return data_findings(reference, window.frame, features, policy, failures)


@task(name="check-business-logic", **NO_CACHE_TASK)
def check_business_logic(
    registry: Registry, model: str, probes: list[ReplicaProbe], now: datetime
) -> list[Finding]:
    try:
        record = registry.read_rollout_record(model)
        champion = registry.version_for_alias(model, "champion")
    except ChassisError as error:
        return [Finding("rollout record and aliases", "not judged", str(error), "readable")]
    return business_findings(probes, record, champion, now.timestamp())


@task(name="publish-diagnosis", **NO_CACHE_TASK)
def publish_diagnosis(
    diagnosis: Diagnosis, settings: ChassisSettings, params: dict[str, object]
) -> StoredArtifact | None:
    """The report as a Prefect artifact and as a run in `<model>-monitoring` in MLflow
    (when the tracking server cannot take it, the Prefect artifact still says everything)."""
    report = to_markdown(diagnosis)
    publish_markdown(report, "diagnosis", diagnosis.model, description=diagnosis.summary()[:500])
    failing = [f for r in diagnosis.walked for f in r.findings if f.failing]
    try:
        return Tracking.from_settings(settings).log_diagnosis_run(
            diagnosis.model,
            report=report,
            params={**params, "failing_branch": diagnosis.failing_branch or "none"},
            metrics={"failing_checks": float(len(failing))},
        )
    except ChassisError as error:
        get_run_logger().warning("diagnosis not stored in MLflow: %s", error)
        return None


@task(name="plan-recovery", **NO_CACHE_TASK)
def plan(
    registry: Registry,
    diagnosis: Diagnosis,
    policy: DiagnosisPolicy,
    now: datetime,
    probes: list[ReplicaProbe] | None = None,
) -> RecoveryPlan:
    aliases = registry.current_aliases(diagnosis.model) if diagnosis.walked else {}
    setting = registry.read_sanitization(diagnosis.model)
    champion = aliases.get("champion")
    decided = plan_recovery(
        diagnosis,
        aliases,
        registry.history(diagnosis.model),
        policy,
        now,
        sanitizing=setting.mode if setting is not None else "off",
        reads_text=champion is not None
        and TAG_TEXT_INPUT in registry.version_tags(diagnosis.model, champion),
        probes=probes or [],
    )
    get_run_logger().info("recovery: %s", decided.explanation)
    return decided


@task(name="fall-back", **NO_CACHE_TASK)
def fall_back(
    registry: Registry,
    clients: list[GatewayClient],
    diagnosis: Diagnosis,
    decided: RecoveryPlan,
    follow_seconds: float = 60.0,
) -> list[str]:
    """Roll the champion back to @previous (compare-and-set, audited, with the failing
    checks as evidence), then have every replica follow it now rather than at its next
    poll. Returns the replicas that serve the new champion; raises when the registry
    refused the move (nothing changed then)."""
    logger = get_run_logger()
    change = registry.rollback(
        diagnosis.model,
        actor=actor(),
        reason=f"{AUTOMATIC_FALLBACK}: {diagnosis.summary()}"[:500],
        evidence=decided.evidence,
    )
    publish_alias_change(change)
    champion = change.aliases_after.get("champion")
    logger.info("fell back: %s is @champion v%s", diagnosis.model, champion)
    following: list[str] = []
    deadline = time.monotonic() + follow_seconds
    for client in clients:
        while True:
            try:
                status = client.follow_champion(diagnosis.model)
                if status["state"].get("stable_version") == champion:
                    following.append(client.base_url)
                    break
            except GatewayError as error:
                logger.warning("replica %s: %s", client.base_url, error)
            if time.monotonic() > deadline:
                logger.warning("replica %s does not serve v%s yet", client.base_url, champion)
                break
            time.sleep(0.5)  # between tries of a replica that has not loaded it yet
    return following


@task(name="switch-sanitization", **NO_CACHE_TASK)
def switch_sanitization(
    registry: Registry,
    clients: list[GatewayClient],
    diagnosis: Diagnosis,
    decided: RecoveryPlan,
) -> tuple[bool, list[str]]:
    """Switch the model's sanitization on (ranges from the champion's reference) or off,
    audited with the findings as evidence, then have every replica apply it now rather
    than at its next poll. Returns whether anything was written (False: the registry had
    it already) and the replicas that apply it; raises when the registry refused (nothing
    changed then)."""
    logger = get_run_logger()
    mode = decided.sanitization or "off"
    setting = registry.sanitization_for_champion(
        diagnosis.model,
        mode,
        by=actor(),
        reason=f"{AUTOMATIC_SANITIZATION}: {diagnosis.summary()}",
    )
    change = registry.set_sanitization(
        diagnosis.model, setting, actor=actor(), evidence=decided.evidence
    )
    logger.info(
        "sanitization of %s: %s%s",
        diagnosis.model,
        setting.describe(),
        " (already so: nothing written)" if change.noop else "",
    )
    following: list[str] = []
    for client in clients:
        try:
            status = client.sync(diagnosis.model)
        except GatewayError as error:
            logger.warning(
                "replica %s: %s (it applies it at its next poll)", client.base_url, error
            )
            continue
        if (status.get("sanitization", "off") == "off") == (mode == "off"):
            following.append(client.base_url)
    return not change.noop, following


@task(name="restart-replicas", **NO_CACHE_TASK)
def restart_replicas(
    registry: Registry,
    clients: list[GatewayClient],
    model: str,
    decided: RecoveryPlan,
    back_seconds: float = 120.0,
) -> tuple[list[str], list[str]]:
    """Restart each replica the plan names that still needs it (asked again, one that
    has come back meanwhile is left alone), audited first: a restart the registry cannot
    record is not made. Then wait, up to `back_seconds`, until each restarted replica is a
    new process, ready and serving a verified version. Returns (restarted, back)."""
    logger = get_run_logger()
    by_url = {client.base_url: client for client in clients}
    stuck = [p for p in (probe(by_url[url], model) for url in decided.replicas) if needs_restart(p)]
    if not stuck:
        logger.info("no replica needs a restart any more: %s", ", ".join(decided.replicas))
        return [], []
    named = ", ".join(p.url for p in stuck)
    evidence = {p.url: decided.evidence.get(p.url, p.problem) for p in stuck}
    try:
        record = registry.record_action(
            model,
            "restart",
            actor=actor(),
            reason=f"{AUTOMATIC_RESTART}: {named}",
            evidence=evidence,
        )
    except ChassisError as error:
        raise RecoveryFailed(
            f"{model}: restarting {named} could not be audited ({error}); nothing was restarted"
        ) from error
    logger.info("audit record #%d: restarting %s", record.sequence, named)
    restarted: list[ReplicaProbe] = []
    for replica in stuck:
        try:
            by_url[replica.url].restart()
            restarted.append(replica)
        except GatewayError as error:
            logger.warning("replica %s refused the restart: %s", replica.url, error)
    back: list[str] = []
    deadline = time.monotonic() + back_seconds
    for replica in restarted:
        while True:
            seen = probe(by_url[replica.url], model)
            if seen.pid != replica.pid and seen.ready and seen.serves_verified:
                logger.info("replica %s is back (pid %s), ready", replica.url, seen.pid)
                back.append(replica.url)
                break
            if time.monotonic() > deadline:
                logger.warning("replica %s is not back: %s", replica.url, seen.problem)
                break
            time.sleep(0.5)  # between looks at a replica that is starting
    lines = [
        f"- {p.url}: {'back, ready and verified' if p.url in back else 'NOT back'} "
        f"(was: {evidence[p.url]})"
        for p in stuck
    ]
    publish_markdown(
        f"# {model}: restart (audit #{record.sequence})\n\n- who: {record.actor}\n"
        f"- why: {record.reason}\n\n## Replicas\n" + "\n".join(lines) + "\n",
        "replica-restart",
        model,
        description=f"Restarted {len(stuck)} replica(s), {len(back)} back",
    )
    return [p.url for p in stuck], back
