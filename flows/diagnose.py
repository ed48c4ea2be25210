"""The troubleshooting tree, walked by a flow: base services, model performance, data
quality, business logic; it stops at the first failing branch and reports what it saw.

Triggered by `chassis.alert.firing` events (deployments/prefect.yaml) and runnable by hand
(`chassis diagnose --model M`). What it does about a failing branch is decided by
`chassis.diagnosis.recovery`: fall back to @previous when the champion's own performance
fails; switch the gateways' sanitization on when the served data has missing or
out-of-range values, and off again once the window is clean; restart a replica that answers
but is not ready or not verified, when it runs under the local supervisor.
"""

import shutil
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from prefect import flow
from pydantic import BaseModel, Field

from chassis.diagnosis.findings import Diagnosis, Finding, walk
from chassis.diagnosis.policy import DiagnosisPolicy
from chassis.diagnosis.probes import ReplicaProbe
from chassis.diagnosis.recovery import RecoveryPlan
from chassis.drift_policy import DriftPolicy
from chassis.errors import ChassisError, RecoveryFailed
from chassis.registry import Registry
from chassis.rollout.fleet import resolve_replicas
from chassis.serving.client import GatewayClient
from chassis.settings import ChassisSettings
from chassis.tracking import StoredArtifact
from flows.parameters import ModelParameter
from flows.run_form import described
from tasks.diagnosis import (
    check_business_logic,
    check_data_quality,
    check_model_performance,
    check_services,
    fall_back,
    plan,
    publish_diagnosis,
    restart_replicas,
    switch_sanitization,
)


class DiagnosisOutcome(BaseModel):
    model_name: str
    failing_branch: str | None  # service, model, data, business; None: nothing wrong
    summary: str
    failing_checks: list[str]
    report_uri: str | None
    # What was done about it: "none", "fallback" (done), or a suggestion, with why.
    recovery: str = "none"
    recovery_explanation: str = ""
    # The replicas that serve the new champion after a fallback (or apply the new
    # sanitization after a switch).
    replicas_following: list[str] = Field(default_factory=list[str])
    # What the model's gateways do with out-of-range and missing values after the run
    # (chassis.sanitization: off, or the mode and where its ranges came from).
    sanitization: str = "off"
    # The replicas restarted, and those of them ready and verified again.
    replicas_restarted: list[str] = Field(default_factory=list[str])
    replicas_back: list[str] = Field(default_factory=list[str])


