"""The control flow of a staged rollout, apart from Prefect, MLflow and the gateways.

Everything that reaches out is a small protocol or a callable: the fleet (commit a split,
return to the champion, read counters), one step ("apply this split, wait for samples,
analyse": the Prefect task), promoting and retiring (the audited alias tasks) and
publishing. So unit tests drive every path with fakes in milliseconds: a healthy promotion,
a degraded share halved, a step below the minimum share rolled back, an inconclusive step
paused, a lost lease, replicas that lag.
"""

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from chassis import progress
from chassis.aliases import CHAMPION
from chassis.errors import (
    ChassisError,
    FleetError,
    RetiredChallenger,
    RolloutAborted,
    RolloutFailed,
    RolloutPaused,
)
from chassis.markdown import PlotLinks, table
from chassis.rollout import lease
from chassis.rollout.analysis import StepAnalysis
from chassis.rollout.counts import ModelCounts, VersionCounts
from chassis.rollout.orphans import with_backoff
from chassis.rollout.policy import RolloutPolicy
from chassis.rollout.record import RolloutRecord
from chassis.rollout.schedule import first_share, next_share
from chassis.rollout.window import WindowJudge

POLL_SECONDS = 0.25

Strategy = Literal["canary", "blue-green"]
Log = logging.Logger | logging.LoggerAdapter[logging.Logger]


class SplitFleet(Protocol):
    """What the rollout needs of the gateway replicas and the model's rollout record
    (chassis.rollout.fleet.Fleet)."""

    model: str
    owner: str
    lease_seconds: float
    held: RolloutRecord | None

    def commit(self, split: RolloutRecord, actor: str) -> RolloutRecord: ...

    def back_to_champion(
        self, actor: str, warm_version: int | None = None, retry_seconds: float = 0.0
    ) -> str | None: ...

    def keep_lease(self) -> None: ...

    def read(self) -> list[ModelCounts]: ...

    def window(self, now: list[ModelCounts], start: list[ModelCounts]) -> ModelCounts: ...


class StepRunner(Protocol):
    """Apply `split`, wait for samples, analyse: one step, judged as `label`."""

    def __call__(self, split: RolloutRecord, label: str, compare: bool) -> StepAnalysis: ...


# promote(reason): move the champion alias (compare-and-set on the champion it replaces).
Promote = Callable[[str], object]
# retire(reason, evidence): remove the candidate's challenger alias, audited.
Retire = Callable[[str, dict[str, str]], object]


@dataclass(frozen=True)
class Candidate:
    """What is rolled out, against what, how and by whom."""

    model: str
    version: int
    champion: int
    strategy: Strategy
    policy: RolloutPolicy
    actor: str
    # The traffic is this rollout's own replay: its pace is the machine's (window.WindowJudge).
    paced: bool = False
    # A cascade candidate's escalation share on the validation split (None: not a cascade):
    # the analysis checks the live share against it.
    escalation_share: float | None = None


def check_candidate(
    model: str,
    version: int,
    aliases: dict[str, int],
    retired: str | None,
    allow_retired: bool,
) -> int:
    """The champion `version` is rolled out against. Raises when there is nothing to roll
    out against, the version is the champion already, or an earlier rollout retired it
    (`retired` describes how) and `allow_retired` is not given. Nothing has moved then."""
    champion = aliases.get(CHAMPION)
    if champion is None:
        raise ChassisError(f"{model} has no champion to roll out against; promote one first")
    if champion == version:
        raise ChassisError(f"{model} v{version} is already the champion")
    if retired is not None and not allow_retired:
        # Also when the challenger alias was set by hand in MLflow (no set_challenger here).
        raise RetiredChallenger(
            f"{model} {retired}; roll it out again only with allow_retired "
            "(chassis rollout --allow-retired); nothing was changed"
        )
    return champion


def watch_window(
    fleet: SplitFleet,
    judged: int,
    reference: int,
    label: str,
    policy: RolloutPolicy,
    compare: bool,
    log: Log,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    paced: bool = False,
    escalation_share: float | None = None,
) -> StepAnalysis:
    """Poll every replica's counters from now on until the window judge has a verdict,
    renewing the split's lease at every look (while this run lives, its split holds)."""
    start, started = fleet.read(), clock()
    judge = WindowJudge(label, policy, compare, paced, escalation_share)
    windows_seen = 0
    needed = policy.required_samples
    with progress.track(label, total=needed, unit="samples") as bar:
        while True:
            sleep(POLL_SECONDS)
            fleet.keep_lease()
            counts = fleet.window(fleet.read(), start)
            candidate = counts.get(judged, VersionCounts())
            analysis = judge.observe(
                candidate, counts.get(reference, VersionCounts()), clock() - started
            )
            bar.update(
                completed=min(judge.samples(candidate), needed),
                detail=f"window {judge.window_index + 1} of {judge.windows}",
            )
            if judge.window_index > windows_seen:
                windows_seen = judge.window_index
                log.info(
                    "%s: window %d of %d ended undecided; next window %.0f s",
                    label,
                    windows_seen,
                    judge.windows,
                    judge.window_seconds,
                )
            if analysis is not None:
                log.info("%s: %s, %s", label, analysis.verdict, analysis.reason)
                return analysis


