"""The model branch's live-accuracy check, on the gauges replicas export: rows added over
replicas, judged against the version's gate with a confidence bound, never on a handful."""

from chassis.diagnosis.accuracy_checks import accuracy_findings, live_accuracy
from chassis.diagnosis.policy import DiagnosisPolicy

POLICY = DiagnosisPolicy()


def exposition(version: int, accuracy: float | None, rows: int, gate: float | None) -> str:
    labels = f'model="m",version="{version}"'
    lines = [f"chassis_live_feedback_rows{{{labels}}} {rows}"]
    if accuracy is not None:
        lines.append(f"chassis_live_accuracy_ratio{{{labels}}} {accuracy}")
    if gate is not None:
        lines.append(f"chassis_accuracy_gate_ratio{{{labels}}} {gate}")
    return "\n".join(lines) + "\n"


def test_a_version_surely_below_its_gate_over_all_replicas_fails():
    replicas = [exposition(2, 0.60, 100, 0.9), exposition(2, 0.55, 100, 0.9)]
    readings = live_accuracy(replicas, "m")
    assert readings[2].rows == 200 and round(readings[2].correct) == 115
    (finding,) = accuracy_findings(readings, POLICY)
    assert finding.failing and finding.version == 2
    assert finding.check == "v2 live accuracy" and "57.5% of 200 feedback rows" in finding.observed


def test_a_version_at_its_gate_or_on_few_rows_does_not_fail():
    (fine,) = accuracy_findings(live_accuracy([exposition(1, 0.95, 300, 0.9)], "m"), POLICY)
    assert fine.verdict == "healthy"
    # 30 % right, but on 50 rows: fewer than min_feedback_rows, so not judged.
    (few,) = accuracy_findings(live_accuracy([exposition(1, 0.3, 50, 0.9)], "m"), POLICY)
    assert few.verdict == "not judged"
    # 87 % of 200 against a 90 % gate: below, but not surely (the upper bound is above it).
    (close,) = accuracy_findings(live_accuracy([exposition(1, 0.87, 200, 0.9)], "m"), POLICY)
    assert close.verdict == "healthy" and "upper bound" in close.observed


def test_a_regressor_or_a_version_without_a_gate_or_another_model_is_not_judged():
    regressor = exposition(1, None, 500, None)  # rows and a mean absolute error, no ratio
    no_gate = exposition(3, 0.1, 500, None)
    other = exposition(4, 0.1, 500, 0.9).replace('model="m"', 'model="other"')
    assert accuracy_findings(live_accuracy([regressor, no_gate, other], "m"), POLICY) == []