@described
@flow(name="diagnose", flow_run_name="diagnose {model_name}", log_prints=False)
def diagnose(
    model_name: ModelParameter,
    replicas: Annotated[
        list[str] | None,
        Field(
            description="Gateway replicas to ask (URLs or dns:HOST:PORT, e.g. the headless "
            "Service); empty: CHASSIS_GATEWAY_REPLICAS, else CHASSIS_GATEWAY_URL."
        ),
    ] = None,
    policy: Annotated[
        DiagnosisPolicy | None, Field(description="What counts as failing; empty: defaults.")
    ] = None,
) -> DiagnosisOutcome:
    """Walk the troubleshooting tree for one model and publish the diagnosis (a Prefect
    artifact and a run in the model's `-monitoring` experiment in MLflow)."""
    settings = ChassisSettings()
    registry = Registry.from_settings(settings)
    chosen = policy or DiagnosisPolicy()
    now = datetime.now(UTC)
    if not registry.model_exists(model_name):
        # An alert about a model the registry does not know: said, and nothing is done.
        unknown = Finding(
            f"{model_name} is registered", "failing", "no such registered model", "registered"
        )
        diagnosis = walk(model_name, [("business", lambda: [unknown])])
        return _outcome(diagnosis, publish_diagnosis(diagnosis, settings, {"model": model_name}))
    urls = resolve_replicas(replicas or settings.replica_specs())
    clients = [GatewayClient(url, settings.admin_token(), timeout=10) for url in urls]
    probes: list[ReplicaProbe] = []

    def services() -> list[Finding]:
        found, findings = check_services(clients, model_name)
        probes.extend(found)
        return findings

    def data() -> list[Finding]:
        champion = registry.version_for_alias(model_name, "champion")
        if champion is None:
            return [Finding("champion", "not judged", "no @champion", "a champion to compare")]
        # Imported here: the drift machinery is the slowest import of the flow, and an
        # alert's diagnosis should start (and usually end, at the model branch) without it.
        from tasks.monitoring import check_serving_suite, load_reference, load_window

        workdir = settings.home / "work" / uuid.uuid4().hex
        try:
            reference, features = load_reference(registry, model_name, champion, workdir)
            window = load_window(
                settings, model_name, now - timedelta(minutes=chosen.window_minutes), now
            )
            suite = check_serving_suite(
                registry, settings, model_name, champion, window, features, DriftPolicy()
            )
            return check_data_quality(reference, features, window, chosen, suite)
        except ChassisError as error:
            return [Finding("served data", "not judged", str(error), "readable")]
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    try:
        diagnosis = walk(
            model_name,
            [
                ("service", services),
                ("model", lambda: check_model_performance(clients, model_name, chosen)),
                ("data", data),
                ("business", lambda: check_business_logic(registry, model_name, probes, now)),
            ],
        )
        params = {"model": model_name, "replicas": len(urls), **chosen.model_dump()}
        stored = publish_diagnosis(diagnosis, settings, params)
        decided = plan(registry, diagnosis, chosen, now, probes)
        outcome = _outcome(diagnosis, stored).model_copy(
            update={"recovery": decided.mode, "recovery_explanation": decided.explanation}
        )
        if decided.mode == "impossible":
            raise RecoveryFailed(f"{model_name}: {decided.explanation}")
        if decided.mode == "act" and decided.action == "restart":
            outcome = _restarted(registry, clients, model_name, decided, outcome)
        elif decided.mode == "act" and decided.action == "fallback":
            following = fall_back(registry, clients, diagnosis, decided)
            outcome = outcome.model_copy(
                update={"recovery": "fallback", "replicas_following": following}
            )
        elif decided.mode == "act" and decided.action in ("sanitize", "unsanitize"):
            try:
                written, following = switch_sanitization(registry, clients, diagnosis, decided)
            except ChassisError as error:
                raise RecoveryFailed(f"{model_name}: sanitization not switched: {error}") from None
            outcome = outcome.model_copy(
                update={
                    "recovery": decided.action if written else "none",
                    "recovery_explanation": decided.explanation
                    if written
                    else f"{decided.explanation}: already so in the registry, nothing written",
                    "replicas_following": following,
                }
            )
        try:
            setting = registry.read_sanitization(model_name)
            sanitization = setting.describe() if setting is not None else "off"
        except ChassisError as error:  # what was done stands; only this reading failed
            sanitization = f"unknown ({error})"
        outcome = outcome.model_copy(update={"sanitization": sanitization})
    finally:
        for client in clients:
            client.close()
    return outcome


def _restarted(
    registry: Registry,
    clients: list[GatewayClient],
    model_name: str,
    decided: RecoveryPlan,
    outcome: DiagnosisOutcome,
) -> DiagnosisOutcome:
    """Restart what the plan names; a replica that does not come back fails the run."""
    restarted, back = restart_replicas(registry, clients, model_name, decided)
    lost = [url for url in restarted if url not in back]
    if lost:
        raise RecoveryFailed(
            f"{model_name}: asked {', '.join(lost)} to restart; not ready and verified again "
            "in time (the run's log says what each answered)"
        )
    return outcome.model_copy(
        update={"recovery": "restart", "replicas_restarted": restarted, "replicas_back": back}
    )


def _outcome(diagnosis: Diagnosis, stored: StoredArtifact | None) -> DiagnosisOutcome:
    return DiagnosisOutcome(
        model_name=diagnosis.model,
        failing_branch=diagnosis.failing_branch,
        summary=diagnosis.summary(),
        failing_checks=[
            f"{f.check}: {f.observed}" for r in diagnosis.walked for f in r.findings if f.failing
        ],
        report_uri=stored.uri if stored is not None else None,
    )
