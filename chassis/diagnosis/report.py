"""A diagnosis as people read it: markdown for the Prefect artifact and the MLflow run."""

from chassis.diagnosis.findings import BRANCH_TITLES, Diagnosis
from chassis.markdown import cell

MARKS = {"healthy": "ok", "failing": "FAILING", "not judged": "not judged"}


def to_markdown(diagnosis: Diagnosis) -> str:
    lines = [f"# Diagnosis of {diagnosis.model}", "", f"**{diagnosis.summary()}**", ""]
    for result in diagnosis.walked:
        verdict = "failing" if result.failing else "healthy"
        lines += [
            f"## {BRANCH_TITLES[result.branch]}: {verdict}",
            "",
            "| check | result | observed | healthy when |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {cell(f.check)} | {MARKS[f.verdict]} | {cell(f.observed)} | {cell(f.expected)} |"
            for f in result.findings
        ]
        lines.append("")
    if diagnosis.not_walked:
        skipped = ", ".join(BRANCH_TITLES[b] for b in diagnosis.not_walked)
        lines.append(f"Not walked (the tree stops at the first failing branch): {skipped}.")
    return "\n".join(lines)
