"""Tasks of the drift check: load the window and the reference, judge, report, signal."""

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.events import emit_event

from chassis import expectations
from chassis.drift import DriftPolicy, DriftResult, detect_drift
from chassis.drift_plot import HISTORY_CHECKS, CheckPoint, check_of_record, drift_figure
from chassis.drift_push import PUSH_JOB, push_drift
from chassis.drift_sketch import Grid
from chassis.drift_stream import (
    StreamedWindow,
    combine,
    detect_drift_streamed,
    reference_grids,
    split_files,
    summarize_files,
    window_files,
)
from chassis.drift_summary import drift_summary
from chassis.errors import DriftInputError, RegistryError
from chassis.expectations import SuiteResult
from chassis.figures import save_png
from chassis.live_accuracy import VersionAccuracy, judge_live_accuracy
from chassis.markdown import PlotLinks
from chassis.modelspec import load_spec
from chassis.prediction_window import Window, read_feedback, read_window
from chassis.registry import Registry
from chassis.registry.tags import TAG_ACCURACY_GATE, TAG_SPEC
from chassis.serving.prediction_log import PREDICTION
from chassis.serving.prediction_log import VERSION as VERSION_COLUMN
from chassis.settings import ChassisSettings
from chassis.storage import BlobStore
from chassis.task import REGRESSION, task_of
from chassis.text_drift import detect_text_drift
from chassis.text_input import TextEncoder
from chassis.tracking import StoredArtifact, Tracking
from tasks.artifacts import publish_markdown, publish_table
from tasks.options import NO_CACHE_TASK, REMOTE_READ_TASK

DRIFT_EVENT = "chassis.model.drift-detected"
# A served version's live accuracy is below its accuracy gate (chassis/live_accuracy.py).
ACCURACY_EVENT = "chassis.model.accuracy-below-gate"
DRIFT_PLOT_FILE = "drift-over-time.png"


def model_resource(model: str) -> dict[str, str]:
    return {"prefect.resource.id": f"chassis.model.{model}", "prefect.resource.name": model}


@task(name="load-reference", **REMOTE_READ_TASK)
def load_reference(
    registry: Registry, model: str, version: int, workdir: Path
) -> tuple[pd.DataFrame, list[str]]:
    """The reference snapshot of the version that was trained (compressed ones inherit it)."""
    root, _ = registry.lineage_root(model, version)
    try:
        path = registry.fetch_reference(model, root, workdir)
    except RegistryError as error:
        raise DriftInputError(str(error)) from error
    features = registry.feature_columns(model, version)
    if not features:
        raise DriftInputError(f"{model} v{version} records no feature columns")
    return pd.read_parquet(path), features


@task(name="load-text-encoder", **REMOTE_READ_TASK)
def load_text_encoder(
    registry: Registry, model: str, version: int, workdir: Path
) -> TextEncoder | None:
    """The served version's tokenizer when it is a text model (tag chassis.text_input), else
    None: a text column's descriptors are read the way the model reads its input."""
    try:
        return registry.fetch_text_encoder(model, version, workdir / "tokenizer")
    except RegistryError as error:
        raise DriftInputError(str(error)) from error


@task(name="load-window", **NO_CACHE_TASK)
def load_window(settings: ChassisSettings, model: str, start: datetime, end: datetime) -> Window:
    """The window's rows from the readable log files; unreadable ones are named, not fatal."""
    store = BlobStore(settings, settings.resolved_prediction_log_root())
    window = read_window(store, model, start, end)
    logger = get_run_logger()
    logger.info(
        "window %s .. %s: %d served rows from %d file(s)",
        start,
        end,
        len(window.frame),
        window.files_read,
    )
    for skipped in window.skipped:
        logger.warning("skipped unreadable prediction-log file %s", skipped.describe())
    return window


@task(name="list-window-files", **NO_CACHE_TASK)
def list_window_files(
    settings: ChassisSettings, model: str, start: datetime, end: datetime
) -> list[str]:
    """The prediction-log files a streamed check of [start, end) reads."""
    store = BlobStore(settings, settings.resolved_prediction_log_root())
    return window_files(store, model, start, end)


