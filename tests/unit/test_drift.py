import numpy as np
import pandas as pd
import pytest

from chassis.drift import (
    DriftPolicy,
    DriftResult,
    SkippedFile,
    detect_drift,
    drift_policy_from,
)
from chassis.errors import DriftInputError
from chassis.expectations import ExpectationResult, SuiteResult

FEATURES = ["a", "b", "c", "d"]


def frame(rows=600, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(rows, len(FEATURES)))
    data[:, :2] += shift  # half of the columns move
    return pd.DataFrame(data, columns=FEATURES)


def test_shifted_traffic_is_drift_and_same_distribution_is_not(tmp_path):
    reference = frame(seed=0)
    drifted = detect_drift(
        reference, frame(shift=3.0, seed=1), FEATURES, DriftPolicy(), tmp_path / "r.html"
    )
    assert drifted.verdict == "drift"
    assert drifted.drifted_columns == 2 and drifted.drifted_share == 0.5
    assert {c.column for c in drifted.columns if c.drifted} == {"a", "b"}
    assert (tmp_path / "r.html").stat().st_size > 10_000
    calm = detect_drift(reference, frame(seed=2), FEATURES, DriftPolicy())
    assert calm.verdict == "no-drift" and calm.drifted_columns == 0


def test_per_column_method_and_threshold_are_honoured():
    config = DriftPolicy(per_column_method={"a": "ks"}, per_column_threshold={"a": 0.05})
    result = detect_drift(frame(seed=0), frame(shift=3.0, seed=1), FEATURES, config)
    column_a = next(c for c in result.columns if c.column == "a")
    assert "K-S" in column_a.method and column_a.threshold == 0.05 and column_a.drifted


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda f: f.iloc[0:0], "no rows"),
        (lambda f: f.assign(c=np.nan), "'c' is entirely null"),
        (lambda f: f.assign(d=f["d"].where(f.index % 2 == 0)), "'d' is 50% null"),
        (lambda f: f.head(5), "fewer than 30"),
    ],
    ids=["empty", "all-null", "null-spike", "too-few"],
)
def test_data_quality_comes_first_and_is_never_no_drift(mutate, problem):
    result = detect_drift(frame(seed=0), mutate(frame(seed=1)), FEATURES, DriftPolicy())
    assert result.verdict == "data-quality-failure"
    assert any(problem in p for p in result.quality_problems)


def test_schema_mismatch_and_missing_reference_are_errors():
    with pytest.raises(DriftInputError, match="missing column"):
        detect_drift(frame(), frame().drop(columns=["b"]), FEATURES, DriftPolicy())
    with pytest.raises(DriftInputError, match="non-numeric"):
        detect_drift(frame(), frame().assign(a="x"), FEATURES, DriftPolicy())
    with pytest.raises(DriftInputError, match="reference snapshot is empty"):
        detect_drift(frame().iloc[0:0], frame(), FEATURES, DriftPolicy())
    with pytest.raises(DriftInputError, match="drift_share: Input should be greater than 0"):
        drift_policy_from({"drift_share": 0})


def with_values(f, column, rows, value):
    f = f.copy()
    f.loc[f.index[rows], column] = value
    return f


def test_infinities_beyond_the_allowed_share_fail_quality_with_column_and_counts():
    # Same distribution: Evidently alone drops the infinities and calls this window calm.
    window = with_values(with_values(frame(seed=1), "a", slice(0, 30), np.inf), "a", [30], -np.inf)
    result = detect_drift(frame(seed=0), window, FEATURES, DriftPolicy())
    assert result.verdict == "data-quality-failure"
    assert result.quality_problems == (
        "column 'a' has 31 infinite value(s), 5.2% (0 null, 30 +inf, 1 -inf of 600 rows; "
        "limit 0.0%)",
    )
    assert [(c.column, c.pos_inf, c.neg_inf) for c in result.non_finite] == [("a", 30, 1)]


