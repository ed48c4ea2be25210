"""The streamed drift check: the same verdicts as Evidently's on the same rows, from
per-column sketches of a prediction log read as a stream."""

import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chassis.drift import DriftPolicy, DriftResult, detect_drift
from chassis.drift_sketch import GRID_BINS, WASSERSTEIN, ColumnSketch, grid_of
from chassis.drift_stream import (
    StreamedWindow,
    WindowSummary,
    combine,
    detect_drift_streamed,
    reference_grids,
    split_files,
    stream_window,
    summarize_files,
    window_files,
)
from chassis.errors import DriftInputError
from chassis.prediction_window import read_window
from chassis.serving.prediction_log import PREDICTION, PredictionLogger
from chassis.settings import ChassisSettings
from chassis.storage import BlobStore
from chassis.task import REGRESSION

MODEL = "m"
# Four continuous columns (one heavy-tailed), one with four values and one binary: the
# binary and four-valued ones get Jensen-Shannon, the others Wasserstein (Evidently's
# defaults for a reference of more than 1,000 rows).
FEATURES = ["normal0", "normal1", "normal2", "lognormal", "level", "flag"]
REFERENCE_ROWS, WINDOW_ROWS, FILES = 3000, 20_000, 4


def table(rng: np.random.Generator, rows: int, drifted: bool) -> np.ndarray:
    shift = 0.3 if drifted else 0.0
    return np.column_stack(
        [
            rng.normal(shift, 1, rows),
            rng.normal(0, 1 + shift, rows),
            rng.normal(0, 1, rows),  # never moves
            rng.lognormal(shift, 1, rows),
            rng.choice(4, rows, p=[0.1, 0.2, 0.3, 0.4] if drifted else [0.25] * 4),
            rng.random(rows) < (0.5 + shift / 2),
        ]
    ).astype(np.float32)


@pytest.fixture
def store(chassis_home: Path, tmp_path: Path) -> BlobStore:
    return BlobStore(ChassisSettings(), str(tmp_path / "log"))


def log(store: BlobStore, rows: np.ndarray, files: int = FILES) -> list[str]:
    """Write `rows` as the gateway does, in `files` files; their relative paths."""
    written: list[str] = []

    def write(relative: str, payload: bytes) -> None:
        written.append(relative)
        store.write(relative, payload)

    logger = PredictionLogger(MODEL, FEATURES, write)
    for part in np.array_split(rows, files):
        logger.record(1, part, np.zeros(len(part), dtype=np.int64))
        logger.flush()
    return written


def bounds() -> tuple[datetime, datetime]:
    end = datetime.now(UTC) + timedelta(seconds=1)
    return end - timedelta(minutes=10), end


def both(
    store: BlobStore, reference: pd.DataFrame, policy: DriftPolicy
) -> tuple[DriftResult, DriftResult, StreamedWindow]:
    """Evidently's judgement of the window read whole, and the streamed one."""
    start, end = bounds()
    whole = read_window(store, MODEL, start, end)
    evidently = detect_drift(reference, whole.frame, FEATURES, policy, None, whole.skipped)
    window = stream_window(store, MODEL, start, end, reference_grids(reference, FEATURES))
    return evidently, detect_drift_streamed(reference, window, FEATURES, policy), window