@task(name="summarize-log-files", **NO_CACHE_TASK)
def summarize_log_files(
    settings: ChassisSettings,
    files: list[str],
    start: datetime,
    end: datetime,
    grids: dict[str, Grid],
) -> StreamedWindow:
    """One part of a streamed window: its files' rows folded into per-column sketches,
    never held; unreadable files are named, not fatal. Its result is small (about 0.5 MiB
    a column) and pickles, so any task runner can run the parts anywhere."""
    store = BlobStore(settings, settings.resolved_prediction_log_root())
    return summarize_files(store, files, start, end, grids)


def stream_in_parts(
    settings: ChassisSettings,
    model: str,
    start: datetime,
    end: datetime,
    reference: pd.DataFrame,
    columns: list[str],
    parts: int,
) -> StreamedWindow:
    """The window summarized by `parts` tasks on the flow's task runner, then merged (policy
    streamed): the flow's run shows one `summarize-log-files` task run per part."""
    grids = reference_grids(reference, columns)
    files = list_window_files(settings, model, start, end)
    futures = [
        summarize_log_files.submit(settings, group, start, end, grids)
        for group in split_files(files, parts)
    ]
    window = combine([future.result() for future in futures])
    logger = get_run_logger()
    logger.info(
        "window %s .. %s, streamed in %d part(s): %d served rows from %d file(s)",
        start,
        end,
        len(futures),
        window.summary.rows,
        window.files_read,
    )
    for skipped in window.skipped:
        logger.warning("skipped unreadable prediction-log file %s", skipped.describe())
    return window


@task(name="judge-drift-streamed", **NO_CACHE_TASK)
def judge_streamed_drift(
    reference: pd.DataFrame,
    window: StreamedWindow,
    features: list[str],
    policy: DriftPolicy,
    html_path: Path,
    prediction: str | None,
) -> DriftResult:
    """`judge_drift` of a streamed window. Its report is the per-column table as HTML
    (Evidently's plots need the rows), so the monitoring run is logged as for any check."""
    result = detect_drift_streamed(reference, window, features, policy, prediction)
    if result.columns:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        table = pd.DataFrame(result.summary_rows()).to_html(index=False)
        html_path.write_text(
            f"<h1>Streamed drift check: {result.verdict_sentence()}</h1>"
            f"<p>{result.current_rows} rows judged from per-column sketches.</p>{table}"
        )
    return result


def streamed_columns(reference: pd.DataFrame, features: list[str]) -> list[str]:
    """The columns a streamed check summarizes: a regressor's predictions too."""
    return [*features, PREDICTION] if PREDICTION in reference.columns else list(features)


@task(name="check-serving-suite", **REMOTE_READ_TASK)
def check_serving_suite(
    registry: Registry,
    settings: ChassisSettings,
    model: str,
    version: int,
    window: Window,
    features: list[str],
    policy: DriftPolicy,
) -> SuiteResult | None:
    """The window's features against the serving suite of the version's spec; None when
    the spec names none, the policy skips it, or there is nothing to validate (no rows, or
    columns the drift check refuses anyway)."""
    logger = get_run_logger()
    if policy.serving_suite == "skip":
        logger.info("serving suite not run (policy serving_suite=skip)")
        return None
    if window.frame.empty or not set(features) <= set(window.frame.columns):
        return None
    reference = registry.version_tags(model, version).get(TAG_SPEC)
    if not reference:
        raise DriftInputError(
            f"{model} v{version} has no {TAG_SPEC} tag, so its serving suite cannot "
            "be found; run the check with policy serving_suite=skip"
        )
    spec = load_spec(reference)
    if not spec.serving_suite:
        logger.info("spec %s names no serving suite; not run", reference)
        return None
    path = expectations.resolve_suite_path(spec.serving_suite, settings.expectations_dir)
    result = expectations.validate_frame(window.frame[features], expectations.load_suite(path))
    publish_markdown(
        result.to_markdown(f"Served window of {model} v{version}: {result.suite_name}"),
        "serving-suite",
        model,
        description=f"Serving suite of {model} on its served window: "
        + ("passed" if result.success else "FAILED"),
    )
    if result.success:
        logger.info("serving suite %s: %d expectations passed", path, len(result.results))
    else:
        logger.warning("%s", expectations.describe_failures(result, "the served window", limit=5))
    return result


