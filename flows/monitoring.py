"""Scheduled drift checks on served traffic; drift emits the event that retrains."""

import shutil
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from prefect import flow
from pydantic import BaseModel, Field

from chassis import registry, tracking
from chassis.drift import DriftConfig, DriftResult, SkippedFile
from chassis.errors import ChassisError
from chassis.settings import ChassisSettings
from flows.promotion import ModelParameter
from tasks.monitoring import judge_drift, load_reference, load_window, publish_drift, signal_drift


class DataQualityFailure(ChassisError):  # noqa: N818 (reads as what happened)
    """The served window is unusable; drift cannot be judged (and is never assumed absent)."""


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
    report_uri: str | None
    event_emitted: bool


def skipped_unnamed(result: DriftResult) -> list[SkippedFile]:
    """Skipped files the quality problems do not name already (an empty window names all)."""
    named = " ".join(result.quality_problems)
    return [f for f in result.skipped_files if f.path not in named]


@flow(name="drift_check", log_prints=True)
def drift_check(
    model_name: ModelParameter,
    window_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 60,
    drift_share: Annotated[
        float, Field(gt=0, le=1, description="Dataset drift when this share of columns drift.")
    ] = 0.5,
    method: Annotated[
        str | None, Field(description="Evidently stat test for every column (default: its own).")
    ] = None,
    threshold: Annotated[float | None, Field(gt=0)] = None,
    per_column_method: dict[str, str] | None = None,
    per_column_threshold: dict[str, float] | None = None,
    max_null_share: Annotated[float, Field(ge=0, lt=1)] = 0.2,
    max_infinite_share: Annotated[
        float,
        Field(ge=0, lt=1, description="Share of +/-inf values a column may hold (default none)."),
    ] = 0.0,
    min_rows: Annotated[int, Field(ge=1)] = 30,
    emit: Annotated[bool, Field(description="Emit the drift event (retraining trigger).")] = True,
) -> DriftOutcome:
    """Compare the champion's served traffic of the last `window_minutes` with the reference
    snapshot of its training data. Data quality first: an empty window, an all-null column or
    a null or infinity spike (or a column with no finite value) fails this run as a
    data-quality failure; rows with a null or infinite feature are counted, then left out of
    the distribution test. Unreadable log files are skipped and named in the outcome and
    the artifact (none readable: a data-quality failure naming them). On drift, emit
    `chassis.model.drift-detected` for the model; a deployment trigger starts retraining."""
    settings = ChassisSettings()
    tracking.connect(settings)
    config = DriftConfig(
        drift_share=drift_share,
        method=method,
        threshold=threshold,
        per_column_method=per_column_method or {},
        per_column_threshold=per_column_threshold or {},
        max_null_share=max_null_share,
        max_infinite_share=max_infinite_share,
        min_rows=min_rows,
    )
    champion = registry.version_for_alias(model_name, "champion")
    if champion is None:
        raise ChassisError(f"{model_name} has no champion; nothing is served to check")
    end = datetime.now(UTC)
    start = end - timedelta(minutes=window_minutes)
    workdir = settings.home / "work" / uuid.uuid4().hex
    try:
        reference, features = load_reference(model_name, champion, workdir)
        window = load_window(settings, model_name, start, end)
        html = workdir / f"drift-{model_name}-{end:%Y%m%dT%H%M%S}.html"
        result = judge_drift(reference, window, features, config, html)
        report_uri = None
        if html.exists():
            report_uri = tracking.log_monitoring_run(
                model_name,
                settings,
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
                    "drift_share": drift_share,
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
        report_uri=report_uri,
        event_emitted=emitted,
    )