def test_an_all_infinite_column_is_reported_as_such_not_a_value_error():
    window = frame(seed=1).assign(b=np.where(np.arange(600) % 2, np.inf, -np.inf))
    config = DriftPolicy(max_infinite_share=0.5)  # even where infinities are tolerated
    result = detect_drift(frame(seed=0), window, FEATURES, config)
    assert result.verdict == "data-quality-failure"
    assert result.quality_problems == (
        "column 'b' is entirely infinite (0 null, 300 +inf, 300 -inf of 600 rows)",
    )


def test_a_column_of_nulls_and_infinities_has_no_finite_value():
    window = frame(seed=1).assign(c=np.where(np.arange(600) % 3, np.nan, np.inf))
    result = detect_drift(frame(seed=0), window, FEATURES, DriftPolicy())
    assert result.verdict == "data-quality-failure"
    assert result.quality_problems == (
        "column 'c' is without a finite value (400 null, 200 +inf, 0 -inf of 600 rows)",
    )


def test_nulls_and_infinities_together_count_against_the_null_limit():
    window = with_values(frame(seed=1), "d", slice(0, 90), np.nan)  # 15% null
    window = with_values(window, "d", slice(90, 150), -np.inf)  # and 10% -inf
    result = detect_drift(frame(seed=0), window, FEATURES, DriftPolicy(max_infinite_share=0.2))
    assert result.verdict == "data-quality-failure"
    assert result.quality_problems == (
        "column 'd' is 25% null or infinite (90 null, 0 +inf, 60 -inf of 600 rows; limit 20%)",
    )


def test_tolerated_infinities_are_counted_and_their_rows_left_out_of_the_test(tmp_path):
    calm = with_values(frame(seed=1), "a", slice(0, 200), np.inf)
    calm = with_values(calm, "b", slice(100, 250), -np.inf)  # rows 100..199 have both
    config = DriftPolicy(max_infinite_share=0.4, max_null_share=0.4)
    result = detect_drift(frame(seed=0), calm, FEATURES, config, tmp_path / "r.html")
    # Handed to Evidently, these infinities counted columns 'a' and 'b' as drifted in its
    # dataset share while its own per-column tests found no drift: a false "drift".
    assert result.verdict == "no-drift" and result.drifted_columns == 0
    assert not any(c.drifted for c in result.columns)
    assert result.dropped_rows == 250 and result.current_rows == 600
    assert [(c.column, c.pos_inf, c.neg_inf) for c in result.non_finite] == [
        ("a", 200, 0),
        ("b", 0, 150),
    ]
    assert "250 of 600 rows had a null or infinite feature value" in " ".join(result.notes())
    shifted = with_values(frame(shift=3.0, seed=1), "a", slice(0, 12), np.inf)
    drifted = detect_drift(frame(seed=0), shifted, FEATURES, config)
    assert drifted.verdict == "drift" and drifted.dropped_rows == 12
    assert {c.column for c in drifted.columns if c.drifted} == {"a", "b"}


def test_too_few_rows_left_once_rows_with_non_finite_values_are_out():
    window = frame(rows=40, seed=1)
    for n, column in enumerate(FEATURES):  # 10% null each, in different rows
        window = with_values(window, column, slice(4 * n, 4 * n + 4), np.nan)
    result = detect_drift(frame(seed=0), window, FEATURES, DriftPolicy())
    assert result.verdict == "data-quality-failure"
    assert result.quality_problems == (
        "16 of 40 rows have a null or infinite feature value; the 24 left are fewer than 30",
    )


