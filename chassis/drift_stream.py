"""The drift check on a window read as a stream: per-column sketches, never the rows.

`stream_window` reads the window's prediction-log files one at a time as Arrow record
batches (a Parquet fragment scanned with the window as a filter, only the judged columns)
and folds each batch into a `WindowSummary`: rows, each column's null/+inf/-inf counts, the
rows whose judged columns are all finite, and each column's `ColumnSketch`
(chassis/drift_sketch.py) of those rows. Memory is bounded by one batch and the sketches,
whatever the window's length. A file is summarized alone and merged in only when read
whole, so an unreadable one is skipped and named (as `read_window` does) without leaving
half its rows behind. Summaries merge by adding: per-file or per-column summaries made on
other workers combine into the same verdict.

`detect_drift_streamed` judges the summary by the rules of `chassis.drift.detect_drift`
(the same data-quality problems from the same counts, then the share of drifted columns),
with the tests Evidently picks by default for a reference of more than 1,000 rows,
computed from the sketches. It refuses what it cannot compute that way (another test, a
reference of at most 1,000 rows, a text column) with one line saying so. The serving suite
(Great Expectations on a frame) is not run on a streamed window.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from chassis.drift import (
    ColumnDrift,
    DriftPolicy,
    DriftResult,
    NonFinite,
    SkippedFile,
    check_schema,
    counted_problems,
    finite_rows,
    no_rows_problem,
)
from chassis.drift_sketch import (
    DEFAULT_THRESHOLD,
    ColumnSketch,
    Grid,
    grid_of,
    score,
    wasserstein_normed,
)
from chassis.errors import DriftInputError
from chassis.prediction_window import error_reason, unreadable_errors, window_days
from chassis.serving.prediction_log import TIME

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as ds

    from chassis.storage import BlobStore

# Rows per record batch: 20 float32 columns of 256 Ki rows are 20 MiB, with their float64
# copies and masks under 100 MiB, the most a batch holds at once.
BATCH_ROWS = 262_144
# Evidently picks other tests (K-S, chi-square, z) for a reference of at most this many rows.
SMALL_REFERENCE = 1000
# The tests a streamed check computes: Evidently's defaults (None) or the Wasserstein one.
STREAMED_METHODS = (None, "wasserstein")


@dataclass
class WindowSummary:
    """What the streamed check keeps of a window: counts, and each column's sketch."""

    grids: dict[str, Grid]
    rows: int = 0
    # Rows whose judged columns are all finite: the rows the sketches hold.
    kept: int = 0
    null: dict[str, int] = field(default_factory=dict[str, int])
    pos_inf: dict[str, int] = field(default_factory=dict[str, int])
    neg_inf: dict[str, int] = field(default_factory=dict[str, int])
    sketches: dict[str, ColumnSketch] = field(default_factory=dict[str, ColumnSketch])

    def __post_init__(self) -> None:
        for column, grid in self.grids.items():
            self.sketches.setdefault(column, ColumnSketch(grid))
            for counts in (self.null, self.pos_inf, self.neg_inf):
                counts.setdefault(column, 0)

    @property
    def columns(self) -> list[str]:
        return list(self.grids)

    def add(self, batch: "pa.RecordBatch") -> None:
        """Fold in a batch of window rows holding every judged column."""
        values = {
            c: np.asarray(batch.column(c).to_numpy(zero_copy_only=False), dtype=np.float64)
            for c in self.grids
        }
        finite = np.ones(batch.num_rows, dtype=bool)
        for column, x in values.items():
            self.null[column] += int(np.isnan(x).sum())
            self.pos_inf[column] += int((x == np.inf).sum())
            self.neg_inf[column] += int((x == -np.inf).sum())
            finite &= np.isfinite(x)
        self.rows += batch.num_rows
        self.kept += int(finite.sum())
        everything = bool(finite.all())
        for column, x in values.items():
            self.sketches[column].add(x if everything else x[finite])

    def merge(self, other: "WindowSummary") -> None:
        self.rows += other.rows
        self.kept += other.kept
        for column in self.grids:
            self.null[column] += other.null[column]
            self.pos_inf[column] += other.pos_inf[column]
            self.neg_inf[column] += other.neg_inf[column]
            self.sketches[column].merge(other.sketches[column])

    def non_finite(self, columns: list[str]) -> list[NonFinite]:
        return [
            NonFinite(c, self.rows, self.null[c], self.pos_inf[c], self.neg_inf[c]) for c in columns
        ]