@task(name="judge-drift", **NO_CACHE_TASK)
def judge_drift(
    reference: pd.DataFrame,
    window: Window,
    features: list[str],
    policy: DriftPolicy,
    html_path: Path,
    serving_suite: SuiteResult | None,
    text_encoder: TextEncoder | None = None,
) -> DriftResult:
    # A regressor's reference holds its predicted values: judged as one more column.
    prediction = PREDICTION if PREDICTION in reference.columns else None
    if text_encoder is not None:
        if len(features) != 1:
            raise DriftInputError(
                f"a text model has one feature column (its texts); the version records {features}"
            )
        return detect_text_drift(
            reference,
            window.frame,
            features[0],
            text_encoder,
            policy,
            html_path,
            window.skipped,
            serving_suite,
            prediction,
        )
    return detect_drift(
        reference,
        window.frame,
        features,
        policy,
        html_path,
        window.skipped,
        serving_suite,
        prediction,
    )


@task(name="log-drift-report", **NO_CACHE_TASK)
def log_drift_report(
    tracking: Tracking,
    model: str,
    params: dict[str, Any],
    result: DriftResult,
    html: Path,
) -> StoredArtifact | None:
    """The check as a run of the model's monitoring experiment, with Evidently's report;
    None when no report was made (the window failed data quality before the test)."""
    if not html.exists():
        return None
    params = {
        **params,
        "serving_suite": result.serving_suite_status(),
        "verdict": result.verdict,
    }
    return tracking.log_monitoring_run(
        model,
        metrics=result.monitoring_metrics(),
        params=params,
        html=html,
        columns=[asdict(c) for c in result.columns],
    )


@task(name="plot-drift", **NO_CACHE_TASK)
def plot_drift(
    tracking: Tracking,
    model: str,
    result: DriftResult,
    report: StoredArtifact,
    checked_at: datetime,
    workdir: Path,
) -> StoredArtifact | None:
    """The drift-over-time plot of this check and the earlier ones of the model, stored with
    this check's run. A picture is an aid, not the check: any failure to make or store it is
    a warning, and None, never a failed check."""
    try:
        earlier = tracking.monitoring_history(model, HISTORY_CHECKS - 1, report.run_id)
        checks = [c for c in map(check_of_record, earlier) if c is not None]
        checks.append(CheckPoint.of(checked_at, result))
        png = save_png(drift_figure(model, checks), workdir / DRIFT_PLOT_FILE)
        return tracking.log_file_to_run(report.run_id, png, "drift")
    except Exception as error:
        get_run_logger().warning("drift plot not written (the check stands): %s", error)
        return None


@task(name="push-drift-metrics", **NO_CACHE_TASK)
def push_drift_metrics(
    settings: ChassisSettings, model: str, result: DriftResult, checked_at: datetime
) -> bool:
    """The check's result to the Pushgateway at CHASSIS_PUSHGATEWAY_URL (chassis/drift_push.py);
    whether it was pushed. Not set: nothing is pushed, and the log says how to. A check with
    no verdict (data quality) pushes nothing. A push that fails is a warning, never a failed
    check: the verdict, its report and its event do not depend on the metrics."""
    logger = get_run_logger()
    url = settings.pushgateway_url
    if result.verdict not in ("drift", "no-drift"):
        return False
    if not url:
        logger.info(
            "drift metrics not pushed: set CHASSIS_PUSHGATEWAY_URL to a Prometheus Pushgateway "
            "to alert on drift (docs/metrics.md)"
        )
        return False
    try:
        push_drift(url, model, result, checked_at)
    except Exception as error:
        logger.warning("drift metrics not pushed to %s (the check stands): %s", url, error)
        return False
    logger.info("drift metrics pushed to %s (job %s, model %s)", url, PUSH_JOB, model)
    return True


