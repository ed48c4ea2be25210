"""Drift of served traffic against a version's reference, with data quality first.

The one module that drives Evidently. A window is judged in this order, and the first
failing step decides: the schema must match the reference (else `DriftInputError`); the
window must be usable (rows; per column, nulls and +/-inf counted, no column without a
finite value, no null or infinity spike) and, when the policy says so, pass the model's
serving suite (Great Expectations, run beforehand and handed in), else the verdict is
`data-quality-failure`, never a silent "no drift"; only then Evidently's per-column drift
tests decide `drift` or `no-drift` from the share of drifted columns, on the rows whose
features are all finite (the rows left out are counted in the result). A regressor's
predicted values are one more numeric column when its reference holds them
(`prediction_column`): predictions that move are drift even when no single feature does.
Handed +/-inf, Evidently's column tests drop them silently while its dataset share counts
such columns as drifted: a spike of infinities got a "no drift" (or "drift") verdict nobody
had judged, and an all-infinite column a ValueError.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from chassis.drift_policy import DriftPolicy, SuiteAction, drift_policy_from
from chassis.drift_verdict import Verdict, verdict_sentence
from chassis.errors import DriftInputError
from chassis.expectations import SuiteResult, describe_failures

__all__ = ["DriftInputError", "DriftPolicy", "Verdict", "detect_drift", "drift_policy_from"]

# The share of drifted columns that is dataset drift when no policy says otherwise.
DEFAULT_DRIFT_SHARE = DriftPolicy.model_fields["drift_share"].default
# Failing expectations spelled out in a message; a broken producer can fail hundreds.
SHOWN_SUITE_FAILURES = 5
# Columns named where a summary lists the columns of one test; more are counted.
SHOWN_COLUMNS = 3
# A p-value of 0 (Evidently rounds tiny ones) is taken as this, so its strength is finite.
SMALLEST_P_VALUE = 1e-300


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    threshold: float
    score: float
    drifted: bool
    # False for a column shown to explain the verdict but not counted in it (a text
    # column's descriptors, such as its length in tokens).
    counted: bool = True

    @property
    def strength(self) -> float:
        """How far the score went toward drift, on one scale for every test: 1 at the
        threshold, above 1 drifted. A p-value (drift when small) as -log10(p) over
        -log10(threshold), so p = 1e-30 is not a million times a p = 1e-24; a distance
        (drift when large) as score over threshold. What a plot over time can share one
        axis for, and what ranks the columns the report shows."""
        if _is_p_value(self.method) and 0 < self.threshold < 1:
            return math.log10(max(self.score, SMALLEST_P_VALUE)) / math.log10(self.threshold)
        return self.score / self.threshold if self.threshold > 0 else self.score


@dataclass(frozen=True)
class NonFinite:
    """How many of a column's values are null (NaN) or infinite, out of `rows`."""

    column: str
    rows: int
    null: int
    pos_inf: int
    neg_inf: int

    @property
    def infinite(self) -> int:
        return self.pos_inf + self.neg_inf

    @property
    def total(self) -> int:
        return self.null + self.infinite

    def counts(self) -> str:
        return f"{self.null} null, {self.pos_inf} +inf, {self.neg_inf} -inf of {self.rows} rows"


@dataclass(frozen=True)
class SkippedFile:
    """A prediction-log file in the window that could not be read, and why."""

    path: str
    reason: str

    def describe(self) -> str:
        return f"{self.path} ({self.reason})"


