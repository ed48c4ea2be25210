"""Tasks and adapters of a staged rollout: the gateways, one step, the replayed traffic.

The decisions (which step next, when to stop, how to end safely) are in
chassis/rollout/runner.py; these only reach out to the registry, the gateways and Prefect.
"""

import contextlib
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prefect import get_run_logger, task
from prefect.runtime import flow_run

from chassis import progress
from chassis.data import request_rows
from chassis.figures import save_png
from chassis.markdown import PlotLinks
from chassis.registry import Registry
from chassis.rollout import lease
from chassis.rollout.analysis import StepAnalysis
from chassis.rollout.fleet import Fleet, resolve_replicas
from chassis.rollout.orphans import this_process
from chassis.rollout.plot import rollout_figure
from chassis.rollout.record import RolloutRecord
from chassis.rollout.runner import (
    Candidate,
    Decision,
    Retire,
    check_candidate,
    conclude,
    decision_markdown,
    step_rows,
    watch_window,
)
from chassis.serving.client import GatewayClient
from chassis.serving.embedded import check_replicas, gateway_for
from chassis.settings import ChassisSettings
from chassis.tracking import StoredArtifact, Tracking
from chassis.version_loader import evaluation_rows
from tasks.artifacts import publish_markdown, publish_table
from tasks.options import NO_CACHE_TASK, named


def preflight(
    registry: Registry, model_name: str, version: int, allow_retired: bool
) -> tuple[int, int | None]:
    """The champion to roll out against and the current challenger; refuses (nothing moved)
    a version whose gates did not pass, or that is not rollable (runner.check_candidate)."""
    registry.require_passed_gates(model_name, version)
    aliases = registry.current_aliases(model_name)
    retired = registry.retirement(model_name, version)
    described = retired.describe() if retired is not None else None
    champion = check_candidate(model_name, version, aliases, described, allow_retired)
    return champion, aliases.get("challenger")


# Named for what it judges, e.g. "canary 25% digits-mlp v3": every step of every rollout
# was "rollout-step-<random>" in the run graph.
ROLLOUT_STEP_TASK: dict[str, Any] = {
    **NO_CACHE_TASK,
    "task_run_name": named("{label} {candidate.model} v{candidate.version}"),
}


@task(name="rollout-step", **ROLLOUT_STEP_TASK)
def run_step(
    fleet: Fleet, split: RolloutRecord, label: str, compare: bool, candidate: Candidate
) -> StepAnalysis:
    """Commit the split to every replica (the registry's rollout record), then judge it."""
    fleet.commit(split, candidate.actor)
    logger = get_run_logger()
    with progress.log_fallback(logger):
        analysis = watch_window(
            fleet,
            candidate.version,
            candidate.champion,
            label,
            candidate.policy,
            compare,
            logger,
            paced=candidate.paced,
            escalation_share=candidate.escalation_share,
        )
    publish_step(analysis, fleet.model, candidate.version)
    return analysis


def publish_step(analysis: StepAnalysis, model: str, version: int) -> None:
    """The step's checks on its own task run, as soon as it is judged (no key: the
    rollout's steps table, published at the end, is the one with a history)."""
    publish_table(
        analysis.rows(),
        None,
        model,
        description=f"{analysis.step} of {model} v{version}: {analysis.verdict} "
        f"({analysis.reason})",
    )


@task(name="plot-rollout", **NO_CACHE_TASK)
def plot_rollout(
    registry: Registry, tracking: Tracking, decision: Decision
) -> StoredArtifact | None:
    """The steps' plot, stored with the MLflow run of the version rolled out (beside its
    gate report: the version's page links that run) under `rollout/`, one file per rollout.
    A picture is an aid: any failure to draw or store it is a warning and None, never a
    changed outcome."""
    candidate = decision.candidate
    title = (
        f"Rollout of {candidate.model} v{candidate.version} against v{candidate.champion} "
        f"({candidate.strategy}): {decision.headline}"
    )
    try:
        figure = rollout_figure(title, decision.analyses, candidate.policy)
        with tempfile.TemporaryDirectory(prefix="chassis-plot-") as folder:
            name = f"v{candidate.version}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.png"
            png = save_png(figure, Path(folder) / name)
            run_id = registry.version_run_id(candidate.model, candidate.version)
            return tracking.log_file_to_run(run_id, png, "rollout")
    except Exception as error:
        get_run_logger().warning("rollout plot not written (the outcome stands): %s", error)
        return None


