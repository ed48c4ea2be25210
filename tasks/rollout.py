"""Tasks of a staged rollout: commit a split, watch its window, judge it, publish the table."""

import threading
import time
from typing import Any

from prefect import get_run_logger, task

from chassis.rollout.analysis import StepAnalysis
from chassis.rollout.counts import VersionCounts
from chassis.rollout.fleet import Fleet
from chassis.rollout.policy import RolloutPolicy
from chassis.rollout.record import RolloutRecord
from chassis.rollout.window import WindowJudge
from tasks.artifacts import publish_table
from tasks.training import NO_CACHE_TASK

POLL_SECONDS = 0.25


def judge_window(
    fleet: Fleet,
    judged: int,
    reference: int,
    label: str,
    policy: RolloutPolicy,
    compare: bool,
) -> StepAnalysis:
    """Poll every replica's counters from now on until the window judge has a verdict."""
    logger = get_run_logger()
    start, started = fleet.read(), time.monotonic()
    judge = WindowJudge(label, policy, compare)
    windows_seen = 0
    while True:
        time.sleep(POLL_SECONDS)
        fleet.keep_lease()  # at every look: while this run lives, its split holds
        counts = fleet.window(fleet.read(), start)
        analysis = judge.observe(
            counts.get(judged, VersionCounts()),
            counts.get(reference, VersionCounts()),
            time.monotonic() - started,
        )
        if judge.window_index > windows_seen:
            windows_seen = judge.window_index
            logger.info("%s: window %d of %d ended undecided", label, windows_seen, judge.windows)
        if analysis is not None:
            logger.info("%s: %s, %s", label, analysis.verdict, analysis.reason)
            return analysis


@task(name="rollout-step", **NO_CACHE_TASK)
def run_step(
    fleet: Fleet,
    version: int,
    stable: int,
    mode: str,
    percent: float,
    policy: RolloutPolicy,
    actor: str,
) -> StepAnalysis:
    """Commit the split to every replica (the registry's rollout record), then judge it."""
    label = "shadow" if mode == "shadow" else f"canary {percent:g}%"
    fleet.commit(
        RolloutRecord(
            generation=0,
            mode=mode,
            stable_version=stable,
            candidate_version=version,
            percent=percent if mode == "canary" else 0.0,
            mirror_percent=policy.mirror_percent,
        ),
        actor,
    )
    compare = mode == "shadow" or policy.mirror_percent > 0
    analysis = judge_window(fleet, version, stable, label, policy, compare)
    publish_step(analysis, fleet.model, version)
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
