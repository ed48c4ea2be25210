"""What a person reads about a drift check: the verdict sentence (CLI, Prefect summary,
artifact descriptions), the Prefect drift summary's sections and rows, the `--drift`
scenarios the README demonstrates, and Great Expectations kept quiet during a check."""

import logging
from datetime import UTC, datetime

import numpy as np
import pytest

from chassis.drift import ColumnDrift, DriftResult, NonFinite
from chassis.drift_summary import drift_summary
from chassis.drift_verdict import needed_columns, verdict_sentence, window_text
from chassis.expectations import ExpectationResult, SuiteResult
from chassis.live_accuracy import VersionAccuracy
from chassis.traffic import apply_drift
from chassis_cli import rollout_commands
from chassis_cli.documents import DriftDocument

WINDOW = (datetime(2026, 12, 3, 5, 4, 55, tzinfo=UTC), datetime(2026, 12, 3, 5, 5, 30, tzinfo=UTC))
JS = "Jensen-Shannon distance"


def digits_like(drifted: int, verdict: str = "no-drift", **fields: object) -> DriftResult:
    """A judged window of 64 pixel columns, `drifted` of them drifted (no Evidently run)."""
    columns = tuple(
        ColumnDrift(f"pixel_{i // 8}_{i % 8}", JS, 0.1, 0.2 if i < drifted else 0.01, i < drifted)
        for i in range(64)
    )
    return DriftResult(
        verdict,  # type: ignore[arg-type]  # a Verdict literal, given as str by the tests
        current_rows=1000,
        reference_rows=1167,
        drifted_columns=drifted,
        drifted_share=drifted / 64,
        columns=columns,
        **fields,  # type: ignore[arg-type]
    )


def failed_suite(failures: int) -> SuiteResult:
    failing = tuple(
        ExpectationResult(
            "expect_column_values_to_be_between",
            f"pixel_0_{i}",
            False,
            "12 unexpected (1.2%)",
            "min_value=0, max_value=16",
        )
        for i in range(failures)
    )
    passing = ExpectationResult("expect_table_row_count_to_be_between", None, True, "1000", "")
    return SuiteResult("digits-mlp.serving", False, (*failing, passing))


def section(markdown: str, heading: str) -> str:
    """The lines under the heading `## heading...`, up to the next blank line."""
    start = markdown.index(f"## {heading}")
    body = markdown[start:].split("\n", 1)[1]
    return body.split("\n\n", 1)[0]


def test_the_verdict_says_the_share_that_drifted_and_the_share_needed():
    assert (
        verdict_sentence("no-drift", 25, 64, 0.5)
        == "no drift: 39% of columns drifted (25 of 64), 50% needed (32)"
    )
    assert (
        verdict_sentence("drift", 49, 64, 0.5)
        == "drift: 77% of columns drifted (49 of 64), 50% needed (32)"
    )
    assert verdict_sentence("data-quality-failure", 0, 0, 0.5).startswith("data-quality failure: ")
    assert "no-drift" not in digits_like(25).verdict_sentence()


@pytest.mark.parametrize("share", [0.05, 0.1, 0.3, 0.5, 0.7, 1.0])
def test_the_columns_needed_agree_with_the_verdicts_own_comparison(share):
    """A rounded count ("0.3 of 10 is 4") would contradict a verdict of drift at 3."""
    for judged in range(1, 101):
        needed = needed_columns(judged, share)
        assert needed / judged >= share
        assert needed == 0 or (needed - 1) / judged < share


def test_the_summary_leads_with_the_verdict_sentence_and_the_window():
    markdown = drift_summary("digits-mlp", 2, digits_like(25), "http://mlflow/#/r", WINDOW)
    assert markdown.startswith("# Drift check of digits-mlp v2\n\n")
    assert "**no drift: 39% of columns drifted (25 of 64), 50% needed (32)**" in markdown
    assert "| window | 2026-12-03 05:04:55 .. 05:05:30 UTC |" in markdown
    assert "| drifted columns | 25 of 64 (39%); 50% needed |" in markdown


def test_the_tests_row_names_each_test_once_not_every_column():
    markdown = drift_summary("digits-mlp", 2, digits_like(25), None, WINDOW)
    (row,) = [line for line in markdown.splitlines() if line.startswith("| tests |")]
    assert row == f"| tests | {JS}, threshold 0.1: 64 columns |"
    # A test of only a few columns names them.
    text = ColumnDrift("text", "Domain p_value", 0.01, 1e-9, True)
    tokens = ColumnDrift("text.tokens", JS, 0.1, 0.3, True, counted=False)
    few = DriftResult("drift", 200, 800, 1, 1.0, (text, tokens))
    assert few.methods() == "Domain p_value, threshold 0.01: text"


