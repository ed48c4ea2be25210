"""The diagnose flow's steps: ask the replicas, watch their counters, judge the served
data, read the rollout state; and publish the diagnosis."""

from datetime import datetime

import pandas as pd
from prefect import get_run_logger, task

from chassis.diagnosis.data_checks import data_findings
from chassis.diagnosis.findings import Diagnosis, Finding
from chassis.diagnosis.fleet_checks import business_findings, service_findings
from chassis.diagnosis.policy import DiagnosisPolicy
from chassis.diagnosis.probes import ReplicaProbe, observe, probe_fleet
from chassis.diagnosis.report import to_markdown
from chassis.diagnosis.traffic_checks import traffic_findings
from chassis.errors import ChassisError
from chassis.expectations import SuiteResult
from chassis.prediction_window import Window
from chassis.registry import Registry
from chassis.serving.client import GatewayClient
from chassis.settings import ChassisSettings
from chassis.tracking import StoredArtifact, Tracking
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
    get_run_logger().info("watching %d replica(s) for %g s", len(clients), policy.observe_seconds)
    return traffic_findings(observe(clients, model, policy.observe_seconds), policy)


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
