"""Staged rollout of a challenger through the gateway: canary or blue-green, automatic
analysis at every step, then promotion in the registry or an immediate rollback."""

import contextlib
from typing import Annotated, Literal

import numpy as np
from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from chassis import registry, tracking
from chassis.aliases import CHALLENGER, CHAMPION
from chassis.data import features, load_dataset
from chassis.errors import ChassisError
from chassis.modelspec import load_spec
from chassis.rollout.analysis import RolloutPolicy, StepAnalysis, analyze_step
from chassis.serving.client import GatewayClient
from chassis.serving.embedded import running_gateway
from chassis.settings import ChassisSettings
from flows.promotion import ModelParameter, VersionParameter
from tasks.artifacts import publish_markdown, publish_table
from tasks.promotion import actor, set_challenger
from tasks.rollout import TrafficDriver, run_step, wait_for_requests


class RolloutFailed(ChassisError):  # noqa: N818 (reads as what happened)
    """The candidate failed a step's analysis; its traffic is 0 and its alias removed."""


class RolloutOutcome(BaseModel):
    model_name: str
    version: int
    strategy: str
    promoted: bool
    steps: list[dict[str, str]]
    traffic: dict[str, int]


class RolloutSettings(BaseModel):
    """Rollout analysis thresholds (flow parameters with these defaults)."""

    steps: list[Annotated[float, Field(gt=0, le=100)]] = [10, 25, 50, 100]
    shadow_first: bool = True
    min_requests: Annotated[int, Field(ge=1)] = 100
    step_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0
    max_extensions: Annotated[int, Field(ge=0, le=20)] = 2
    max_error_rate: Annotated[float, Field(ge=0, lt=1)] = 0.01
    p99_budget_ms: Annotated[float, Field(gt=0)] = 50.0
    max_p99_ratio_vs_stable: Annotated[float, Field(ge=1)] = 3.0
    min_agreement: Annotated[float, Field(ge=0, le=1)] = 0.9
    failure_limit: Annotated[int, Field(ge=1)] = 1

    def policy(self) -> RolloutPolicy:
        return RolloutPolicy(
            steps=tuple(self.steps),
            shadow_first=self.shadow_first,
            min_requests=self.min_requests,
            step_seconds=self.step_seconds,
            max_extensions=self.max_extensions,
            max_error_rate=self.max_error_rate,
            p99_budget_ms=self.p99_budget_ms,
            max_p99_ratio_vs_stable=self.max_p99_ratio_vs_stable,
            min_agreement=self.min_agreement,
            failure_limit=self.failure_limit,
        )


@flow(name="rollout", log_prints=True)
def rollout(
    model_name: ModelParameter,
    version: VersionParameter,
    strategy: Annotated[
        Literal["canary", "blue-green"],
        Field(
            description="canary: shadow, then growing traffic shares; blue-green: preview "
            "the idle color, switch atomically, keep the old one warm."
        ),
    ] = "canary",
    policy: RolloutSettings | None = None,
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
            description="Gateway to drive. Empty: CHASSIS_GATEWAY_URL, or a "
            "gateway started for this run if none answers there."
        ),
    ] = None,
) -> RolloutOutcome:
    """Roll a gated version out. Every step commits a split on the gateway, waits for
    enough requests (an inconclusive window is extended, never promoted), and judges error
    rate, p99 latency against a budget and against stable, and agreement with the champion.
    Success promotes the version to champion (audited). Failure sets its traffic to 0 at
    once, removes its challenger alias, records why, and fails this run."""
    settings = ChassisSettings()
    tracking.connect(settings)
    rollout_policy = (policy or RolloutSettings()).policy()
    registry.require_passed_gates(model_name, version)
    aliases = registry.current_aliases(model_name)
    champion = aliases.get(CHAMPION)
    if champion is None:
        raise ChassisError(f"{model_name} has no champion to roll out against; promote one first")
    if champion == version:
        raise ChassisError(f"{model_name} v{version} is already the champion")
    run_url = f"{settings.prefect_ui_url()}/runs/flow-run/{flow_run.id}"
    if aliases.get(CHALLENGER) != version:
        set_challenger(model_name, version, f"rollout by {strategy}", {"flow_run": run_url})

    rows = test_rows(model_name, version)
    analyses: list[StepAnalysis] = []
    with contextlib.ExitStack() as stack:
        if gateway_url:
            url, embedded = gateway_url, False
        else:
            gateway = stack.enter_context(running_gateway(settings, [model_name]))
            url, embedded = gateway.url, gateway.embedded
        client = GatewayClient(url, settings.admin_token())
        stack.callback(client.close)
        driver = None
        drive = drive_traffic == "always" or (drive_traffic == "auto" and embedded)
        get_run_logger().info(
            "gateway %s (%s); replaying test rows: %s",
            url,
            "started for this run" if embedded else "already running",
            "yes" if drive else "no",
        )
        if drive:
            budget = (
                rollout_policy.step_seconds
                * (rollout_policy.max_extensions + 1)
                * (len(rollout_policy.steps) + 2)
            )
            driver = stack.enter_context(TrafficDriver(url, model_name, rows, 4, budget))
        plan = [("shadow", 0.0)] if rollout_policy.shadow_first else []
        if strategy == "blue-green":
            plan = [("blue-green", 0.0)]
        else:
            plan += [("canary", step) for step in rollout_policy.steps]
        failure = None
        for mode, percent in plan:
            if mode == "blue-green":
                analysis = blue_green_step(client, model_name, version, rows, rollout_policy)
            else:
                analysis = run_step(client, model_name, version, mode, percent, rollout_policy)
            analyses.append(analysis)
            if analysis.verdict != "pass":
                failure = analysis
                client.rollback(model_name)  # candidate traffic to 0 before anything else
                break
        if failure is None:
            # Registry first (compare-and-set), then the gateway: a gateway following the
            # champion alias never sees a promoted version it is not already serving.
            try:
                registry.promote(
                    model_name,
                    version,
                    expected_champion=champion,
                    actor=actor(),
                    reason=f"{strategy} rollout passed {len(analyses)} step(s)",
                    evidence={
                        "flow_run": run_url,
                        "analysis": f"prefect artifact {model_name}-v{version}-rollout-steps",
                    },
                )
            except ChassisError:
                client.rollback(model_name)  # e.g. a conflict: serve what the registry says
                raise
            if strategy == "canary":
                client.promote(model_name)

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
    evidence = {
        "flow_run": run_url,
        "analysis": f"prefect artifact {model_name}-v{version}-rollout-steps",
    }
    if failure is not None:
        reason = f"{strategy} rollout failed at {failure.step}: {failure.reason}"
        registry.retire_challenger(
            model_name, version, actor=actor(), reason=reason, evidence=evidence
        )
        publish_decision(model_name, version, strategy, False, reason, analyses)
        raise RolloutFailed(f"{model_name} v{version}: {reason}; traffic is back on v{champion}")
    reason = f"{strategy} rollout passed {len(analyses)} step(s)"
    publish_decision(model_name, version, strategy, True, reason, analyses)
    return RolloutOutcome(
        model_name=model_name,
        version=version,
        strategy=strategy,
        promoted=True,
        steps=table,
        traffic={str(k): v for k, v in traffic.items()},
    )