def test_a_window_whose_files_were_all_unreadable_names_them():
    skipped = [SkippedFile("m/date=2026-12-02/a.parquet", "ArrowInvalid: magic bytes")]
    result = detect_drift(frame(seed=0), pd.DataFrame(), FEATURES, DriftPolicy(), None, skipped)
    assert result.verdict == "data-quality-failure"
    assert result.quality_problems == (
        "the window has no rows: 1 prediction-log file(s) in it could not be read: "
        "m/date=2026-12-02/a.parquet (ArrowInvalid: magic bytes)",
    )
    calm = detect_drift(frame(seed=0), frame(seed=1), FEATURES, DriftPolicy(), None, skipped)
    assert calm.verdict == "no-drift" and calm.skipped_files == tuple(skipped)
    assert "1 unreadable prediction-log file(s) skipped: m/date=2026-12-02/a.parquet" in (
        " ".join(calm.notes())
    )


def suite_result(success: bool) -> SuiteResult:
    """What chassis.expectations returns for a window against a serving suite."""
    rows = ExpectationResult("expect_table_row_count_to_be_between", None, True, "600", "")
    values = ExpectationResult(
        "expect_column_values_to_be_between",
        "a",
        success,
        "0 unexpected" if success else "540 unexpected (90%)",
        "min_value=-5, max_value=5, mostly=0.99",
    )
    return SuiteResult("blobs.serving", success, (rows, values))


def test_a_window_that_breaks_the_serving_suite_is_a_data_quality_failure_not_drift():
    # The same window would be judged "drift"; the suite decides first.
    shifted = frame(shift=3.0, seed=1)
    result = detect_drift(
        frame(seed=0), shifted, FEATURES, DriftPolicy(), None, (), suite_result(False)
    )
    assert result.verdict == "data-quality-failure"
    assert result.columns == ()  # drift was not judged
    assert result.quality_problems == ()  # rows, nulls and infinities were fine
    problem = result.unusable_reason() or ""
    assert problem == result.suite_problem()
    assert "failed suite 'blobs.serving' (1 of 2 expectations)" in problem
    assert "expect_column_values_to_be_between(a) observed 540 unexpected (90%)" in problem
    assert result.serving_suite_status().startswith("FAILED (blobs.serving, 1 of 2")


def test_with_policy_warn_a_broken_suite_is_a_note_and_drift_is_still_judged():
    shifted = frame(shift=3.0, seed=1)
    warn = DriftPolicy(serving_suite="warn")
    result = detect_drift(frame(seed=0), shifted, FEATURES, warn, None, (), suite_result(False))
    assert result.verdict == "drift"
    assert result.serving_suite_status().endswith(": warning")
    assert result.suite_problem() is None and result.unusable_reason() is None
    # A failed suite is data quality, never a note beside the non-finite values.
    assert not any("blobs.serving" in n for n in result.notes())


def test_a_passing_suite_is_recorded_and_changes_no_verdict():
    calm = detect_drift(
        frame(seed=0), frame(seed=2), FEATURES, DriftPolicy(), None, (), suite_result(True)
    )
    assert calm.verdict == "no-drift"
    assert calm.serving_suite_status() == "passed (blobs.serving, 2 expectations)"
    unvalidated = detect_drift(frame(seed=0), frame(seed=2), FEATURES, DriftPolicy())
    assert unvalidated.serving_suite_status() == "not run"


def test_an_unusable_window_names_its_problems_and_only_the_skipped_files_not_named_yet() -> None:
    named = SkippedFile("m/date=2026-12-02/a.parquet", "ArrowInvalid: magic bytes")
    other = SkippedFile("m/date=2026-12-02/b.parquet", "OSError: truncated")
    result = DriftResult(
        verdict="data-quality-failure",
        current_rows=0,
        reference_rows=10,
        quality_problems=(f"no readable rows; skipped {named.path}",),
        skipped_files=(named, other),
    )

    reason = result.unusable_reason()

    assert reason is not None
    assert reason.startswith("no readable rows; skipped m/date=2026-12-02/a.parquet")
    assert reason.count("a.parquet") == 1
    assert reason.endswith(f"(also skipped: {other.describe()})")