def finish(
    decision: Decision,
    retire: Retire,
    evidence: dict[str, str],
    plot: PlotLinks | None = None,
) -> list[dict[str, str]]:
    """Publish the steps table and the decision (with the steps' plot when one was stored);
    retire a failed candidate and raise what a paused or failed rollout is
    (runner.conclude). Returns the table of a promotion."""
    candidate = decision.candidate
    model, tag = candidate.model, f"v{candidate.version}"
    table = step_rows(decision.analyses)
    publish_table(
        table,
        "rollout-steps",
        model,
        description=f"{candidate.strategy} rollout of {model} {tag}: one row per check",
    )

    def publish() -> None:
        publish_markdown(
            decision_markdown(decision, plot),
            "rollout-decision",
            model,
            description=f"Rollout decision for {model} {tag}: {decision.headline}",
        )

    conclude(decision, retire, evidence, publish)
    return table


def open_fleet(
    stack: contextlib.ExitStack,
    settings: ChassisSettings,
    registry: Registry,
    candidate: Candidate,
    replicas: list[str] | None,
    gateway_url: str | None,
) -> tuple[Fleet, bool, str]:
    """The fleet to drive (given replicas, or one gateway, started for this run if need
    be), each known to serve the champion; whether it was started here; where to replay."""
    model, champion, policy = candidate.model, candidate.champion, candidate.policy
    if replicas:
        urls = resolve_replicas(replicas)
        check_replicas(settings, urls, model, champion)
        embedded, traffic_url = False, gateway_url or urls[0]
    else:
        gateway = stack.enter_context(
            gateway_for(settings, model, champion, explicit_url=gateway_url)
        )
        urls, embedded, traffic_url = [gateway.url], gateway.embedded, gateway.url
    fleet = Fleet(
        registry,
        [GatewayClient(url, settings.admin_token()) for url in urls],
        model,
        sync_seconds=policy.sync_seconds,
        # A replica restarting comes back at the committed split within this; longer,
        # the step cannot be judged on the whole fleet and the rollout pauses.
        retry_seconds=max(policy.retry_seconds, policy.sync_seconds),
        # Every split this run commits holds only while it renews the lease: if this
        # process dies, the replicas return to the champion by themselves.
        owner=lease.owner_for_run(str(flow_run.id), str(flow_run.name), this_process()),
        lease_seconds=policy.lease_seconds,
    )
    stack.callback(fleet.close)
    get_run_logger().info("%s", fleet_description(urls, embedded))
    return fleet, embedded, traffic_url


def fleet_description(urls: list[str], embedded: bool) -> str:
    """What the run log says it drives. A gateway started for the run is gone when the run
    ends, so its address is not written as a link a reader of the log would follow."""
    if embedded:
        where = ", ".join(urlsplit(url).netloc for url in urls)
        return f"a temporary gateway on {where}, started for this run and stopped when it ends"
    return f"{len(urls)} gateway replica(s) {', '.join(urls)} (already running)"


def test_rows(registry: Registry, model_name: str, version: int) -> list[Any]:
    """The version's stored test rows (its spec's, for versions older than that) as request
    rows (numbers, or a text model's strings): traffic for demos and blue-green previews,
    without importing the spec's current code."""
    with tempfile.TemporaryDirectory(prefix="chassis-rows-") as folder:
        workdir = Path(folder)
        files = registry.fetch_version(model_name, version, workdir / f"v{version}")
        dataset = evaluation_rows(registry, files, workdir)
        return request_rows(dataset.test, dataset)


def replays_traffic(drive: str, embedded: bool) -> bool:
    """`drive` "always", or "auto" on a gateway started for this run (it has no users)."""
    return drive == "always" or (drive == "auto" and embedded)


def start_traffic(
    stack: contextlib.ExitStack, url: str, candidate: Candidate, rows: list[Any]
) -> "TrafficDriver | None":
    """Replay the spec's test rows meanwhile when the candidate's traffic is paced by this
    rollout (`Candidate.paced`), for as long as its steps can take."""
    policy = candidate.policy
    get_run_logger().info(
        "replaying test rows: %s; each step needs %d candidate samples",
        "yes" if candidate.paced else "no",
        policy.required_samples,
    )
    if not candidate.paced:
        return None
    longest_step = max(
        policy.step_seconds * (policy.max_extensions + 1), policy.max_replay_step_seconds
    )
    budget = longest_step * (policy.max_steps + 2)
    return stack.enter_context(TrafficDriver(url, candidate.model, rows, 4, budget))


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
                counted_to_total=False,  # the rollout's `stop` ends it, not a request count
            )

        self.thread = threading.Thread(target=run, daemon=True)

    def __enter__(self) -> "TrafficDriver":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
