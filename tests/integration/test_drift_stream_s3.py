"""The streamed drift check on a prediction log in S3 (a local S3 server over HTTP, the
`s3_env` fixture): the same summary and verdict as the same log in a folder, unreadable
objects skipped and named, and parts summarized apart merging to the whole."""

from dataclasses import replace

import numpy as np
import pytest

from chassis.drift import DriftPolicy
from chassis.drift_stream import (
    combine,
    detect_drift_streamed,
    reference_grids,
    split_files,
    stream_window,
    summarize_files,
    window_files,
)
from chassis.settings import ChassisSettings
from chassis.storage import BlobStore
from tests.fixtures.s3 import BUCKET
from tests.unit.test_drift_stream import (
    FEATURES,
    MODEL,
    REFERENCE_ROWS,
    WINDOW_ROWS,
    bounds,
    frame,
    log,
    table,
)


@pytest.fixture
def stores(s3_env, tmp_path) -> tuple[BlobStore, BlobStore]:
    settings = ChassisSettings()
    return BlobStore(settings, f"s3://{BUCKET}/log"), BlobStore(settings, str(tmp_path / "log"))


def test_a_log_in_s3_is_judged_as_the_same_log_in_a_folder(stores):
    s3, folder = stores
    rng = np.random.default_rng(12)
    reference = frame(table(rng, REFERENCE_ROWS, drifted=False))
    rows = table(rng, WINDOW_ROWS, drifted=True)
    rows[::13, 2] = np.nan
    for store in (s3, folder):
        written = log(store, rows, files=3)
        day = written[0].rsplit("/", 1)[0]
        store.write(f"{day}/truncated.parquet", b"PAR1 cut short")
    start, end = bounds()
    grids = reference_grids(reference, FEATURES)
    from_s3 = stream_window(s3, MODEL, start, end, grids)
    from_folder = stream_window(folder, MODEL, start, end, grids)
    assert (from_s3.files_read, from_s3.summary.rows) == (3, WINDOW_ROWS)
    assert from_s3.summary.null == from_folder.summary.null
    assert [s.path for s in from_s3.skipped] == [s.path for s in from_folder.skipped]
    assert len(from_s3.skipped) == 1 and from_s3.skipped[0].path.endswith("truncated.parquet")
    for column in FEATURES:
        assert np.array_equal(
            from_s3.summary.sketches[column].counts, from_folder.summary.sketches[column].counts
        )
    policy = DriftPolicy()
    verdict = detect_drift_streamed(reference, from_s3, FEATURES, policy)
    # The skipped file's reason names its source (a path, or an S3 object's buffer).
    same = detect_drift_streamed(reference, from_folder, FEATURES, policy)
    assert replace(verdict, skipped_files=()) == replace(same, skipped_files=())
    assert verdict.verdict == "drift"
    parts = [
        summarize_files(s3, group, start, end, grids)
        for group in split_files(window_files(s3, MODEL, start, end), 2)
    ]
    assert detect_drift_streamed(reference, combine(parts), FEATURES, policy) == verdict
