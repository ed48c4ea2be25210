"""Scheduled drift checks on served traffic; drift emits the event that retrains."""

import math
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from prefect import flow
from pydantic import BaseModel, Field

from chassis.drift import DriftPolicy, DriftResult
from chassis.drift_policy import window_since
from chassis.errors import ChassisError, DataQualityFailure, DriftInputError
from chassis.live_accuracy import VersionAccuracy
from chassis.markdown import PlotLinks
from chassis.registry import Registry
from chassis.settings import ChassisSettings
from chassis.tracking import StoredArtifact, Tracking
from flows.parameters import ModelParameter
from flows.run_form import described
from tasks.monitoring import (
    check_serving_suite,
    judge_accuracy,
    judge_drift,
    judge_streamed_drift,
    load_reference,
    load_text_encoder,
    load_window,
    log_drift_report,
    plot_drift,
    publish_drift,
    push_drift_metrics,
    signal_accuracy,
    signal_drift,
    stream_in_parts,
    streamed_columns,
)


class DriftOutcome(BaseModel):
    model_name: str
    champion_version: int
    verdict: str
    drifted_share: float
    drifted_columns: list[str]
    # The columns counted in the verdict, and the share of them that makes it drift.
    judged_columns: int
    drift_share_needed: float
    # The window judged, [start, end), ISO 8601 in UTC.
    window_start: str
    window_end: str
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
    # Evidently's report in the artifact store, and its page in the MLflow UI.
    report_uri: str | None
    event_emitted: bool
    report_url: str | None = None
    # Each version's live accuracy from the feedback received in the window (a regressor's
    # mean absolute error), and whether the champion's emitted the accuracy event.
    live_accuracy: list[VersionAccuracy] = Field(default_factory=list[VersionAccuracy])
    accuracy_event_emitted: bool = False
    # Whether the result was pushed to the Pushgateway (CHASSIS_PUSHGATEWAY_URL).
    metrics_pushed: bool = False
    # The drift-over-time plot in the artifact store, and its page in the MLflow UI (None
    # when none was written).
    plot_uri: str | None = None
    plot_url: str | None = None

    @classmethod
    def of(
        cls,
        model: str,
        champion: int,
        result: DriftResult,
        window: tuple[datetime, datetime],
        report: StoredArtifact | None,
        report_url: str | None,
        emitted: bool,
        accuracy: tuple[list[VersionAccuracy], bool] = ([], False),
        plot: StoredArtifact | None = None,
        plot_url: str | None = None,
        pushed: bool = False,
    ) -> "DriftOutcome":
        return cls(
            model_name=model,
            champion_version=champion,
            verdict=result.verdict,
            drifted_share=result.drifted_share,
            drifted_columns=result.drifted_column_names(),
            judged_columns=result.judged_columns,
            drift_share_needed=result.drift_share_needed,
            window_start=window[0].isoformat(timespec="milliseconds"),
            window_end=window[1].isoformat(timespec="milliseconds"),
            served_rows=result.current_rows,
            non_finite_rows_dropped=result.dropped_rows,
            skipped_files=[f.describe() for f in result.skipped_files],
            serving_suite=result.serving_suite_status(),
            serving_suite_failures=result.suite_failures(),
            report_uri=report.uri if report else None,
            report_url=report_url,
            event_emitted=emitted,
            live_accuracy=accuracy[0],
            accuracy_event_emitted=accuracy[1],
            plot_uri=plot.uri if plot else None,
            plot_url=plot_url,
            metrics_pushed=pushed,
        )