@dataclass(frozen=True)
class DriftResult:
    verdict: Verdict
    current_rows: int
    reference_rows: int
    drifted_columns: int = 0
    drifted_share: float = 0.0
    columns: tuple[ColumnDrift, ...] = ()
    quality_problems: tuple[str, ...] = ()
    # Columns of the window with any null or infinite value, and their counts.
    non_finite: tuple[NonFinite, ...] = ()
    # Window rows left out of the distribution test for a non-finite feature value.
    dropped_rows: int = 0
    skipped_files: tuple[SkippedFile, ...] = ()
    # The window against the model's serving suite; None when it was not run (no suite in
    # the spec, the policy skips it, or the window has no rows to validate).
    serving_suite: SuiteResult | None = None
    serving_suite_action: SuiteAction = "fail"
    # What a human reads to see what moved (a text column: how well a classifier tells the
    # window from the reference, and the character n-grams typical of the window).
    explanations: tuple[str, ...] = ()
    # A text column's domain classifier's held-out ROC AUC: its effect size, to trend.
    text_content_auc: float | None = None
    # The policy's drift_share: the share of judged columns that makes dataset drift.
    drift_share_needed: float = DEFAULT_DRIFT_SHARE

    @property
    def judged_columns(self) -> int:
        """The columns counted in the verdict (a text column's descriptors are not)."""
        return sum(1 for c in self.columns if c.counted)

    def verdict_sentence(self) -> str:
        """`no drift: 39% of columns drifted (25 of 64), 50% needed (32)`."""
        return verdict_sentence(
            self.verdict, self.drifted_columns, self.judged_columns, self.drift_share_needed
        )

    def drifted_column_names(self) -> list[str]:
        """The columns whose drift counts toward the verdict, drifted."""
        return [c.column for c in self.columns if c.drifted and c.counted]

    def methods(self) -> str:
        """The tests counted in the verdict, one entry per test and threshold with its
        column count (the names when a few): 64 columns' "column: method" made a table row
        no screen could show; the per-column table lists every column."""
        groups: dict[tuple[str, float], list[str]] = {}
        for c in self.columns:
            if c.counted:
                groups.setdefault((c.method, c.threshold), []).append(c.column)
        return "; ".join(
            f"{method}, threshold {threshold:g}: "
            + (", ".join(names) if len(names) <= SHOWN_COLUMNS else f"{len(names)} columns")
            for (method, threshold), names in groups.items()
        )

    def serving_suite_status(self) -> str:
        suite = self.serving_suite
        if suite is None:
            return "not run"
        if suite.success:
            return f"passed ({suite.suite_name}, {len(suite.results)} expectations)"
        verdict = "data-quality failure" if self.serving_suite_action == "fail" else "warning"
        return (
            f"FAILED ({suite.suite_name}, {len(suite.failures)} of {len(suite.results)} "
            f"expectations): {verdict}"
        )

    def suite_problem(self) -> str | None:
        """The serving suite's failure when it makes the window unusable (policy
        serving_suite=fail), naming its failing expectations; else None."""
        suite = self.serving_suite
        if suite is None or suite.success or self.serving_suite_action != "fail":
            return None
        return describe_failures(suite, "the window", SHOWN_SUITE_FAILURES)

    def unusable_reason(self) -> str | None:
        """Why the window could not be judged (a data-quality failure), or None."""
        if self.verdict != "data-quality-failure":
            return None
        problems = [*self.quality_problems, *filter(None, [self.suite_problem()])]
        # Skipped files an empty window's problem already names are not repeated.
        named = " ".join(problems)
        unnamed = [f for f in self.skipped_files if f.path not in named]
        return "; ".join(problems) + "".join(f" (also skipped: {f.describe()})" for f in unnamed)

    def suite_failures(self) -> list[str]:
        """The serving suite's failing expectations, at most a few."""
        if self.serving_suite is None:
            return []
        return [r.describe() for r in self.serving_suite.failures[:SHOWN_SUITE_FAILURES]]

    def monitoring_metrics(self) -> dict[str, float]:
        """The figures of the check logged to the model's monitoring run."""
        metrics = {
            "drifted_share": self.drifted_share,
            "drifted_columns": float(self.drifted_columns),
            "served_rows": float(self.current_rows),
            "non_finite_rows_dropped": float(self.dropped_rows),
            "skipped_files": float(len(self.skipped_files)),
        }
        if self.text_content_auc is not None:
            metrics["text_content_auc"] = self.text_content_auc
        return metrics

    def notes(self) -> list[str]:
        """What the distribution test did not see: non-finite values and unreadable files
        (the serving suite's result is data quality, shown with it, not here)."""
        notes = [f"column {c.column!r}: {c.counts()}" for c in self.non_finite]
        if self.dropped_rows:
            notes.append(
                f"{self.dropped_rows} of {self.current_rows} rows had a null or infinite "
                "feature value and were left out of the distribution test"
            )
        if self.skipped_files:
            notes.append(
                f"{len(self.skipped_files)} unreadable prediction-log file(s) skipped: "
                + "; ".join(f.describe() for f in self.skipped_files)
            )
        return notes

    def summary_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "column": c.column,
                "method": c.method,
                "threshold": c.threshold,
                "score": round(c.score, 6),
                "drifted": c.drifted,
                "in_verdict": c.counted,
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


