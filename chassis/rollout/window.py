"""When a step's window is judged, and what an undecided window becomes: a pure state
machine fed with the window's counts so far, used by the rollout task (polling real
gateways) and by the decision benchmark (replaying recorded counters) alike.
"""

from chassis.rollout.analysis import StepAnalysis, analyze_step
from chassis.rollout.counts import VersionCounts
from chassis.rollout.policy import RolloutPolicy
from chassis.rollout.schedule import look_points


class WindowJudge:
    """Judges at each look point (a share of the samples a verdict needs) and at the end
    of each window of `step_seconds`; an undecided step gets `max_extensions` more
    windows and is then "paused": too little traffic says nothing against a candidate."""

    def __init__(self, label: str, policy: RolloutPolicy, compare: bool) -> None:
        self.label = label
        self.policy = policy
        self.compare = compare
        self.points = look_points(policy.required_samples)
        self.windows = policy.max_extensions + 1
        self.window_index = 0
        self.looks = 0

    def samples(self, candidate: VersionCounts) -> int:
        """The candidate's samples that count toward a verdict (compared ones when comparing)."""
        return (
            min(candidate.executions, candidate.compared) if self.compare else candidate.executions
        )

    def observe(
        self, candidate: VersionCounts, stable: VersionCounts, elapsed_seconds: float
    ) -> StepAnalysis | None:
        """The verdict once there is one (pass, degraded, fail or paused), else None."""
        samples = self.samples(candidate)
        ended = elapsed_seconds >= (self.window_index + 1) * self.policy.step_seconds
        if not ended and not any(samples >= point for point in self.points):
            return None
        self.points = [point for point in self.points if samples < point]
        self.looks += 1
        analysis = analyze_step(self.label, candidate, stable, self.policy, compare=self.compare)
        if analysis.verdict != "inconclusive" or not ended:
            return None if analysis.verdict == "inconclusive" else analysis
        self.window_index += 1
        if self.window_index < self.windows:
            return None
        return StepAnalysis(
            self.label,
            "paused",
            analysis.checks,
            f"still inconclusive after {self.windows} window(s) of "
            f"{self.policy.step_seconds:g} s: {analysis.reason}. Too little traffic to judge: "
            "send traffic to the gateway (chassis traffic), give steps longer (step_seconds, "
            "max_extensions), or detect only larger effects (detect_error_increase, "
            "detect_agreement_drop)",
            analysis.candidate_samples,
            analysis.samples_needed,
        )
