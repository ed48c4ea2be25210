"""Reading a drift check's window: unreadable log files are skipped and named, not fatal."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chassis.prediction_window import read_window
from chassis.serving.prediction_log import PredictionLogger
from chassis.settings import ChassisSettings
from chassis.storage import BlobStore

MODEL = "m"
FEATURES = ["f0", "f1"]


@pytest.fixture
def store(chassis_home: Path, tmp_path: Path) -> BlobStore:
    return BlobStore(ChassisSettings(), str(tmp_path / "log"))


def log_rows(store: BlobStore, rows: np.ndarray) -> str:
    """Write one file as the gateway does; returns its relative path."""
    written: list[str] = []

    def write(relative: str, payload: bytes) -> None:
        written.append(relative)
        store.write(relative, payload)

    logger = PredictionLogger(MODEL, FEATURES, write)
    logger.record(1, rows.astype(np.float32), np.zeros(len(rows), dtype=np.int64))
    logger.flush()
    return written[0]


def day_folder() -> str:
    return f"{MODEL}/date={datetime.now(UTC):%Y-%m-%d}"


def window(store: BlobStore):
    end = datetime.now(UTC) + timedelta(seconds=1)
    return read_window(store, MODEL, end - timedelta(minutes=10), end)


def test_corrupt_truncated_and_foreign_files_are_skipped_with_their_reasons(store):
    good = log_rows(store, np.ones((5, 2)))
    payload = (Path(store.root) / good).read_bytes()
    folder = day_folder()
    store.write(f"{folder}/random.parquet", np.random.default_rng(0).bytes(4096))
    store.write(f"{folder}/truncated.parquet", payload[: len(payload) // 2])
    store.write(f"{folder}/no-time.parquet", pd.DataFrame({"f0": [1.0]}).to_parquet())
    result = window(store)
    assert len(result.frame) == 5 and result.files_read == 1
    reasons = {s.path: s.reason for s in result.skipped}
    assert set(reasons) == {
        f"{folder}/random.parquet",
        f"{folder}/truncated.parquet",
        f"{folder}/no-time.parquet",
    }
    assert reasons[f"{folder}/random.parquet"].startswith("ArrowInvalid: ")
    assert reasons[f"{folder}/truncated.parquet"].startswith("ArrowInvalid: ")
    assert reasons[f"{folder}/no-time.parquet"] == "ValueError: no 'served_at' column"


def test_no_readable_file_gives_an_empty_window_naming_every_file(store):
    folder = day_folder()
    store.write(f"{folder}/a.parquet", b"not parquet at all")
    result = window(store)
    assert result.frame.empty and result.files_read == 0
    assert [s.path for s in result.skipped] == [f"{folder}/a.parquet"]


def test_infinite_values_are_read_back_as_logged(store):
    rows = np.array([[np.inf, 1.0], [-np.inf, 2.0], [0.5, np.nan]])
    log_rows(store, rows)
    frame = window(store).frame
    assert np.isposinf(frame["f0"][0]) and np.isneginf(frame["f0"][1])
    assert frame["f1"].isna().sum() == 1
