"""Tasks of a staged rollout: commit a split, watch its window, judge it, publish the table."""

import threading
import time
from typing import Any

from prefect import get_run_logger, task

from chassis.rollout.analysis import StepAnalysis, analyze_step
from chassis.rollout.counts import VersionCounts
from chassis.rollout.policy import RolloutPolicy
from chassis.rollout.schedule import look_points
from chassis.rollout.scrape import FleetCounts
from tasks.artifacts import publish_table
from tasks.training import NO_CACHE_TASK

POLL_SECONDS = 0.25


def judge_window(
    fleet: FleetCounts,
    model: str,
    judged: int,
    reference: int,
    label: str,
    policy: RolloutPolicy,
    compare: bool,
) -> StepAnalysis:
    """Watch the counters from now on; judge at each look point and window end.

    Returns the first conclusive analysis. A step that stays inconclusive through every
    window is "paused": there was too little traffic to judge, which says nothing against
    the candidate.
    """
    logger = get_run_logger()
    start = fleet.read(model)
    points = look_points(policy.required_samples)
    analysis = StepAnalysis(label, "inconclusive", reason="no window judged yet")
    windows = policy.max_extensions + 1
    for window_index in range(windows):
        deadline = time.monotonic() + policy.step_seconds
        while True:
            time.sleep(POLL_SECONDS)
            counts = fleet.window(fleet.read(model), start)
            candidate = counts.get(judged, VersionCounts())
            stable = counts.get(reference, VersionCounts())
            samples = (
                min(candidate.executions, candidate.compared) if compare else (candidate.executions)
            )
            ended = time.monotonic() >= deadline
            reached = [p for p in points if samples >= p]
            if not reached and not ended:
                continue
            points = [p for p in points if samples < p]
            analysis = analyze_step(label, candidate, stable, policy, compare=compare)
            if analysis.verdict != "inconclusive":
                logger.info("%s: %s, %s", label, analysis.verdict, analysis.reason)
                return analysis
            if ended:
                logger.info(
                    "%s (window %d of %d): inconclusive, %s",
                    label,
                    window_index + 1,
                    windows,
                    analysis.reason,
                )
                break
    return StepAnalysis(
        label,
        "paused",
        analysis.checks,
        f"still inconclusive after {windows} window(s) of {policy.step_seconds:g} s: "
        f"{analysis.reason}. Too little traffic to judge: send traffic to the gateway "
        "(chassis traffic), give steps longer (step_seconds, max_extensions), or detect "
        "only larger effects (detect_error_increase, detect_agreement_drop)",
        analysis.candidate_samples,
        analysis.samples_needed,
    )


@task(name="rollout-step", **NO_CACHE_TASK)
def run_step(
    fleet: FleetCounts,
    model: str,
    version: int,
    stable: int,
    mode: str,
    percent: float,
    policy: RolloutPolicy,
) -> StepAnalysis:
    """Commit the split on every replica, then judge its window."""
    label = "shadow" if mode == "shadow" else f"canary {percent:g}%"
    for client in fleet.clients:
        client.set_rollout(model, mode, version, percent, policy.mirror_percent)
    compare = mode == "shadow" or policy.mirror_percent > 0
    analysis = judge_window(fleet, model, version, stable, label, policy, compare)
    publish_step(analysis, model, version)
    return analysis


def publish_step(analysis: StepAnalysis, model: str, version: int) -> None:
    publish_table(
        analysis.rows(),
        model,
        f"v{version}",
        "rollout-step",
        analysis.step,
        description=f"{analysis.step} of {model} v{version}: {analysis.verdict} "
        f"({analysis.reason})",
    )


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
