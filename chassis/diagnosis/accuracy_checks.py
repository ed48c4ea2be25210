"""The model branch's ground truth: each classifier version's live accuracy against its
accuracy gate (chassis/live_accuracy.py says what the gate is), from the gateways' own
gauges: every replica exports its accuracy over its last feedback rows
(`chassis_live_accuracy_ratio`, `chassis_live_feedback_rows`) and the version's gate
(`chassis_accuracy_gate_ratio`). The replicas' rows are added up, and a version fails only
when the Wilson upper bound of the whole is below its gate, on at least
`min_feedback_rows` rows, as the drift check judges it: labels arrive slowly, so this is
the rows the replicas hold now, not the observation window's.
"""

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from chassis.diagnosis.findings import Finding
from chassis.diagnosis.policy import DiagnosisPolicy
from chassis.rollout.statistics import wilson, z_for


@dataclass(frozen=True)
class LiveAccuracy:
    rows: int
    correct: float  # accuracy times rows, added over replicas
    gate: float | None


def live_accuracy(texts: list[str], model: str) -> dict[int, LiveAccuracy]:
    """Each version's live accuracy over every replica's `/metrics` text in `texts`."""
    rows: dict[int, int] = {}
    correct: dict[int, float] = {}
    gates: dict[int, float] = {}
    for text in texts:
        ratios: dict[int, float] = {}
        counts: dict[int, int] = {}
        try:
            families = list(text_string_to_metric_families(text))
        except ValueError:
            continue  # the traffic checks have named the replica whose exposition is broken
        for family in families:
            for sample in family.samples:
                labels = sample.labels
                if labels.get("model") != model or not labels.get("version", "").isdecimal():
                    continue
                version = int(labels["version"])
                if sample.name == "chassis_live_accuracy_ratio":
                    ratios[version] = sample.value
                elif sample.name == "chassis_live_feedback_rows":
                    counts[version] = int(sample.value)
                elif sample.name == "chassis_accuracy_gate_ratio":
                    gates[version] = sample.value
        for version, ratio in ratios.items():  # a regressor has rows and no ratio
            seen = counts.get(version, 0)
            rows[version] = rows.get(version, 0) + seen
            correct[version] = correct.get(version, 0.0) + ratio * seen
    return {v: LiveAccuracy(rows[v], correct[v], gates.get(v)) for v in rows}


def accuracy_findings(readings: dict[int, LiveAccuracy], policy: DiagnosisPolicy) -> list[Finding]:
    z = z_for(policy.alpha)
    findings: list[Finding] = []
    for version, seen in sorted(readings.items()):
        check = f"v{version} live accuracy"
        if seen.gate is None:
            continue  # gated before gates were recorded: nothing to judge against
        gate = f">= {seen.gate:.1%} (its accuracy gate)"
        if seen.rows < policy.min_feedback_rows:
            observed = f"{seen.rows} feedback rows"
            findings.append(
                Finding(
                    check, "not judged", observed, f"{gate}, on >= {policy.min_feedback_rows} rows"
                )
            )
            continue
        _, upper = wilson(round(seen.correct), seen.rows, z)
        accuracy = seen.correct / seen.rows
        findings.append(
            Finding(
                check,
                "failing" if upper < seen.gate else "healthy",
                f"{accuracy:.1%} of {seen.rows} feedback rows (upper bound {upper:.1%})",
                gate,
                version,
            )
        )
    return findings