def count_non_finite(frame: pd.DataFrame, features: list[str]) -> list[NonFinite]:
    """Null, +inf and -inf counts of every feature column (numeric, checked before)."""
    values = frame[features].astype("float64")  # nullable ints: pd.NA becomes NaN
    nulls, pos, neg = values.isna().sum(), (values == np.inf).sum(), (values == -np.inf).sum()
    return [NonFinite(c, len(frame), int(nulls[c]), int(pos[c]), int(neg[c])) for c in features]


def column_problem(count: NonFinite, policy: DriftPolicy) -> str | None:
    name, rows = repr(count.column), count.rows
    if count.total == rows:
        if count.infinite == 0:
            return f"column {name} is entirely null"
        kind = "entirely infinite" if count.null == 0 else "without a finite value"
        return f"column {name} is {kind} ({count.counts()})"
    if count.infinite / rows > policy.max_infinite_share:
        return (
            f"column {name} has {count.infinite} infinite value(s), {count.infinite / rows:.1%} "
            f"({count.counts()}; limit {policy.max_infinite_share:.1%})"
        )
    if count.total / rows > policy.max_null_share:
        if count.infinite == 0:
            return (
                f"column {name} is {count.null / rows:.0%} null (limit {policy.max_null_share:.0%})"
            )
        return (
            f"column {name} is {count.total / rows:.0%} null or infinite "
            f"({count.counts()}; limit {policy.max_null_share:.0%})"
        )
    return None