def publish_drift(
    model: str,
    version: int,
    result: DriftResult,
    report_url: str | None,
    window: tuple[datetime, datetime],
    plot: PlotLinks | None = None,
) -> None:
    """The verdict in Prefect; `report_url` is the report's page in the MLflow UI, `plot`
    the drift-over-time image (shown in the summary)."""
    sentence = result.verdict_sentence()
    if result.columns:
        publish_table(
            result.summary_rows(),
            "drift-columns",
            model,
            description=f"Per-column drift of {model} v{version}: {sentence}",
        )
    publish_markdown(
        drift_summary(model, version, result, report_url, window, plot),
        "drift-summary",
        model,
        description=f"Drift check of {model} v{version}: {sentence}",
    )


def signal_drift(model: str, version: int, result: DriftResult, extra: dict[str, Any]) -> None:
    """The event a deployment trigger listens for; its payload becomes retrain parameters."""
    emit_event(
        event=DRIFT_EVENT,
        resource=model_resource(model),
        payload={
            "model_name": model,
            "champion_version": version,
            "drifted_share": result.drifted_share,
            "drifted_columns": result.drifted_column_names(),
            **extra,
        },
    )
    get_run_logger().warning(
        "%s v%d: %s; emitted %s", model, version, result.verdict_sentence(), DRIFT_EVENT
    )


@task(name="judge-live-accuracy", **REMOTE_READ_TASK)
def judge_accuracy(
    settings: ChassisSettings,
    registry: Registry,
    model: str,
    start: datetime,
    end: datetime,
    policy: DriftPolicy,
) -> list[VersionAccuracy]:
    """Each version's live accuracy from the feedback the gateways received in the window
    (joined with its prediction where it was answered, written beside the prediction log:
    every replica's, whichever answered), against the version's accuracy gate."""
    store = BlobStore(settings, settings.resolved_prediction_log_root())
    feedback = read_feedback(store, model, start, end)
    logger = get_run_logger()
    for skipped in feedback.skipped:
        logger.warning("skipped unreadable feedback file %s", skipped.describe())
    frame = feedback.frame
    if frame.empty:
        logger.info("no feedback in the window: live accuracy not judged")
        return []
    gates: dict[int, float | None] = {}
    regressor = False
    for version in sorted({int(v) for v in frame[VERSION_COLUMN]}):
        tags = registry.version_tags(model, version)
        regressor = regressor or task_of(tags) == REGRESSION
        gate = tags.get(TAG_ACCURACY_GATE)
        gates[version] = float(gate) if gate else None
    judged = judge_live_accuracy(frame, gates, policy, regressor)
    for verdict in judged:
        logger.info("%s %s", model, verdict.sentence())
    publish_table(
        [
            {
                "version": f"v{v.version}",
                "feedback rows": v.rows,
                "live accuracy": "-" if v.accuracy is None else f"{v.accuracy:.2%}",
                "upper bound": "-" if v.upper_bound is None else f"{v.upper_bound:.2%}",
                "accuracy gate": "-" if v.gate is None else f"{v.gate:.2%}",
                "mean absolute error": (
                    "-" if v.mean_absolute_error is None else f"{v.mean_absolute_error:.4g}"
                ),
                "verdict": v.verdict,
            }
            for v in judged
        ],
        "live-accuracy",
        model,
        description=f"Live accuracy of {model} from feedback, {start:%Y-%m-%d %H:%M} .. "
        f"{end:%H:%M} UTC: " + "; ".join(v.sentence() for v in judged),
    )
    return judged


def signal_accuracy(model: str, judged: VersionAccuracy, extra: dict[str, Any]) -> None:
    """The accuracy event, for the retrain deployment's trigger (as the drift event)."""
    emit_event(
        event=ACCURACY_EVENT,
        resource=model_resource(model),
        payload={
            "model_name": model,
            "champion_version": judged.version,
            "live_accuracy": judged.accuracy,
            "accuracy_upper_bound": judged.upper_bound,
            "accuracy_gate": judged.gate,
            "feedback_rows": judged.rows,
            **extra,
        },
    )
    get_run_logger().warning("%s %s; emitted %s", model, judged.sentence(), ACCURACY_EVENT)
