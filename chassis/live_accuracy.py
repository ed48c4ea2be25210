"""Live accuracy: feedback joined with predictions, judged against the version's gate.

The accuracy gate of a classifier version is the lowest accuracy a challenger measured on
the same rows could have and still pass the gates against it as champion (its test accuracy
plus `min_absolute_change_vs_champion`, times `1 + min_relative_change_vs_champion` when
set), or the policy's absolute `quality_floor` when higher and the quality metric is
accuracy. A version whose accuracy on live traffic falls below it answers worse than what
the gates would refuse to put in its place. The gates set it on the version
(`chassis.accuracy_gate`), the gateway exports it and the drift check judges against it.

A version is judged below its gate only when the Wilson upper bound of its live accuracy
(one-sided, at the policy's false-alarm rate) is below the gate, on at least
`min_feedback_rows` rows: a few unlucky labels do not start a retraining. A regressor's
feedback is reported as its mean absolute error, not judged (no accuracy gate).
"""

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from chassis.rollout.statistics import wilson, z_for
from chassis.task import CLASSIFICATION

if TYPE_CHECKING:  # light at run time: the CLI's documents read VersionAccuracy
    import pandas as pd

    from chassis.drift_policy import DriftPolicy
    from chassis.gates import GatePolicy, Measurements

# below-gate: the accuracy's upper bound is under the gate (on enough rows); meets-gate;
# too-few-rows (fewer than min_feedback_rows); no-gate (gated before the gate was recorded);
# not-judged: a regressor's (reported as mean absolute error).
Verdict = Literal["below-gate", "meets-gate", "too-few-rows", "no-gate", "not-judged"]


def accuracy_gate(candidate: "Measurements", policy: "GatePolicy") -> float | None:
    """The live accuracy `candidate` must keep (see the module doc); None for a regressor
    or a version whose accuracy was not measured."""
    accuracy = candidate.metrics.get("accuracy")
    if candidate.task != CLASSIFICATION or accuracy is None:
        return None
    floors = [accuracy + policy.min_absolute_change_vs_champion]
    if policy.min_relative_change_vs_champion is not None:
        floors.append(accuracy * (1 + policy.min_relative_change_vs_champion))
    if policy.quality_floor is not None and policy.quality_metric == "accuracy":
        floors.append(policy.quality_floor)
    return min(1.0, max(0.0, *floors))


class VersionAccuracy(BaseModel):
    """One version's live feedback in a window and the verdict on it (in the drift check's
    outcome and the CLI's document as it is)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int
    rows: int
    correct: int | None  # a classifier's right answers; None for a regressor
    accuracy: float | None
    upper_bound: float | None  # Wilson upper bound of the accuracy
    gate: float | None  # the version's accuracy gate (tag chassis.accuracy_gate)
    mean_absolute_error: float | None  # a regressor's
    verdict: Verdict

    @property
    def below_gate(self) -> bool:
        return self.verdict == "below-gate"

    def sentence(self) -> str:
        if self.accuracy is None:
            error = self.mean_absolute_error
            return f"v{self.version}: mean absolute error {error:.4g} on {self.rows} feedback rows"
        shown = f"v{self.version}: live accuracy {self.accuracy:.1%} on {self.rows} feedback rows"
        if self.gate is None:
            return f"{shown} (no accuracy gate recorded)"
        bound = f"upper bound {self.upper_bound or 0:.1%}, gate {self.gate:.1%}"
        return f"{shown} ({bound}): {self.verdict}"


def judge_live_accuracy(
    feedback: "pd.DataFrame",
    gates: dict[int, float | None],
    policy: "DriftPolicy",
    regressor: bool,
) -> list[VersionAccuracy]:
    """Per version in `feedback` (rows of `model_version`, `prediction`, `label`), its live
    accuracy (or mean absolute error) and verdict against `gates[version]`."""
    from chassis.serving.prediction_log import LABEL, PREDICTION, VERSION

    if feedback.empty:
        return []
    z = z_for(policy.accuracy_false_alarm_rate)
    judged: list[VersionAccuracy] = []
    for version, rows in feedback.groupby(VERSION, sort=True):
        number = int(version)  # pyright: ignore[reportArgumentType]
        count = len(rows)
        if regressor:
            error = float((rows[PREDICTION] - rows[LABEL]).abs().mean())
            judged.append(
                VersionAccuracy(
                    version=number,
                    rows=count,
                    correct=None,
                    accuracy=None,
                    upper_bound=None,
                    gate=None,
                    mean_absolute_error=error,
                    verdict="not-judged",
                )
            )
            continue
        correct = int((rows[PREDICTION] == rows[LABEL]).sum())
        _, upper = wilson(correct, count, z)
        gate = gates.get(number)
        if gate is None:
            verdict = "no-gate"
        elif count < policy.min_feedback_rows:
            verdict = "too-few-rows"
        else:
            verdict = "below-gate" if upper < gate else "meets-gate"
        judged.append(
            VersionAccuracy(
                version=number,
                rows=count,
                correct=correct,
                accuracy=correct / count,
                upper_bound=upper,
                gate=gate,
                mean_absolute_error=None,
                verdict=verdict,
            )
        )
    return judged