def finite_rows(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """The rows whose features are all finite: what the distribution test may see."""
    finite = np.isfinite(frame[features].astype("float64")).all(axis=1)
    return cast(pd.DataFrame, frame[finite])  # a boolean mask selects rows: a frame


def quality_problems(current: pd.DataFrame, features: list[str], policy: DriftPolicy) -> list[str]:
    if len(current) == 0:
        return ["the window has no rows"]
    counts = count_non_finite(current, features)
    return counted_problems(
        len(current), counts, lambda: len(finite_rows(current, features)), policy
    )


def counted_problems(
    rows: int, counts: Sequence[NonFinite], kept: Callable[[], int], policy: DriftPolicy
) -> list[str]:
    """A window's data-quality problems from its counts: `rows`, each column's non-finite
    counts, and `kept`, the rows whose features are all finite (asked only when needed),
    so a window summarized while streamed is judged by the same rules as a frame."""
    if rows == 0:
        return ["the window has no rows"]
    problems: list[str] = []
    if rows < policy.min_rows:
        problems.append(f"the window has {rows} rows, fewer than {policy.min_rows}")
    problems += [p for p in (column_problem(c, policy) for c in counts) if p]
    if not problems:
        left = kept()
        if left < policy.min_rows:  # each column passes, but together they leave too few
            problems.append(
                f"{rows - left} of {rows} rows have a null or infinite feature "
                f"value; the {left} left are fewer than {policy.min_rows}"
            )
    return problems


def suite_fails(serving_suite: SuiteResult | None, policy: DriftPolicy) -> bool:
    """Whether the serving suite's result makes the window unusable (policy says fail)."""
    failed = serving_suite is not None and not serving_suite.success
    return failed and policy.serving_suite == "fail"


def no_rows_problem(skipped: Sequence[SkippedFile]) -> str:
    if not skipped:
        return "the window has no rows"
    return (
        f"the window has no rows: {len(skipped)} prediction-log file(s) in it could not be "
        "read: " + "; ".join(f.describe() for f in skipped)
    )


def sample_rows(frame: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= limit else frame.sample(n=limit, random_state=seed)


def _is_p_value(method: str) -> bool:
    # Evidently reports p-values for statistical tests (drift when small) and distances
    # for the others (drift when large); their display names say which.
    return "p_value" in method


def _column_drifted(method: str, score: float, threshold: float) -> bool:
    return score < threshold if _is_p_value(method) else score >= threshold


def _display_name(method: str, reference: pd.Series, current: pd.Series, text: bool) -> str:
    """`ks` -> `K-S p_value`: a method given by its short name, as Evidently displays it."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    kind = ColumnType.Text if text else ColumnType.Numerical
    try:
        return str(get_stattest(reference, current, kind, method).display_name)
    except Exception:
        return method  # already a display name (Evidently's default methods are reported so)


def detect_drift(
    reference: pd.DataFrame | None,
    current: pd.DataFrame,
    features: list[str],
    policy: DriftPolicy,
    html_path: Path | None = None,
    skipped_files: Sequence[SkippedFile] = (),
    serving_suite: SuiteResult | None = None,
    prediction_column: str | None = None,
) -> DriftResult:
    """Judge `current` against `reference`; `skipped_files` (the window's unreadable log
    files) are carried into the result, and name the files when the window is empty.
    `serving_suite` is the window's result against the model's serving suite: failed, it is
    a data-quality problem beside the others (policy serving_suite=fail) or a note (warn).
    `prediction_column` (a regressor's numeric predictions, in both frames) is judged as
    one more column beside the features."""
    if reference is None or len(reference) == 0:
        raise DriftInputError("the reference snapshot is empty; cannot judge drift")
    check_schema(reference, features)
    skipped = tuple(skipped_files)
    if len(current) == 0:  # an empty log has no columns either: report it as what it is
        return DriftResult(
            "data-quality-failure",
            0,
            len(reference),
            quality_problems=(no_rows_problem(skipped),),
            skipped_files=skipped,
            drift_share_needed=policy.drift_share,
        )
    check_schema(current, features)
    non_finite = tuple(c for c in count_non_finite(current, features) if c.total)
    problems = quality_problems(current, features, policy)
    if problems or suite_fails(serving_suite, policy):
        return DriftResult(
            "data-quality-failure",
            len(current),
            len(reference),
            quality_problems=tuple(problems),
            non_finite=non_finite,
            skipped_files=skipped,
            serving_suite=serving_suite,
            serving_suite_action=policy.serving_suite,
            drift_share_needed=policy.drift_share,
        )
    # Evidently drops non-finite values per column silently; here they are counted above
    # and left out by row, so every column's test sees the same rows.
    finite_current = finite_rows(current, features)
    finite_reference = finite_rows(reference, features)
    if len(finite_reference) == 0:
        raise DriftInputError("the reference snapshot has no row with every feature finite")
    judged = [*features, prediction_column] if prediction_column else features
    if prediction_column:
        check_schema(reference, judged)
        check_schema(current, judged)
    count, share, columns = run_evidently(
        finite_rows(finite_reference, judged),
        finite_rows(finite_current, judged),
        judged,
        policy,
        html_path,
    )
    verdict: Verdict = "drift" if share >= policy.drift_share else "no-drift"
    return DriftResult(
        verdict,
        len(current),
        len(reference),
        count,
        share,
        columns,
        non_finite=non_finite,
        dropped_rows=len(current) - len(finite_current),
        skipped_files=skipped,
        serving_suite=serving_suite,
        serving_suite_action=policy.serving_suite,
        drift_share_needed=policy.drift_share,
    )


def run_evidently(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: list[str],
    policy: DriftPolicy,
    html_path: Path | None,
    text_columns: Sequence[str] = (),
) -> tuple[int, float, tuple[ColumnDrift, ...]]:
    """Drifted-column count and share, and per-column results, on finite rows only.
    `text_columns` (strings) are judged by the text domain classifier
    (chassis.text_domain_classifier); the policy's global method is for numeric columns.

    One Evidently `ValueDrift` per column, not the DataDriftPreset: the preset's
    dataset-level metric also computes every column's correlation with every other (for
    its report only), which divides by zero on a constant column (digits has three) and
    printed numpy RuntimeWarnings, and its report carried every column's plots twice. The
    count is the columns whose own test detected drift, as the preset counts them. The
    HTML report shows at most REPORT_COLUMNS columns (`report_columns`)."""
    reference = sample_rows(reference[features], policy.max_rows, policy.seed)
    current = sample_rows(current[features], policy.max_rows, policy.seed + 1)
    methods: dict[str, str | None] = {c: policy.method for c in features}
    methods.update(policy.per_column_method)
    thresholds: dict[str, float | None] = {c: policy.threshold for c in features}
    thresholds.update(policy.per_column_threshold)
    if text_columns:
        from chassis import text_domain_classifier as text_test

        text_test.register()
        for column in text_columns:
            methods[column] = text_test.TEXT_DRIFT_METHOD
            if column not in policy.per_column_threshold:
                thresholds[column] = text_test.DEFAULT_TEXT_THRESHOLD

    def report(columns: Sequence[str]) -> Any:
        return _value_drift_report(
            reference, current, columns, methods, thresholds, features, text_columns
        )

    snapshot = report(features)
    columns: list[ColumnDrift] = []
    metrics = cast(list[dict[str, Any]], snapshot.dict()["metrics"])  # Evidently's JSON form
    for metric in metrics:
        config_ = metric["config"]
        if not str(config_.get("type", "")).endswith(":ValueDrift"):
            continue
        column = str(config_["column"])
        method = _display_name(
            str(config_["method"]), reference[column], current[column], column in text_columns
        )
        threshold, score = float(config_["threshold"]), float(metric["value"])
        drifted = _column_drifted(method, score, threshold)
        columns.append(ColumnDrift(column, method, threshold, score, drifted))
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        shown = report_columns(columns, text_columns)
        (snapshot if shown == features else report(shown)).save_html(str(html_path))
    count = sum(1 for c in columns if c.drifted)
    return count, count / len(columns) if columns else 0.0, tuple(columns)


# Evidently's HTML carries its ~3.5 MB script and ~30 KB of plots per column: all 64 of
# digits' columns made a 7.5 MB report. The per-column table in Prefect lists every column.
REPORT_COLUMNS = 12


def report_columns(columns: Sequence[ColumnDrift], always: Sequence[str] = ()) -> list[str]:
    """The columns the HTML report shows, in the judged order: `always` (a text column),
    then the drifted ones and then the others, each the furthest past (or nearest to) its
    threshold first, up to REPORT_COLUMNS."""
    ranked = sorted(columns, key=lambda c: (c.column not in always, not c.drifted, -c.strength))
    chosen = {c.column for c in ranked[: max(REPORT_COLUMNS, len(always))]}
    return [c.column for c in columns if c.column in chosen]


def _value_drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    methods: dict[str, str | None],
    thresholds: dict[str, float | None],
    features: Sequence[str],
    text_columns: Sequence[str],
) -> Any:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    report = Report(
        [ValueDrift(column=c, method=methods[c], threshold=thresholds[c]) for c in columns]
    )
    if not text_columns:
        return report.run(reference_data=reference, current_data=current)
    definition = DataDefinition(
        numerical_columns=[c for c in features if c not in text_columns],
        text_columns=list(text_columns),
    )
    return report.run(
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
        current_data=Dataset.from_pandas(current, data_definition=definition),
    )
