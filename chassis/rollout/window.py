"""When a step's window is judged, and what an undecided window becomes: a pure state
machine fed with the window's counts so far, used by the rollout task (polling real
gateways) and by the decision benchmark (replaying recorded counters) alike.
"""

import math
from dataclasses import replace

from chassis.rollout.analysis import StepAnalysis, analyze_step
from chassis.rollout.counts import VersionCounts
from chassis.rollout.policy import RolloutPolicy
from chassis.rollout.schedule import look_points


class WindowJudge:
    """Judges at each look point (a share of the samples a verdict needs) and at the end
    of each window of `step_seconds`; an undecided step gets `max_extensions` more
    windows and is then "paused": too little traffic says nothing against a candidate."""

    def __init__(
        self,
        label: str,
        policy: RolloutPolicy,
        compare: bool,
        paced: bool = False,
        escalation_share: float | None = None,
    ) -> None:
        """`paced`: the traffic is the rollout's own replay, so its pace is the machine's,
        not the users': after the first window, the windows stretch to the time the samples
        need at that pace (up to `max_replay_step_seconds` a step). They stay as many, so
        the looks, and the false-alarm budget spread over them, do not change."""
        self.label = label
        self.escalation_share = escalation_share  # a cascade candidate's validation share
        self.policy = policy
        self.compare = compare
        self.paced = paced
        self.points = look_points(policy.required_samples)
        self.windows = policy.max_extensions + 1
        self.window_index = 0
        self.window_seconds = policy.step_seconds
        self.window_end = policy.step_seconds  # seconds into the step
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
        ended = elapsed_seconds >= self.window_end
        if not ended and not any(samples >= point for point in self.points):
            return None
        self.points = [point for point in self.points if samples < point]
        self.looks += 1
        analysis = analyze_step(
            self.label,
            candidate,
            stable,
            self.policy,
            compare=self.compare,
            escalation_share=self.escalation_share,
        )
        if analysis.verdict != "inconclusive" or not ended:
            return None if analysis.verdict == "inconclusive" else analysis
        self.window_index += 1
        if self.window_index < self.windows:
            if self.paced and self.window_index == 1:
                self._stretch(analysis, elapsed_seconds)
            self.window_end += self.window_seconds
            return None
        return replace(
            analysis,
            verdict="paused",
            reason=f"still inconclusive after {self.windows} window(s) ({elapsed_seconds:.0f} s): "
            f"{analysis.reason}. Too little traffic to judge"
            f"{self._pace(analysis, elapsed_seconds)}: send traffic to the gateway (chassis "
            f"traffic), give steps longer ({self._longer}), or detect only larger effects "
            "(detect_error_increase, detect_agreement_drop)",
        )

    @property
    def _longer(self) -> str:
        """The settings that make this step longer."""
        return (
            "max_replay_step_seconds, max_extensions"
            if self.paced
            else "step_seconds, max_extensions"
        )

    def _stretch(self, analysis: StepAnalysis, elapsed_seconds: float) -> None:
        """The remaining windows' length: the time the missing samples need at the first
        window's pace, with a quarter more for a machine that gets busier, spread over
        them; at least `step_seconds`, and the step at most `max_replay_step_seconds`."""
        if analysis.candidate_samples <= 0:
            return  # nothing came at all: the replay is not reaching the model
        rate = analysis.candidate_samples / elapsed_seconds
        missing = max(analysis.samples_needed - analysis.candidate_samples, 0)
        remaining = self.windows - 1
        wanted = 1.25 * missing / rate / remaining
        room = (self.policy.max_replay_step_seconds - elapsed_seconds) / remaining
        self.window_seconds = max(self.policy.step_seconds, min(wanted, room))

    def _pace(self, analysis: StepAnalysis, elapsed_seconds: float) -> str:
        """The step length the samples' pace so far asks for: when traffic flows but slowly
        (a heavy model on a busy machine), the user learns what to set, not just that."""
        if analysis.candidate_samples <= 0 or elapsed_seconds <= 0:
            return ""
        rate = analysis.candidate_samples / elapsed_seconds
        needed_seconds = analysis.samples_needed / rate
        step = math.ceil(needed_seconds / self.windows / 10) * 10
        return (
            f" ({rate:.1f} candidate samples/s: {self.windows} window(s) of about {step} s "
            "would collect them at this pace)"
        )