@dataclass(frozen=True)
class StreamedWindow:
    summary: WindowSummary
    files_read: int
    skipped: tuple[SkippedFile, ...]


def reference_grids(reference: pd.DataFrame, columns: list[str]) -> dict[str, Grid]:
    """Each column's histogram range, from the reference's rows with every column finite
    (the rows the test compares with)."""
    finite = finite_rows(reference, columns)
    if len(finite) == 0:
        raise DriftInputError("the reference snapshot has no row with every feature finite")
    return {c: grid_of(finite[c].to_numpy(dtype=np.float64)) for c in columns}


def _window_filter(start: datetime, end: datetime) -> "ds.Expression":
    import pyarrow as pa
    import pyarrow.dataset as ds

    stamp = pa.timestamp("us", tz="UTC")
    time = ds.field(TIME)
    return (time >= pa.scalar(start, type=stamp)) & (time < pa.scalar(end, type=stamp))


def _fragment(store: "BlobStore", relative: str) -> "ds.Fragment":
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs

    parquet = ds.ParquetFileFormat()
    if store.is_s3:  # one object's bytes at a time: bounded by the log's file size
        # pyarrow's stubs type `file` as a path or IO; it takes Arrow's own readers too.
        return parquet.make_fragment(cast(Any, pa.BufferReader(store.read(relative))))
    return parquet.make_fragment(f"{store.root}/{relative}", pyarrow.fs.LocalFileSystem())


def _check_file_schema(schema: "pa.Schema", columns: list[str], relative: str) -> None:
    """A file without a judged column, or with a non-numeric one, is a log that does not
    match the reference (as `check_schema` says of a frame); without its time column it
    is unreadable, and skipped."""
    import pyarrow as pa

    if TIME not in schema.names:
        raise ValueError(f"no {TIME!r} column")
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise DriftInputError(
            f"prediction log does not match the reference: {relative} has no column(s) "
            f"{', '.join(map(repr, missing[:10]))}"
        )
    wrong = [
        c
        for c in columns
        if not (
            pa.types.is_floating(schema.field(c).type) or pa.types.is_integer(schema.field(c).type)
        )
    ]
    if wrong:
        raise DriftInputError(
            f"prediction log does not match the reference: non-numeric column(s) {wrong[:10]}"
        )


def window_files(store: "BlobStore", model: str, start: datetime, end: datetime) -> list[str]:
    """The window's prediction-log files, day by day in order: what a streamed check reads."""
    return [
        relative
        for day in window_days(start, end)
        for relative in store.list(f"{model}/date={day:%Y-%m-%d}")
        if relative.endswith(".parquet")
    ]


def summarize_files(
    store: "BlobStore",
    files: list[str],
    start: datetime,
    end: datetime,
    grids: dict[str, Grid],
    batch_rows: int = BATCH_ROWS,
) -> StreamedWindow:
    """The rows of `files` served in [start, end), summarized file by file, skipping (and
    naming) the files that cannot be read. One part of a window: parts merge by `combine`."""
    columns = list(grids)
    window = _window_filter(start, end)
    unreadable = unreadable_errors()
    total = WindowSummary(grids)
    files_read = 0
    skipped: list[SkippedFile] = []
    for relative in files:
        try:
            fragment = _fragment(store, relative)
            _check_file_schema(fragment.physical_schema, columns, relative)
            one = WindowSummary(grids)
            for batch in fragment.to_batches(columns=columns, filter=window, batch_size=batch_rows):
                one.add(batch)
        except unreadable as error:
            skipped.append(SkippedFile(relative, error_reason(error)))
            continue
        total.merge(one)
        files_read += 1
    return StreamedWindow(total, files_read, tuple(skipped))


def split_files(files: list[str], parts: int) -> list[list[str]]:
    """`files` in at most `parts` contiguous groups of near-equal length, none empty (one
    empty group when there are no files, so an empty window is still judged)."""
    if not files:
        return [[]]
    count = min(parts, len(files))
    size, extra = divmod(len(files), count)
    groups: list[list[str]] = []
    at = 0
    for index in range(count):
        length = size + (1 if index < extra else 0)
        groups.append(files[at : at + length])
        at += length
    return groups


def combine(parts: list[StreamedWindow]) -> StreamedWindow:
    """One window from parts summarized apart (on other threads, processes or machines):
    counts and sketches add, skipped files are listed in the parts' order."""
    if not parts:
        raise ValueError("no parts to combine")
    total = WindowSummary(parts[0].summary.grids)
    for part in parts:
        total.merge(part.summary)
    return StreamedWindow(
        total,
        sum(p.files_read for p in parts),
        tuple(s for p in parts for s in p.skipped),
    )