@described
@flow(name="drift_check", flow_run_name="drift check {model_name}", log_prints=True)
def drift_check(
    model_name: ModelParameter,
    window_minutes: Annotated[
        int, Field(ge=1, le=7 * 24 * 60, description="Served traffic of this many minutes.")
    ] = 60,
    since: Annotated[
        datetime | None,
        Field(
            description="Start of the window (with a time zone); when set, the window is "
            "from this time to now and window_minutes is not used. `chassis traffic --drift` "
            "prints the time its traffic started."
        ),
    ] = None,
    policy: Annotated[
        DriftPolicy | None,
        Field(description="Thresholds of the check and its data quality (defaults when empty)."),
    ] = None,
    emit: Annotated[bool, Field(description="Emit the drift event (retraining trigger).")] = True,
) -> DriftOutcome:
    """Compare the champion's served traffic of the last `window_minutes` (or since `since`)
    with the reference snapshot of its training data. Data quality first: an empty window,
    an all-null column or a null or infinity spike (or a column with no finite value) fails
    this run as a data-quality failure; rows with a null or infinite feature are counted,
    then left out of the distribution test. Unreadable log files are skipped and named in
    the outcome and the artifact (none readable: a data-quality failure naming them). The
    window is validated against the serving suite of the champion's spec (recorded in the
    outcome and an artifact); a failure is a data-quality failure, or with policy
    serving_suite=warn a note. A text champion (tag chassis.text_input) is judged by its
    text column: a domain classifier's p-value (chassis/text_domain_classifier.py), with
    token count and unknown-token share from its own tokenizer shown beside it. On drift,
    emit `chassis.model.drift-detected` for the model; a deployment trigger starts
    retraining. Live accuracy is judged too, from the feedback the gateways joined with
    their predictions in the window: when the champion's upper confidence bound is below
    its accuracy gate (on at least policy min_feedback_rows rows), emit
    `chassis.model.accuracy-below-gate`, which the same deployment triggers on. A plot of
    drift over time (this check and the earlier ones of the model) is
    stored with the check's MLflow run and shown in the drift summary. With
    CHASSIS_PUSHGATEWAY_URL set, a judged check's result is pushed there for Prometheus.
    With policy streamed, the window is never held: it is read as a stream into per-column
    sketches and every row is judged from them (chassis/drift_stream.py), with the same
    tests and data-quality rules; no serving suite and no Evidently plots then. Its files
    are read by policy stream_parts tasks on the flow's task runner (threads by default; a
    Dask or Ray task runner, or `ProcessPoolTaskRunner`, given with `drift_check.with_options`),
    whose summaries are merged before the verdict."""
    settings = ChassisSettings()
    registry = Registry.from_settings(settings)
    drift_policy = policy or DriftPolicy()
    champion = registry.version_for_alias(model_name, "champion")
    if champion is None:
        raise ChassisError(f"{model_name} has no champion; nothing is served to check")
    end = datetime.now(UTC)
    start = window_since(since, end) if since else end - timedelta(minutes=window_minutes)
    # A window from `since` is logged and signalled by its length too, rounded up.
    minutes = window_minutes if since is None else math.ceil((end - start).total_seconds() / 60)
    workdir = settings.home / "work" / uuid.uuid4().hex
    try:
        reference, features = load_reference(registry, model_name, champion, workdir)
        if drift_policy.streamed and registry.reads_text(model_name, champion):
            raise DriftInputError("a text model's window cannot be streamed (policy streamed)")
        window = None if drift_policy.streamed else load_window(settings, model_name, start, end)
        # Judged and signalled before drift: a window unusable for the drift test (or a
        # failing serving suite) says nothing about the labels clients sent.
        live = judge_accuracy(settings, registry, model_name, start, end, drift_policy)
        below = next((v for v in live if v.version == champion and v.below_gate), None)
        accuracy_emitted = below is not None and emit
        if below is not None and emit:
            signal_accuracy(model_name, below, {"window_minutes": minutes})
        html = workdir / f"drift-{model_name}-{end:%Y%m%dT%H%M%S}.html"
        if window is None:  # policy streamed: sketches of every row, never the rows
            columns = streamed_columns(reference, features)
            streamed = stream_in_parts(
                settings, model_name, start, end, reference, columns, drift_policy.stream_parts
            )
            prediction = columns[-1] if len(columns) > len(features) else None
            result = judge_streamed_drift(
                reference, streamed, features, drift_policy, html, prediction
            )
        else:
            suite = check_serving_suite(
                registry, settings, model_name, champion, window, features, drift_policy
            )
            # A tabular model has no tokenizer: no task run that would only say so.
            encoder = (
                load_text_encoder(registry, model_name, champion, workdir)
                if registry.reads_text(model_name, champion)
                else None
            )
            result = judge_drift(reference, window, features, drift_policy, html, suite, encoder)
        params = {
            "champion_version": champion,
            "window_minutes": minutes,
            "window_start": start.isoformat(),
            "drift_share": drift_policy.drift_share,
        }
        tracking = Tracking.from_settings(settings)
        report = log_drift_report(tracking, model_name, params, result, html)
        plot = plot_drift(tracking, model_name, result, report, end, workdir) if report else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report_url = report.ui_url(settings) if report else None
    links = PlotLinks(plot.file_url(settings), plot.ui_url(settings)) if plot else None
    publish_drift(model_name, champion, result, report_url, (start, end), links)
    pushed = push_drift_metrics(settings, model_name, result, end)
    if (unusable := result.unusable_reason()) is not None:
        raise DataQualityFailure(
            f"{model_name}: served data unusable for a drift check: {unusable}"
        )
    emitted = result.verdict == "drift" and emit
    if emitted:
        signal_drift(model_name, champion, result, {"window_minutes": minutes})
    return DriftOutcome.of(
        model_name,
        champion,
        result,
        (start, end),
        report,
        report_url,
        emitted,
        (live, accuracy_emitted),
        plot,
        links.page_url if links else None,
        pushed,
    )