def test_rows(model_name: str, version: int) -> np.ndarray:
    """The test split of the version's spec: traffic for demos and blue-green previews."""
    reference = registry.version_tags(model_name, version)[registry.TAG_SPEC]
    spec = load_spec(reference)
    dataset = load_dataset(spec.load_data, spec.name)
    return features(dataset.test, dataset)


def blue_green_step(
    client: GatewayClient, model: str, version: int, rows: np.ndarray, policy: RolloutPolicy
) -> StepAnalysis:
    """Preview the idle color against the live one on the same rows, then switch."""
    import httpx

    from chassis.rollout.analysis import Check

    client.set_rollout(model, "blue-green", version)
    payload = {"instances": rows.astype(float).tolist()[: client_preview_rows(policy)]}
    live = httpx.post(f"{client.base_url}/v1/models/{model}/predict", json=payload, timeout=30)
    preview = httpx.post(
        f"{client.base_url}/v1/models/{model}/preview/predict", json=payload, timeout=30
    )
    ok = live.status_code == 200 and preview.status_code == 200
    agreement = 0.0
    if ok:
        a, b = live.json()["predictions"], preview.json()["predictions"]
        agreement = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    checks = (
        Check("preview answers", ok, f"{preview.status_code}", "200"),
        Check(
            "agreement with live color",
            agreement >= policy.min_agreement,
            f"{agreement:.4f} over {len(payload['instances'])} rows",
            f">= {policy.min_agreement}",
        ),
    )
    if not all(c.passed for c in checks):
        return StepAnalysis("blue-green preview", "fail", checks, "preview disagreed or failed")
    client.switch(model)
    # The new color is live; the old one stays warm, so a bad window rolls back instantly.
    client.reset_stats(model)
    status = wait_for_requests(
        client, model, version, policy.min_requests, policy.step_seconds, False
    )
    live_stats = status["stats"].get(str(version), {})
    after = analyze_step("blue-green live window", live_stats, {}, policy)
    verdict = "pass" if after.verdict == "pass" else "fail"
    return StepAnalysis(
        "blue-green preview + switch",
        verdict,
        checks + after.checks,
        "switched; live window " + after.reason,
    )


def client_preview_rows(policy: RolloutPolicy) -> int:
    return max(policy.min_requests, 50)


def publish_decision(
    model: str,
    version: int,
    strategy: str,
    promoted: bool,
    reason: str,
    analyses: list[StepAnalysis],
) -> None:
    lines = [
        f"# Rollout of {model} v{version} ({strategy}): "
        + ("PROMOTED to champion" if promoted else "ROLLED BACK"),
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
