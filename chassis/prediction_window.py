"""The prediction-log window a drift check judges, read file by file.

A file that cannot be read (corrupt or truncated Parquet, random bytes, no `served_at`
column, gone or forbidden when read) is skipped and named with the reason, so one bad file
cannot block the check; the drift result carries the list. A store that cannot be listed
at all still fails the check: that is an outage, not a bad file.
"""

import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd

from chassis.drift import SkippedFile
from chassis.serving.prediction_log import FEEDBACK_FOLDER, LABELLED_AT, TIME

if TYPE_CHECKING:
    from chassis.storage import BlobStore


@dataclass(frozen=True)
class Window:
    frame: pd.DataFrame  # rows served in [start, end) from the readable files
    files_read: int
    skipped: tuple[SkippedFile, ...]


def window_days(start: datetime, end: datetime) -> list[date]:
    return [start.date() + timedelta(days=n) for n in range((end.date() - start.date()).days + 1)]


def unreadable_errors() -> tuple[type[BaseException], ...]:
    """What reading one file may raise for that file alone: Arrow's parse errors are
    ValueError or OSError subclasses; an S3 object may be gone or forbidden (ClientError).
    An unreachable endpoint is neither and stops the check."""
    import pyarrow as pa

    errors: tuple[type[BaseException], ...] = (OSError, ValueError, pa.ArrowException)
    try:
        from botocore.exceptions import ClientError
    except ImportError:
        return errors
    return (*errors, ClientError)


def _read_file(store: "BlobStore", relative: str) -> pd.DataFrame:
    frame = pd.read_parquet(io.BytesIO(store.read(relative)))
    if TIME not in frame.columns:
        raise ValueError(f"no {TIME!r} column")
    return frame


def error_reason(error: BaseException) -> str:
    text = " ".join(str(error).split())  # one line for tables and logs
    return f"{type(error).__name__}: {text[:200]}"


def read_window(store: "BlobStore", model: str, start: datetime, end: datetime) -> Window:
    """Rows served in [start, end) from the prediction log, local or on S3, skipping (and
    naming) the files that cannot be read."""
    return _read(store, f"{model}/", TIME, start, end)


def read_feedback(store: "BlobStore", model: str, start: datetime, end: datetime) -> Window:
    """Feedback received in [start, end), each row joined with its prediction by the
    gateway that answered it (`<model>/feedback/`), skipping unreadable files likewise."""
    return _read(store, f"{model}/{FEEDBACK_FOLDER}/", LABELLED_AT, start, end)


def _read(store: "BlobStore", folder: str, column: str, start: datetime, end: datetime) -> Window:
    unreadable = unreadable_errors()
    frames: list[pd.DataFrame] = []
    skipped: list[SkippedFile] = []
    for day in window_days(start, end):
        for relative in store.list(f"{folder}date={day:%Y-%m-%d}"):
            if not relative.endswith(".parquet"):
                continue
            try:
                frames.append(_read_file(store, relative))
            except unreadable as error:
                skipped.append(SkippedFile(relative, error_reason(error)))
    if not frames:
        return Window(pd.DataFrame(), 0, tuple(skipped))
    frame = pd.concat(frames, ignore_index=True)
    mask = (frame[column] >= pd.Timestamp(start)) & (frame[column] < pd.Timestamp(end))
    return Window(frame[mask].reset_index(drop=True), len(frames), tuple(skipped))
