"""Tasks of a staged rollout: drive the gateway step by step and judge each step."""

import threading
import time
from typing import Any

from prefect import get_run_logger, task

from chassis.rollout.analysis import RolloutPolicy, StepAnalysis, analyze_step
from chassis.serving.client import GatewayClient, GatewayError
from tasks.artifacts import publish_table
from tasks.training import NO_CACHE_TASK


def wait_for_requests(
    client: GatewayClient, model: str, version: int, needed: int, seconds: float, shadow: bool
) -> dict[str, Any]:
    """Poll the gateway until the candidate has `needed` requests or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            status = client.status(model)
        except GatewayError:
            # A restarting gateway comes back at the last committed split: keep watching.
            if time.monotonic() >= deadline + 60:
                raise
            time.sleep(0.5)
            continue
        stats = status["stats"].get(str(version), {})
        seen = stats.get("shadow_compared" if shadow else "requests", 0)
        if seen >= needed or time.monotonic() >= deadline:
            return status
        time.sleep(0.25)


@task(name="rollout-step", **NO_CACHE_TASK)
def run_step(
    client: GatewayClient,
    model: str,
    version: int,
    mode: str,
    percent: float,
    policy: RolloutPolicy,
) -> StepAnalysis:
    """Commit the split, then watch it; an inconclusive window is extended, not promoted."""
    logger = get_run_logger()
    label = "shadow" if mode == "shadow" else f"canary {percent:g}%"
    client.set_rollout(model, mode, version, percent)
    client.reset_stats(model)
    analysis = StepAnalysis(label, "inconclusive", reason="not yet measured")
    for attempt in range(policy.max_extensions + 1):
        status = wait_for_requests(
            client, model, version, policy.min_requests, policy.step_seconds, mode == "shadow"
        )
        stable = status["stats"].get(str(status["state"]["stable_version"]), {})
        candidate = status["stats"].get(str(version), {})
        analysis = analyze_step(label, candidate, stable, policy, shadow=mode == "shadow")
        logger.info("%s (window %d): %s, %s", label, attempt + 1, analysis.verdict, analysis.reason)
        if analysis.verdict != "inconclusive":
            break
    else:
        analysis = StepAnalysis(
            label,
            "fail",
            analysis.checks,
            f"inconclusive after {policy.max_extensions + 1} windows: {analysis.reason}",
        )
    publish_table(
        analysis.rows(),
        model,
        f"v{version}",
        "rollout-step",
        label,
        description=f"{label} of {model} v{version}: {analysis.verdict} ({analysis.reason})",
    )
    return analysis


class TrafficDriver:
    """Replays rows in the background while a rollout runs (embedded default, demos)."""

    def __init__(
        self, url: str, model: str, rows: Any, concurrency: int, max_seconds: float
    ) -> None:
        from chassis.traffic import TrafficReport, replay

        self.stop = threading.Event()
        self.report = TrafficReport()

        def run() -> None:
            self.report = replay(
                url,
                model,
                rows,
                max_requests=10_000_000,
                max_seconds=max_seconds,
                concurrency=concurrency,
                stop=self.stop,
                sticky_keys=1000,
            )

        self.thread = threading.Thread(target=run, daemon=True)

    def __enter__(self) -> "TrafficDriver":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