def stream_window(
    store: "BlobStore",
    model: str,
    start: datetime,
    end: datetime,
    grids: dict[str, Grid],
    batch_rows: int = BATCH_ROWS,
) -> StreamedWindow:
    """The rows served in [start, end), summarized in this process, file by file."""
    files = window_files(store, model, start, end)
    return summarize_files(store, files, start, end, grids, batch_rows)


def check_streamable(reference: pd.DataFrame, policy: DriftPolicy) -> None:
    """Refuse, in one line, a check the sketches cannot compute as Evidently would."""
    methods = {policy.method, *policy.per_column_method.values()}
    other = sorted(str(m) for m in methods if m not in STREAMED_METHODS)
    if other:
        raise DriftInputError(
            f"the streamed drift check computes Evidently's default tests and 'wasserstein', "
            f"not {', '.join(other)}"
        )
    if len(reference) <= SMALL_REFERENCE:
        raise DriftInputError(
            f"the streamed drift check needs a reference of more than {SMALL_REFERENCE} rows "
            f"(Evidently picks K-S or chi-square below); it has {len(reference)}"
        )


def judge_columns(
    reference: pd.DataFrame, summary: WindowSummary, policy: DriftPolicy
) -> tuple[tuple[ColumnDrift, ...], tuple[str, ...]]:
    """Each column's test from its sketch, and a note for each column whose score is
    within the sketch's error bound of its threshold (the decision there is the
    histogram's, not certain)."""
    results: list[ColumnDrift] = []
    notes: list[str] = []
    for column in summary.columns:
        values = reference[column].to_numpy(dtype=np.float64)
        sketch = summary.sketches[column]
        forced = policy.per_column_method.get(column, policy.method)
        result = wasserstein_normed(values, sketch) if forced else score(values, sketch)
        threshold = policy.per_column_threshold.get(column, policy.threshold) or DEFAULT_THRESHOLD
        drifted = result.score >= threshold
        results.append(ColumnDrift(column, result.method, threshold, result.score, drifted))
        if abs(result.score - threshold) <= result.error_bound:
            notes.append(
                f"column {column!r}: score {result.score:.6f} is within the streamed sketch's "
                f"error bound ({result.error_bound:.1e}) of its threshold {threshold:g}"
            )
    return tuple(results), tuple(notes)


def detect_drift_streamed(
    reference: pd.DataFrame | None,
    window: StreamedWindow,
    features: list[str],
    policy: DriftPolicy,
    prediction_column: str | None = None,
) -> DriftResult:
    """`detect_drift`'s judgement of a streamed window (made with `reference_grids` of the
    same reference and columns: `features`, then `prediction_column` when given)."""
    if reference is None or len(reference) == 0:
        raise DriftInputError("the reference snapshot is empty; cannot judge drift")
    judged = [*features, prediction_column] if prediction_column else list(features)
    check_schema(reference, judged)
    summary = window.summary
    if summary.columns != judged:
        raise DriftInputError(f"the window was summarized for {summary.columns}, not {judged}")
    finite_reference = finite_rows(reference, judged)
    check_streamable(finite_reference, policy)
    if summary.rows == 0:
        return DriftResult(
            "data-quality-failure",
            0,
            len(reference),
            quality_problems=(no_rows_problem(window.skipped),),
            skipped_files=window.skipped,
            drift_share_needed=policy.drift_share,
        )
    counts = summary.non_finite(features)
    non_finite = tuple(c for c in counts if c.total)
    problems = counted_problems(summary.rows, counts, lambda: summary.kept, policy)
    if problems:
        return DriftResult(
            "data-quality-failure",
            summary.rows,
            len(reference),
            quality_problems=tuple(problems),
            non_finite=non_finite,
            skipped_files=window.skipped,
            drift_share_needed=policy.drift_share,
        )
    columns, notes = judge_columns(finite_reference, summary, policy)
    count = sum(1 for c in columns if c.drifted)
    share = count / len(columns) if columns else 0.0
    return DriftResult(
        "drift" if share >= policy.drift_share else "no-drift",
        summary.rows,
        len(reference),
        count,
        share,
        columns,
        non_finite=non_finite,
        dropped_rows=summary.rows - summary.kept,
        explanations=notes,
        skipped_files=window.skipped,
        drift_share_needed=policy.drift_share,
    )
