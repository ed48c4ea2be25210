"""The data-quality branch: the served window against the reference the champion was
trained on (missing values, values outside the reference's range per feature) and against
the spec's serving suite when it has one."""

import pandas as pd

from chassis.diagnosis.findings import Finding
from chassis.diagnosis.policy import DiagnosisPolicy

# The checks sanitization answers (chassis/diagnosis/recovery.py reads them by name).
MISSING_CHECK = "rows with a missing value"
RANGE_CHECK = "values within the reference's ranges"


def data_findings(
    reference: pd.DataFrame,
    served: pd.DataFrame,
    features: list[str],
    policy: DiagnosisPolicy,
    suite_failures: list[str] | None = None,
) -> list[Finding]:
    """`suite_failures`: the serving suite's failed expectations (None: no suite ran)."""
    if served.empty:
        return [Finding("served rows", "not judged", "no row in the window", "rows to judge")]
    missing_columns = [f for f in features if f not in served.columns]
    if missing_columns:
        return [
            Finding(
                "served columns",
                "failing",
                f"missing {', '.join(missing_columns)}",
                "every feature the model reads",
            )
        ]
    rows = served[features]
    missing_share = float(rows.isna().any(axis=1).mean())
    findings = [
        Finding(
            MISSING_CHECK,
            "failing" if missing_share > policy.missing_share_max else "healthy",
            f"{missing_share:.1%} of {len(rows)} rows",
            f"<= {policy.missing_share_max:.0%}",
        )
    ]
    outside: list[str] = []
    for feature in features:
        column = pd.to_numeric(rows[feature], errors="coerce").dropna()
        known = pd.to_numeric(reference[feature], errors="coerce").dropna()
        if column.empty or known.empty:
            continue
        share = float(((column < known.min()) | (column > known.max())).mean())
        if share > policy.out_of_range_share_max:
            outside.append(f"{feature} {share:.0%} outside [{known.min():.4g}, {known.max():.4g}]")
    findings.append(
        Finding(
            RANGE_CHECK,
            "failing" if outside else "healthy",
            "; ".join(outside[:5]) + (f" (+{len(outside) - 5} more)" if len(outside) > 5 else "")
            if outside
            else f"{len(features)} features within range",
            f"<= {policy.out_of_range_share_max:.0%} of each feature outside",
        )
    )
    if suite_failures is not None:
        findings.append(
            Finding(
                "serving suite",
                "failing" if suite_failures else "healthy",
                "; ".join(suite_failures[:5]) if suite_failures else "every expectation met",
                "every expectation met",
            )
        )
    return findings