def test_a_suite_failed_under_warn_is_data_quality_not_a_non_finite_value():
    result = digits_like(
        49,
        "drift",
        serving_suite=failed_suite(2),
        serving_suite_action="warn",
        non_finite=(NonFinite("pixel_3_3", 1000, 0, 1, 0),),
    )
    markdown = drift_summary("digits-mlp", 2, result, "http://mlflow/#/r", WINDOW)
    quality = section(markdown, "Data quality")
    assert "none" not in quality
    assert (
        "- serving suite `digits-mlp.serving`: **FAILED**, 2 of 3 expectations "
        "(policy serving_suite=warn: recorded, drift judged anyway)"
    ) in quality
    assert (
        "  - expect_column_values_to_be_between(pixel_0_1) observed 12 unexpected (1.2%), "
        "expected min_value=0, max_value=16"
    ) in quality
    left_out = section(markdown, "Left out of the distribution test")
    assert "serving" not in left_out and "column 'pixel_3_3': 0 null, 1 +inf" in left_out


def test_a_suite_that_fails_the_window_says_drift_was_not_judged_and_counts_the_rest():
    result = DriftResult(
        "data-quality-failure",
        current_rows=1000,
        reference_rows=1167,
        serving_suite=failed_suite(8),
        serving_suite_action="fail",
    )
    markdown = drift_summary("digits-mlp", 2, result, None, WINDOW)
    quality = section(markdown, "Data quality")
    assert "8 of 9 expectations (a data-quality failure: drift not judged)" in quality
    assert quality.count("  - expect_column_values_to_be_between") == 5
    assert "  - and 3 more (the serving-suite artifact lists every one)" in quality
    assert "| drifted columns | not judged |" in markdown
    assert "**data-quality failure: the window is unusable, drift not judged**" in markdown


def test_a_clean_window_says_what_was_checked_instead_of_none():
    passed = SuiteResult("digits-mlp.serving", True, ())
    markdown = drift_summary("digits-mlp", 2, digits_like(0, serving_suite=passed), None, WINDOW)
    quality = section(markdown, "Data quality")
    assert quality.splitlines() == [
        "- rows, nulls and infinities: within the policy's limits",
        "- serving suite `digits-mlp.serving`: passed (0 expectations)",
    ]
    assert "- nothing left out" in section(markdown, "Left out of the distribution test")


def test_the_cli_prints_the_verdict_sentence_and_the_window(capsys):
    document = DriftDocument(
        model="digits-mlp",
        champion_version=2,
        verdict="no-drift",
        drifted_share=25 / 64,
        drifted_columns=[f"pixel_{i}" for i in range(25)],
        judged_columns=64,
        drift_share_needed=0.5,
        window_start="2026-12-03T04:05:14.120+00:00",
        window_end="2026-12-03T05:05:14.120+00:00",
        served_rows=9196,
        non_finite_rows_dropped=0,
        skipped_files=[],
        serving_suite="passed (digits-mlp.serving, 194 expectations)",
        serving_suite_failures=[],
        report_uri=None,
        report_url=None,
        event_emitted=False,
        live_accuracy=[
            VersionAccuracy(
                version=2,
                rows=400,
                correct=320,
                accuracy=0.8,
                upper_bound=0.8308,
                gate=0.95,
                mean_absolute_error=None,
                verdict="below-gate",
            )
        ],
        accuracy_event_emitted=True,
    )
    rollout_commands.print_drift(document)
    first, drifted, live, emitted, *_ = capsys.readouterr().out.splitlines()
    assert first == (
        "digits-mlp v2: no drift: 39% of columns drifted (25 of 64), 50% needed (32); "
        "9196 served rows, 2026-12-03 04:05:14 .. 05:05:14 UTC"
    )
    assert drifted.startswith("drifted: pixel_0, pixel_1") and drifted.endswith(" and 15 more")
    assert live == (
        "live accuracy: v2: live accuracy 80.0% on 400 feedback rows "
        "(upper bound 83.1%, gate 95.0%): below-gate"
    )
    assert emitted == "accuracy below its gate: retraining event emitted"


def test_a_window_over_midnight_shows_both_dates():
    start = datetime(2026, 12, 2, 23, 30, tzinfo=UTC)
    assert window_text(start, WINDOW[0]) == "2026-12-02 23:30:00 .. 2026-12-03 05:04:55 UTC"


def test_missing_values_reach_every_feature_as_zeros_the_gateway_accepts():
    """On digits, zeroing half of the features left the image's blank border as the half
    that could not move: 39% of columns drifted on pure `missing` traffic, under the 50%
    the verdict needs. A third of every feature's values now arrive as 0."""
    rows = np.full((3000, 64), 8.0)
    drifted = apply_drift(rows, "missing")
    zeroed = (drifted == 0).mean(axis=0)
    assert np.all((zeroed > 0.28) & (zeroed < 0.39))  # every column, about a third
    assert np.isfinite(drifted).all()  # NaN would be refused by the gateway, never logged


def test_great_expectations_says_nothing_below_a_warning_during_a_check():
    """The module that announces "ephemeral docs site" folders sets its own logger to INFO
    on import, so quieting its parent alone left it talking."""
    from chassis import quiet

    chatty = logging.getLogger("great_expectations.data_context.types.base")
    chatty.setLevel(logging.INFO)  # what that module does to itself on import
    quiet.quiet_great_expectations()
    assert not chatty.isEnabledFor(logging.INFO)
    assert chatty.isEnabledFor(logging.WARNING)