def frame(values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(values, columns=FEATURES)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("drifted", [False, True])
def test_streamed_scores_and_verdict_match_evidently_on_the_same_rows(store, seed, drifted):
    rng = np.random.default_rng(seed)
    reference = frame(table(rng, REFERENCE_ROWS, drifted=False))
    log(store, table(rng, WINDOW_ROWS, drifted))
    policy = DriftPolicy(drift_share=0.5)
    evidently, streamed, _ = both(store, reference, policy)
    assert streamed.verdict == evidently.verdict == ("drift" if drifted else "no-drift")
    assert streamed.current_rows == evidently.current_rows == WINDOW_ROWS
    for mine, theirs in zip(streamed.columns, evidently.columns, strict=True):
        assert (mine.column, mine.method, mine.threshold) == (
            theirs.column,
            theirs.method,
            theirs.threshold,
        )
        assert mine.drifted == theirs.drifted, mine.column
        # The Wasserstein distance from the histogram is within one bin's width of the
        # exact one (the bin is 1/65,536 of the reference's range: < 1e-3 of its standard
        # deviation here, 100x below the 0.1 threshold); Jensen-Shannon is exact.
        reference_range = float(reference[mine.column].max() - reference[mine.column].min())
        tolerance = reference_range / GRID_BINS / float(reference[mine.column].std(ddof=0))
        allowed = tolerance if mine.method == WASSERSTEIN else 0.0
        assert abs(mine.score - theirs.score) <= allowed + 1e-6, mine.column
    if drifted:  # the test would pass on columns that never moved: some did
        assert set(streamed.drifted_column_names()) >= {"normal0", "level"}


def test_non_finite_values_are_counted_and_their_rows_left_out_as_detect_drift_does(store):
    rng = np.random.default_rng(3)
    reference = frame(table(rng, REFERENCE_ROWS, drifted=False))
    rows = table(rng, WINDOW_ROWS, drifted=False)
    rows[rng.random(WINDOW_ROWS) < 0.05, 0] = np.nan
    rows[rng.random(WINDOW_ROWS) < 0.05, 3] = np.nan
    log(store, rows)
    evidently, streamed, _ = both(store, reference, DriftPolicy())
    assert streamed.non_finite == evidently.non_finite and streamed.non_finite
    assert streamed.dropped_rows == evidently.dropped_rows > 0
    assert [round(c.score, 3) for c in streamed.columns] == [
        round(c.score, 3) for c in evidently.columns
    ]


def test_an_unusable_window_is_the_same_data_quality_failure(store):
    rng = np.random.default_rng(4)
    reference = frame(table(rng, REFERENCE_ROWS, drifted=False))
    rows = table(rng, 500, drifted=False)
    rows[:, 1] = np.nan
    rows[:10, 2] = np.inf
    log(store, rows, files=2)
    evidently, streamed, _ = both(store, reference, DriftPolicy())
    assert streamed.verdict == "data-quality-failure"
    assert streamed.quality_problems == evidently.quality_problems
    assert len(streamed.quality_problems) == 2


def test_rows_outside_the_window_are_not_read(store):
    rng = np.random.default_rng(5)
    reference = frame(table(rng, REFERENCE_ROWS, drifted=False))
    log(store, table(rng, 1000, drifted=False), files=1)
    start = datetime.now(UTC) + timedelta(seconds=5)  # after every logged row
    grids = reference_grids(reference, FEATURES)
    window = stream_window(store, MODEL, start, start + timedelta(minutes=1), grids)
    assert window.summary.rows == 0 and window.files_read == 1
    result = detect_drift_streamed(reference, window, FEATURES, DriftPolicy())
    assert result.quality_problems == ("the window has no rows",)


def test_unreadable_files_are_skipped_named_and_leave_no_rows_behind(store):
    rng = np.random.default_rng(6)
    reference = frame(table(rng, REFERENCE_ROWS, drifted=False))
    good = log(store, table(rng, 1000, drifted=False), files=1)[0]
    payload = (Path(store.root) / good).read_bytes()
    folder = str(Path(good).parent)
    store.write(f"{folder}/truncated.parquet", payload[: len(payload) // 2])
    store.write(f"{folder}/no-time.parquet", pd.DataFrame({"normal0": [1.0]}).to_parquet())
    start, end = bounds()
    window = stream_window(store, MODEL, start, end, reference_grids(reference, FEATURES))
    assert window.summary.rows == 1000 and window.files_read == 1
    reasons = {s.path: s.reason for s in window.skipped}
    assert set(reasons) == {f"{folder}/truncated.parquet", f"{folder}/no-time.parquet"}
    assert reasons[f"{folder}/no-time.parquet"] == "ValueError: no 'served_at' column"


def test_a_log_without_a_judged_column_does_not_match_the_reference(store):
    rng = np.random.default_rng(7)
    reference = frame(table(rng, REFERENCE_ROWS, drifted=False)).assign(extra=1.0)
    log(store, table(rng, 100, drifted=False), files=1)
    start, end = bounds()
    with pytest.raises(DriftInputError, match="has no column\\(s\\) 'extra'"):
        stream_window(store, MODEL, start, end, reference_grids(reference, [*FEATURES, "extra"]))


def test_tests_the_sketch_cannot_compute_are_refused_in_one_line(store):
    rng = np.random.default_rng(8)
    log(store, table(rng, 2000, drifted=False), files=1)
    start, end = bounds()
    small = frame(table(rng, 1000, drifted=False))
    window = stream_window(store, MODEL, start, end, reference_grids(small, FEATURES))
    with pytest.raises(DriftInputError, match="more than 1000 rows"):
        detect_drift_streamed(small, window, FEATURES, DriftPolicy())
    large = frame(table(rng, 2000, drifted=False))
    with pytest.raises(DriftInputError, match="not ks"):
        detect_drift_streamed(large, window, FEATURES, DriftPolicy(method="ks"))


def test_sketches_merge_to_the_sketch_of_all_values_in_any_split():
    rng = np.random.default_rng(9)
    values = rng.standard_t(3, 50_000)  # heavy tails: values beyond the reference's range
    grid = grid_of(rng.standard_t(3, 2000))
    whole = ColumnSketch(grid)
    whole.add(values)
    merged = ColumnSketch(grid)
    for part in np.array_split(values, 7)[::-1]:
        one = ColumnSketch(grid)
        one.add(part)
        merged.merge(one)
    assert np.array_equal(merged.counts, whole.counts) and merged.below_count > 0
    assert (merged.below_count, merged.above_count) == (whole.below_count, whole.above_count)
    assert merged.below_sum == pytest.approx(whole.below_sum, rel=1e-12)
    assert merged.distinct is None and whole.distinct is None


def test_window_summaries_merge_like_one_read():
    import pyarrow as pa

    rng = np.random.default_rng(10)
    reference = frame(table(rng, REFERENCE_ROWS, drifted=False))
    grids = reference_grids(reference, FEATURES)
    rows = table(rng, 4000, drifted=True)
    rows[::7, 0] = np.nan
    batch = pa.RecordBatch.from_pandas(frame(rows), preserve_index=False)
    whole, halves = WindowSummary(grids), WindowSummary(grids)
    whole.add(batch)
    for half in (batch.slice(0, 1500), batch.slice(1500)):
        one = WindowSummary(grids)
        one.add(half)
        halves.merge(one)
    assert (halves.rows, halves.kept, halves.null) == (whole.rows, whole.kept, whole.null)
    assert halves.sketches["level"].distinct == whole.sketches["level"].distinct
    assert np.array_equal(halves.sketches["normal1"].counts, whole.sketches["normal1"].counts)


def test_a_regressors_predictions_are_judged_as_one_more_column_as_detect_drift_does(store):
    rng = np.random.default_rng(11)
    reference = frame(table(rng, REFERENCE_ROWS, drifted=False))
    reference[PREDICTION] = reference["normal2"] * 2
    rows = table(rng, 5000, drifted=False)  # the features stay; the predictions move
    predicted = rows[:, 2] * 2 + 1.0

    logger = PredictionLogger(MODEL, FEATURES, store.write, task=REGRESSION)
    logger.record(1, rows, predicted.astype(np.float64))
    logger.flush()
    start, end = bounds()
    whole = read_window(store, MODEL, start, end).frame
    evidently = detect_drift(reference, whole, FEATURES, DriftPolicy(), None, (), None, PREDICTION)
    grids = reference_grids(reference, [*FEATURES, PREDICTION])
    window = stream_window(store, MODEL, start, end, grids)
    streamed = detect_drift_streamed(reference, window, FEATURES, DriftPolicy(), PREDICTION)
    assert streamed.drifted_column_names() == evidently.drifted_column_names() == [PREDICTION]
    assert streamed.columns[-1].score == pytest.approx(evidently.columns[-1].score, abs=1e-3)


@pytest.mark.parametrize(("files", "parts"), [(7, 3), (3, 5), (4, 4), (1, 2), (10, 1)])
def test_files_split_into_contiguous_near_equal_parts_none_empty(files, parts):
    names = [f"f{i}.parquet" for i in range(files)]
    groups = split_files(names, parts)
    assert [n for g in groups for n in g] == names  # every file once, in order
    assert len(groups) == min(files, parts) and all(groups)
    assert max(map(len, groups)) - min(map(len, groups)) <= 1


def test_an_empty_window_is_one_empty_part_so_it_is_still_judged():
    assert split_files([], 4) == [[]]


def test_parts_summarized_apart_and_pickled_combine_to_the_one_read(store):
    rng = np.random.default_rng(11)
    reference = frame(table(rng, REFERENCE_ROWS, drifted=False))
    rows = table(rng, WINDOW_ROWS, drifted=True)
    rows[::11, 1] = np.inf
    log(store, rows, files=5)
    folder = store.list(MODEL)[0].rsplit("/", 1)[0]
    store.write(f"{folder}/truncated.parquet", b"PAR1 not really")
    start, end = bounds()
    grids = reference_grids(reference, FEATURES)
    whole = stream_window(store, MODEL, start, end, grids)
    files = window_files(store, MODEL, start, end)
    # Each part crosses a process boundary as a Dask or Ray worker's result would.
    parts = [
        pickle.loads(pickle.dumps(summarize_files(store, group, start, end, grids)))
        for group in split_files(files, 3)
    ]
    combined = combine(parts)
    assert (combined.files_read, combined.summary.rows) == (5, WINDOW_ROWS)
    assert (combined.files_read, combined.summary.kept) == (whole.files_read, whole.summary.kept)
    assert combined.summary.pos_inf == whole.summary.pos_inf
    assert [s.path for s in combined.skipped] == [s.path for s in whole.skipped] != []
    for column in FEATURES:
        assert np.array_equal(
            combined.summary.sketches[column].counts, whole.summary.sketches[column].counts
        )
    policy = DriftPolicy()
    judged = detect_drift_streamed(reference, combined, FEATURES, policy)
    assert judged == detect_drift_streamed(reference, whole, FEATURES, policy)