def canary_split(candidate: Candidate, mode: str, percent: float) -> RolloutRecord:
    return RolloutRecord(
        generation=0,
        mode=mode,
        stable_version=candidate.champion,
        candidate_version=candidate.version,
        percent=percent if mode == "canary" else 0.0,
        mirror_percent=candidate.policy.mirror_percent,
    )


def canary(candidate: Candidate, step: StepRunner) -> list[StepAnalysis]:
    """Shadow (optional), then shares that grow on health and halve on degradation.
    Ends with the last step's analysis: "pass" at 100 %, or the reason it stopped."""
    policy = candidate.policy
    analyses: list[StepAnalysis] = []
    if policy.shadow_first:
        analysis = with_share(step(canary_split(candidate, "shadow", 0.0), "shadow", True), 0.0)
        analyses.append(analysis)
        if analysis.verdict != "pass":
            return analyses
    percent: float | None = first_share(policy)
    compare = policy.mirror_percent > 0
    while percent is not None:
        split = canary_split(candidate, "canary", percent)
        analysis = with_share(step(split, f"canary {percent:g}%", compare), percent)
        analyses.append(analysis)
        if analysis.verdict in ("fail", "paused"):
            return analyses
        following = next_share(policy, percent, analysis.verdict, len(analyses))
        if following.rollback:
            reason = f"{analysis.reason}; {following.reason}"
            analyses.append(replace(analysis, verdict="fail", reason=reason))
            return analyses
        percent = following.percent
    return analyses


def blue_green(candidate: Candidate, step: StepRunner) -> list[StepAnalysis]:
    """Preview: the idle color runs a mirror of every live request and is judged against
    the live one. Switch. Live window: the new color answers, the old one stays warm and
    runs `mirror_percent` of requests for comparison. A slower color is not switched to
    (there is no share to halve), so "degraded" fails here."""
    preview_split = RolloutRecord(
        generation=0,
        mode="blue-green",
        stable_version=candidate.champion,
        candidate_version=candidate.version,
    )
    preview = with_share(step(preview_split, "blue-green preview", True), 0.0)
    if preview.verdict != "pass":
        return [degraded_fails(preview)]
    mirror = candidate.policy.mirror_percent
    switched = RolloutRecord(
        generation=0,
        stable_version=candidate.version,
        warm_version=candidate.champion,
        mirror_percent=mirror,
    )
    live = with_share(step(switched, "blue-green live", mirror > 0), 100.0)
    return [preview, degraded_fails(live)]


def degraded_fails(analysis: StepAnalysis) -> StepAnalysis:
    if analysis.verdict != "degraded":
        return analysis
    return replace(analysis, verdict="fail")


def with_share(analysis: StepAnalysis, percent: float) -> StepAnalysis:
    """The step's analysis with the candidate's share of live traffic it was judged at."""
    return replace(analysis, share_percent=percent)


def end_safely(
    fleet: SplitFleet, candidate: Candidate, retire_because: str | None, retire: Retire
) -> str:
    """After a failure mid-step: the champion alone in the record (no lease), and with
    `retire_because` the challenger retired, each retried with backoff for up to the lease
    (past it the replicas end the rollout themselves). Returns what state was left."""
    version, champion = candidate.version, candidate.champion
    held = fleet.held
    try:
        problem = fleet.back_to_champion(candidate.actor, retry_seconds=fleet.lease_seconds)
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
            lambda: retire(
                f"rollout aborted mid-step ({retire_because})"[:500], {"owner": fleet.owner}
            ),
            seconds=fleet.lease_seconds,
        )
    except Exception as error:
        return f"{left}; v{version} could NOT be retired ({error}) and keeps its alias"
    return f"{left}; v{version} retired (its challenger alias removed)"


@dataclass(frozen=True)
class Decision:
    """How a rollout ended once its steps ran: promoted, paused or rolled back."""

    candidate: Candidate
    analyses: list[StepAnalysis]

    @property
    def last(self) -> StepAnalysis:
        return self.analyses[-1]

    @property
    def outcome(self) -> Literal["promoted", "paused", "rolled back"]:
        verdict = self.last.verdict
        return (
            "promoted"
            if verdict == "pass"
            else "paused"
            if verdict == "paused"
            else ("rolled back")
        )

    @property
    def headline(self) -> str:
        return {
            "promoted": "PROMOTED to champion",
            "paused": "PAUSED",
            "rolled back": "ROLLED BACK",
        }[self.outcome]

    @property
    def reason(self) -> str:
        strategy = self.candidate.strategy
        if self.outcome == "promoted":
            return f"{strategy} rollout passed {len(self.analyses)} step(s)"
        verb = "paused" if self.outcome == "paused" else "failed"
        return f"{strategy} rollout {verb} at {self.last.step}: {self.last.reason}"


