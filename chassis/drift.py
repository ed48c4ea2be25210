"""Drift of served traffic against a version's reference, with data quality first.

The one module that drives Evidently. A window is judged in this order, and the first
failing step decides: the schema must match the reference (else `DriftInputError`); the
window must be usable (rows, no all-null column, no null spike), else the verdict is
`data-quality-failure`, never a silent "no drift"; only then Evidently's DataDriftPreset
decides `drift` or `no-drift` from the share of drifted columns.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from chassis.errors import ChassisError

Verdict = Literal["drift", "no-drift", "data-quality-failure"]


class DriftInputError(ChassisError):
    """The window cannot be compared with the reference (schema mismatch, no reference)."""


@dataclass(frozen=True)
class DriftConfig:
    """Evidently's defaults unless set; per-column overrides win over the global ones."""

    drift_share: float = 0.5
    method: str | None = None
    threshold: float | None = None
    per_column_method: dict[str, str] = field(default_factory=dict)
    per_column_threshold: dict[str, float] = field(default_factory=dict)
    min_rows: int = 30
    max_null_share: float = 0.2
    # Statistics on a uniform random sample of at most this many rows per side: drift
    # tests on 10^5 rows already resolve tiny shifts, and the cost grows with the rows.
    max_rows: int = 200_000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.drift_share <= 1:
            raise DriftInputError(f"drift_share must be in (0, 1], got {self.drift_share}")
        if not 0 <= self.max_null_share < 1:
            raise DriftInputError(f"max_null_share must be in [0, 1), got {self.max_null_share}")
        if self.min_rows < 1:
            raise DriftInputError(f"min_rows must be at least 1, got {self.min_rows}")


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    threshold: float
    score: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    verdict: Verdict
    current_rows: int
    reference_rows: int
    drifted_columns: int = 0
    drifted_share: float = 0.0
    columns: tuple[ColumnDrift, ...] = ()
    quality_problems: tuple[str, ...] = ()

    def summary_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "column": c.column,
                "method": c.method,
                "threshold": c.threshold,
                "score": round(c.score, 6),
                "drifted": c.drifted,
            }
            for c in self.columns
        ]


def check_schema(current: pd.DataFrame, features: list[str]) -> None:
    missing = [c for c in features if c not in current.columns]
    if missing:
        raise DriftInputError(
            f"prediction log does not match the reference: missing column(s) "
            f"{', '.join(map(repr, missing[:10]))}{' ...' if len(missing) > 10 else ''}"
        )
    wrong = [c for c in features if not pd.api.types.is_numeric_dtype(current[c])]
    if wrong:
        raise DriftInputError(
            f"prediction log does not match the reference: non-numeric column(s) {wrong[:10]}"
        )


def quality_problems(current: pd.DataFrame, features: list[str], config: DriftConfig) -> list[str]:
    if len(current) == 0:
        return ["the window has no rows"]
    problems = []
    if len(current) < config.min_rows:
        problems.append(f"the window has {len(current)} rows, fewer than {config.min_rows}")
    nulls = current[features].isna().mean()
    problems += [f"column {c!r} is entirely null" for c in nulls.index if nulls[c] == 1.0]
    problems += [
        f"column {c!r} is {nulls[c]:.0%} null (limit {config.max_null_share:.0%})"
        for c in nulls.index
        if config.max_null_share < nulls[c] < 1.0
    ]
    return problems


def sample_rows(frame: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= limit else frame.sample(n=limit, random_state=seed)


def _column_drifted(method: str, score: float, threshold: float) -> bool:
    # Evidently reports p-values for statistical tests (drift when small) and distances
    # for the others (drift when large); their display names say which.
    return score < threshold if "p_value" in method else score >= threshold


def _display_name(method: str, reference: pd.Series, current: pd.Series) -> str:
    """`ks` -> `K-S p_value`: a method given by its short name, as Evidently displays it."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    try:
        return str(get_stattest(reference, current, ColumnType.Numerical, method).display_name)
    except Exception:
        return method  # already a display name (Evidently's default methods are reported so)


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: list[str],
    config: DriftConfig,
    html_path: Path | None = None,
) -> DriftResult:
    if reference is None or len(reference) == 0:
        raise DriftInputError("the reference snapshot is empty; cannot judge drift")
    check_schema(reference, features)
    if len(current) == 0:  # an empty log has no columns either: report it as what it is
        return DriftResult(
            "data-quality-failure", 0, len(reference), quality_problems=("the window has no rows",)
        )
    check_schema(current, features)
    problems = quality_problems(current, features, config)
    if problems:
        return DriftResult(
            "data-quality-failure", len(current), len(reference), quality_problems=tuple(problems)
        )
    from evidently import Report
    from evidently.presets import DataDriftPreset

    reference = sample_rows(reference[features], config.max_rows, config.seed)
    current = sample_rows(current[features], config.max_rows, config.seed + 1)
    preset = DataDriftPreset(
        columns=features,
        drift_share=config.drift_share,
        method=config.method,
        threshold=config.threshold,
        per_column_method=config.per_column_method or None,
        per_column_threshold=config.per_column_threshold or None,
    )
    snapshot = Report([preset]).run(
        reference_data=reference[features], current_data=current[features]
    )
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html_path))
    count, share, columns = 0.0, 0.0, []
    for metric in snapshot.dict()["metrics"]:
        kind = str(metric["config"].get("type", ""))
        if kind.endswith(":DriftedColumnsCount"):
            count, share = metric["value"]["count"], metric["value"]["share"]
        elif kind.endswith(":ValueDrift"):
            config_ = metric["config"]
            column = str(config_["column"])
            method = _display_name(str(config_["method"]), reference[column], current[column])
            threshold, score = float(config_["threshold"]), float(metric["value"])
            columns.append(
                ColumnDrift(
                    str(config_["column"]),
                    method,
                    threshold,
                    score,
                    _column_drifted(method, score, threshold),
                )
            )
    verdict: Verdict = "drift" if share >= config.drift_share else "no-drift"
    return DriftResult(
        verdict, len(current), len(reference), int(count), float(share), tuple(columns)
    )
