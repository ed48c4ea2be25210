"""Scheduled drift checks on served traffic; drift emits the event that retrains."""

import shutil
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from prefect import flow
from pydantic import BaseModel, Field

from chassis.drift import SHOWN_SUITE_FAILURES, DriftPolicy, DriftResult, SkippedFile
from chassis.errors import ChassisError, DataQualityFailure
from chassis.registry import Registry
from chassis.settings import ChassisSettings
from chassis.tracking import Tracking
from flows.promotion import ModelParameter
from tasks.monitoring import (
    check_serving_suite,
    judge_drift,
    load_reference,
    load_window,
    publish_drift,
    signal_drift,
)


class DriftOutcome(BaseModel):
    model_name: str
    champion_version: int
    verdict: str
    drifted_share: float
    drifted_columns: list[str]
    served_rows: int
    # Served rows left out of the distribution test for a null or infinite feature value.
    non_finite_rows_dropped: int
    # Unreadable prediction-log files of the window, as "path (reason)"; the check ran
    # on the others.
    skipped_files: list[str]
    # The window against the spec's serving suite: "passed (...)", "FAILED (...): ...", or
    # "not run"; with its failing expectations (at most a few, as "expectation(column) ...").
    serving_suite: str
    serving_suite_failures: list[str]
    report_uri: str | None
    event_emitted: bool


def skipped_unnamed(result: DriftResult) -> list[SkippedFile]:
    """Skipped files the quality problems do not name already (an empty window names all)."""
    named = " ".join(result.quality_problems)
    return [f for f in result.skipped_files if f.path not in named]


@flow(name="drift_check", log_prints=True)
def drift_check(
    model_name: ModelParameter,
    window_minutes: Annotated[
        int, Field(ge=1, le=7 * 24 * 60, description="Served traffic of this many minutes.")
    ] = 60,
    policy: Annotated[
        DriftPolicy | None,
        Field(description="Thresholds of the check and its data quality (defaults when empty)."),
    ] = None,
    emit: Annotated[bool, Field(description="Emit the drift event (retraining trigger).")] = True,
) -> DriftOutcome:
    """Compare the champion's served traffic of the last `window_minutes` with the reference
    snapshot of its training data. Data quality first: an empty window, an all-null column or
    a null or infinity spike (or a column with no finite value) fails this run as a
    data-quality failure; rows with a null or infinite feature are counted, then left out of
    the distribution test. Unreadable log files are skipped and named in the outcome and
    the artifact (none readable: a data-quality failure naming them). The window is validated
    against the serving suite of the champion's spec (recorded in the outcome and an
    artifact); a failure is a data-quality failure, or with policy serving_suite=warn a note.
    On drift, emit `chassis.model.drift-detected` for the model; a deployment trigger starts
    retraining."""
    settings = ChassisSettings()
    registry = Registry.from_settings(settings)
    drift_policy = policy or DriftPolicy()
    champion = registry.version_for_alias(model_name, "champion")
    if champion is None:
        raise ChassisError(f"{model_name} has no champion; nothing is served to check")
    end = datetime.now(UTC)
    start = end - timedelta(minutes=window_minutes)
    workdir = settings.home / "work" / uuid.uuid4().hex
    try:
        reference, features = load_reference(registry, model_name, champion, workdir)
        window = load_window(settings, model_name, start, end)
        suite = check_serving_suite(
            registry, settings, model_name, champion, window, features, drift_policy
        )
        html = workdir / f"drift-{model_name}-{end:%Y%m%dT%H%M%S}.html"
        result = judge_drift(reference, window, features, drift_policy, html, suite)
        report_uri = None
        if html.exists():
            report_uri = Tracking.from_settings(settings).log_monitoring_run(
                model_name,
                metrics={
                    "drifted_share": result.drifted_share,
                    "drifted_columns": float(result.drifted_columns),
                    "served_rows": float(result.current_rows),
                    "non_finite_rows_dropped": float(result.dropped_rows),
                    "skipped_files": float(len(result.skipped_files)),
                },
                params={
                    "champion_version": champion,
                    "window_minutes": window_minutes,
                    "drift_share": drift_policy.drift_share,
                    "serving_suite": result.serving_suite_status(),
                    "verdict": result.verdict,
                },
                html=html,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    publish_drift(model_name, champion, result, report_uri)
    if result.verdict == "data-quality-failure":
        raise DataQualityFailure(
            f"{model_name}: served data unusable for a drift check: "
            + "; ".join(result.quality_problems)
            + "".join(f" (also skipped: {f.describe()})" for f in skipped_unnamed(result))
        )
    emitted = False
    if result.verdict == "drift" and emit:
        signal_drift(model_name, champion, result, {"window_minutes": window_minutes})
        emitted = True
    return DriftOutcome(
        model_name=model_name,
        champion_version=champion,
        verdict=result.verdict,
        drifted_share=result.drifted_share,
        drifted_columns=[c.column for c in result.columns if c.drifted],
        served_rows=result.current_rows,
        non_finite_rows_dropped=result.dropped_rows,
        skipped_files=[f.describe() for f in result.skipped_files],
        serving_suite=result.serving_suite_status(),
        serving_suite_failures=suite_failures(result),
        report_uri=report_uri,
        event_emitted=emitted,
    )


def suite_failures(result: DriftResult) -> list[str]:
    if result.serving_suite is None:
        return []
    return [r.describe() for r in result.serving_suite.failures[:SHOWN_SUITE_FAILURES]]