def test_a_judged_window_is_not_unusable_and_logs_its_figures() -> None:
    result = DriftResult(
        verdict="drift",
        current_rows=200,
        reference_rows=100,
        drifted_columns=2,
        drifted_share=0.5,
        dropped_rows=3,
    )

    assert result.unusable_reason() is None
    assert result.suite_failures() == []
    assert result.monitoring_metrics() == {
        "drifted_share": 0.5,
        "drifted_columns": 2.0,
        "served_rows": 200.0,
        "non_finite_rows_dropped": 3.0,
        "skipped_files": 0.0,
    }


def with_predictions(data: pd.DataFrame, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """A regressor's frame: its predicted value beside the features (float64)."""
    rng = np.random.default_rng([seed, 7])
    return data.assign(prediction=150.0 + 40.0 * rng.normal(size=len(data)) + shift)


def test_a_regressors_predictions_that_move_are_drift_though_no_feature_does():
    reference = with_predictions(frame(seed=0))
    current = with_predictions(frame(seed=1), shift=120.0, seed=1)
    result = detect_drift(
        reference, current, FEATURES, DriftPolicy(drift_share=0.2), None, (), None, "prediction"
    )
    assert result.verdict == "drift"
    assert {c.column for c in result.columns if c.drifted} == {"prediction"}
    # Without the prediction column judged, the same window is calm.
    assert detect_drift(reference, current, FEATURES, DriftPolicy(drift_share=0.2)).verdict == (
        "no-drift"
    )


def test_a_regressors_steady_predictions_are_no_drift():
    result = detect_drift(
        with_predictions(frame(seed=0)),
        with_predictions(frame(seed=1), seed=1),
        FEATURES,
        DriftPolicy(),
        prediction_column="prediction",
    )
    assert result.verdict == "no-drift"
    assert "prediction" in {c.column for c in result.columns}


def test_a_non_numeric_prediction_column_is_refused_naming_it():
    current = frame(seed=1).assign(prediction="high")
    with pytest.raises(DriftInputError, match=r"non-numeric column\(s\) \['prediction'\]"):
        detect_drift(
            with_predictions(frame(seed=0)),
            current,
            FEATURES,
            DriftPolicy(),
            prediction_column="prediction",
        )


def test_a_constant_column_is_judged_without_numpy_warnings(tmp_path):
    """A column that never changes (digits has three blank pixels) made Evidently's
    dataset-level correlation matrix divide by zero: 8 RuntimeWarnings a check."""
    import warnings

    reference, current = frame(seed=0).assign(blank=0.0), frame(seed=1).assign(blank=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = detect_drift(
            reference, current, [*FEATURES, "blank"], DriftPolicy(), tmp_path / "r.html"
        )
    blank = next(c for c in result.columns if c.column == "blank")
    assert result.verdict == "no-drift" and not blank.drifted


def test_the_report_shows_the_drifted_columns_first_and_at_most_a_few():
    from chassis.drift import REPORT_COLUMNS, ColumnDrift, report_columns

    p_value, distance = "K-S p_value", "Wasserstein distance (normed)"
    columns = [ColumnDrift(f"c{i}", distance, 0.1, 0.01 * i, False) for i in range(30)]
    columns[3] = ColumnDrift("c3", p_value, 0.05, 0.001, True)
    columns[7] = ColumnDrift("c7", distance, 0.1, 0.9, True)
    shown = report_columns(columns)
    assert len(shown) == REPORT_COLUMNS
    assert {"c3", "c7"} <= set(shown)
    # Then the others nearest their threshold: the largest distances.
    assert set(shown) - {"c3", "c7"} == {f"c{i}" for i in range(29, 29 - REPORT_COLUMNS + 2, -1)}
    assert shown == sorted(shown, key=lambda name: int(name[1:]))  # in the judged order
    assert report_columns(columns[:5]) == [c.column for c in columns[:5]]
