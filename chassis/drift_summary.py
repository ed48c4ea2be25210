"""The drift check's summary as Prefect shows it (the `drift-summary-<model>` artifact).

Built here, apart from the task that publishes it, so what a reader sees is tested without
Prefect. Each finding has one place: the verdict sentence at the top; the serving suite's
result (passed, or which expectations failed and what the policy made of it) under "Data
quality" with the window's other problems; values and files the distribution test did not
see under their own heading. A failed suite under "warn" had been filed with the non-finite
values while "Data quality" said "none", and the tests row listed all 64 columns.
"""

from datetime import datetime

from chassis import markdown
from chassis.drift import SHOWN_SUITE_FAILURES, DriftResult
from chassis.drift_verdict import window_text
from chassis.markdown import PlotLinks


def plot_section(model: str, plot: PlotLinks | None) -> str:
    """This check and the earlier ones of the model as a picture (none when not written)."""
    if plot is None:
        return ""
    return f"## Over time\n{plot.markdown(f'Drift of {model} over time')}\n\n"


def suite_lines(result: DriftResult) -> list[str]:
    """The serving suite's result as bullets: its name, its verdict, and each failing
    expectation (a few; the `serving-suite-<model>` artifact lists them all)."""
    suite = result.serving_suite
    if suite is None:
        return ["- serving suite: not run"]
    name = markdown.code(suite.suite_name)
    if suite.success:
        return [f"- serving suite {name}: passed ({len(suite.results)} expectations)"]
    effect = (
        "a data-quality failure: drift not judged"
        if result.serving_suite_action == "fail"
        else "policy serving_suite=warn: recorded, drift judged anyway"
    )
    lines = [
        f"- serving suite {name}: **FAILED**, {len(suite.failures)} of {len(suite.results)} "
        f"expectations ({effect})"
    ]
    lines += [f"  - {markdown.cell(r.describe())}" for r in suite.failures[:SHOWN_SUITE_FAILURES]]
    more = len(suite.failures) - SHOWN_SUITE_FAILURES
    if more > 0:
        lines.append(f"  - and {more} more (the serving-suite artifact lists every one)")
    return lines


def drift_summary(
    model: str,
    version: int,
    result: DriftResult,
    report_url: str | None,
    window: tuple[datetime, datetime],
    plot: PlotLinks | None = None,
) -> str:
    """The markdown of the drift summary; `report_url` is the Evidently report's page in
    the MLflow UI (None when data quality stopped the check before the report); `plot` the
    drift-over-time picture (None when none was written)."""
    problems = [f"- {markdown.cell(p)}" for p in result.quality_problems] or [
        "- rows, nulls and infinities: within the policy's limits"
    ]
    quality = "\n".join([*problems, *suite_lines(result)])
    notes = "\n".join(f"- {markdown.cell(n)}" for n in result.notes()) or "- nothing left out"
    moved = "".join(f"- {markdown.cell(e)}\n" for e in result.explanations)
    moved = f"## What moved\n{moved}\n" if moved else ""
    link = (
        f"{markdown.link('Evidently report', report_url)} (in MLflow, the drift check's run)"
        if report_url
        else "no report (data quality first)"
    )
    drifted = (
        f"{result.drifted_columns} of {result.judged_columns} ({result.drifted_share:.0%}); "
        f"{result.drift_share_needed:.0%} needed"
        if result.columns
        else "not judged"
    )
    figures = markdown.table(
        ["", ""],
        [
            ("window", window_text(*window)),
            ("served rows", result.current_rows),
            ("reference rows", result.reference_rows),
            ("drifted columns", drifted),
            ("tests", result.methods() or "none run"),
            ("serving suite", result.serving_suite_status()),
        ],
    )
    return (
        f"# Drift check of {markdown.cell(model)} v{version}\n\n"
        f"**{markdown.cell(result.verdict_sentence())}**\n\n"
        f"{figures}\n\n"
        f"{plot_section(model, plot)}"
        f"{moved}"
        f"## Data quality\n{quality}\n\n"
        f"## Left out of the distribution test (non-finite values, unreadable files)\n{notes}\n\n"
        f"{link}\n"
    )