def _counted(step: StepRunner, bar: progress.Tracker) -> StepRunner:
    """`step`, advancing `bar` after each step; its detail says the step being judged and
    the verdicts so far."""
    verdicts: list[str] = []

    def counted(split: RolloutRecord, label: str, compare: bool) -> StepAnalysis:
        bar.update(detail="; ".join([*verdicts, f"{label}: judging"]))
        analysis = step(split, label, compare)
        verdicts.append(f"{label}: {analysis.verdict}")
        bar.advance(1, detail="; ".join(verdicts))
        return analysis

    return counted


def run_steps(
    fleet: SplitFleet,
    candidate: Candidate,
    step: StepRunner,
    promote: Promote,
    retire: Retire,
    log: Log,
) -> Decision:
    """Run the strategy's steps on a claimed fleet, then leave the replicas on the right
    version: the champion after a failure (the candidate's traffic to 0 first), the
    candidate after a pass (registry first, compare-and-set, then the replicas).

    A fleet that fails (the replicas, not the candidate) pauses the rollout with the
    challenger kept; any other error aborts it, retiring the challenger; a cancellation
    ends it safely and is raised on."""
    model, version = candidate.model, candidate.version
    try:
        with progress.track(f"{candidate.strategy} v{version}", unit="steps") as bar:
            step = _counted(step, bar)
            if candidate.strategy == "blue-green":
                analyses = blue_green(candidate, step)
            else:
                analyses = canary(candidate, step)
    except FleetError as error:
        left = end_safely(fleet, candidate, None, retire)
        raise RolloutPaused(f"{model} v{version}: {error}. {left}") from error
    except Exception as error:
        # The rollout itself broke (the registry, a lost lease, a bug): end it safely.
        left = end_safely(fleet, candidate, f"{type(error).__name__}: {error}", retire)
        raise RolloutAborted(
            f"{model} v{version}: the rollout stopped mid-step on "
            f"{type(error).__name__}: {error}. {left}"
        ) from error
    except BaseException as error:
        # Cancelled (Prefect's TerminationSignal on SIGTERM) or interrupted: the same.
        log.error("%s", end_safely(fleet, candidate, f"{type(error).__name__}", retire))
        raise
    decision = Decision(candidate, analyses)
    retry = candidate.policy.lease_seconds
    if decision.outcome != "promoted":
        _warn_if_lagging(fleet.back_to_champion(candidate.actor, retry_seconds=retry), log)
        return decision
    try:
        promote(decision.reason)
    except ChassisError:
        # Serve what the registry says.
        _warn_if_lagging(fleet.back_to_champion(candidate.actor, retry_seconds=retry), log)
        raise
    # Blue-green keeps the old color warm (not compared) for an instant rollback. The
    # record written here has no owner and no lease: stable needs neither.
    warm = candidate.champion if candidate.strategy == "blue-green" else None
    _warn_if_lagging(
        fleet.back_to_champion(candidate.actor, warm_version=warm, retry_seconds=retry), log
    )
    return decision


def conclude(
    decision: Decision, retire: Retire, evidence: dict[str, str], publish: Callable[[], None]
) -> None:
    """After the gateways are released: retire a failed candidate, publish the decision
    (`publish`), and raise what a paused or failed rollout is."""
    candidate = decision.candidate
    model, version, champion = candidate.model, candidate.version, candidate.champion
    if decision.outcome == "paused":
        publish()
        raise RolloutPaused(
            f"{model} v{version}: {decision.reason}. Traffic is back on v{champion}; "
            f"v{version} keeps its challenger alias: run the rollout again"
        )
    if decision.outcome == "rolled back":
        with_backoff(
            lambda: retire(decision.reason, evidence), seconds=candidate.policy.lease_seconds
        )
        publish()
        raise RolloutFailed(
            f"{model} v{version}: {decision.reason}; traffic is back on v{champion}"
        )
    publish()


def decision_markdown(decision: Decision, plot: PlotLinks | None = None) -> str:
    """The decision, its reason, each step's verdict, and the steps' plot when one was
    stored (`plot`)."""
    candidate = decision.candidate
    lines = [
        f"# Rollout of {candidate.model} v{candidate.version} ({candidate.strategy}): "
        f"{decision.headline}",
        "",
        decision.reason,
        "",
        table(
            ["step", "verdict", "reason"],
            [(a.step, a.verdict, a.reason) for a in decision.analyses],
        ),
    ]
    if plot is not None:
        title = f"Rollout of {candidate.model} v{candidate.version}, step by step"
        lines += ["", "## Step by step", plot.markdown(title)]
    return "\n".join(lines)


def _warn_if_lagging(problem: str | None, log: Log) -> None:
    if problem:
        log.warning(
            "the champion alone is committed; %s (they serve it when they are back)", problem
        )


def step_rows(analyses: Sequence[StepAnalysis]) -> list[dict[str, str]]:
    return [row for analysis in analyses for row in analysis.rows()]
