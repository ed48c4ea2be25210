"""The gateway's log: named events with fields, one line each, as text or JSON lines.

Every line is an event with a stable name (the constants below; README.md "Gateway logs"
lists each and its fields) and flat fields, so a log pipeline can select on `event` and
read fields without parsing prose. Text (the default) is logfmt: `key=value` pairs, a value
quoted (JSON string escapes) only when it holds a space, a quote, `=` or is empty, lists
joined by commas, fields that do not apply left out. JSON lines carry the same keys, with
`null` for what does not apply, so every event has the same keys every time.

Records logged without an event (uvicorn's own lines, another library's warning) are the
event `log` with `logger` and `message`: one style for everything the process writes.
The standard logging module carries it all; `configure` installs the one handler.
"""

import functools
import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Literal, TextIO, cast

LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# The loggers `--log-level` sets: the gateway's own and uvicorn's. Other libraries keep
# warnings and above (their info lines are not the gateway's story).
GATEWAY_LOGGERS = ("chassis", "uvicorn")

# ---- event names (stable: renaming one is a breaking change for whoever reads the log) ----
GATEWAY_STARTED = "gateway.started"
GATEWAY_READINESS = "gateway.readiness"
GATEWAY_WAITING = "gateway.waiting"
GATEWAY_FATAL = "gateway.fatal"
MODEL_SERVING = "model.serving"
MODEL_STATE = "model.state"
MODEL_DEGRADED = "model.degraded"
SPLIT_CHANGED = "split.changed"
SPLIT_NOT_APPLIED = "split.not_applied"
RECORD_UNREADABLE = "record.unreadable"
ORPHAN_NOT_ENDED = "orphan.not_ended"
VERSION_REFUSED = "version.refused"
VERSION_LOAD_FAILED = "version.load_failed"
CHAMPION_REFUSED = "champion.refused"
CHAMPION_NOT_FOLLOWED = "champion.not_followed"
SANITIZATION_CHANGED = "sanitization.changed"
SANITIZATION_NOT_APPLIED = "sanitization.not_applied"
PREDICTION_LOG_NOT_FLUSHED = "prediction_log.not_flushed"
DRAIN_STARTED = "drain.started"
DRAIN_ENDED = "drain.ended"
REQUEST = "request"
LOG = "log"  # a record logged without an event name

# Where an event's name and fields ride on a LogRecord (`extra`), away from its own keys.
_EVENT = "chassis_event"
_FIELDS = "chassis_fields"
_HANDLER = "chassis_gateway_handler"  # marks the handler `configure` installed

Value = str | int | float | bool | None | list[str] | list[int]


def event(logger: logging.Logger, level: int, name: str, **fields: Value) -> None:
    """Log the event `name` with `fields` (None: does not apply) at `level`."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={_EVENT: name, _FIELDS: fields})


def record_fields(record: logging.LogRecord) -> dict[str, object]:
    """A record as the ordered keys of its line: ts, level, event, then the event's fields
    (or, for a record without an event, logger and message); a traceback last."""
    fields: dict[str, object] = {
        "ts": _timestamp(record.created),
        "level": record.levelname.lower(),
    }
    name = cast(str | None, getattr(record, _EVENT, None))
    if name is None:
        fields["event"] = LOG
        fields["logger"] = record.name
        fields["message"] = record.getMessage()
    else:
        fields["event"] = name
        fields.update(cast(Mapping[str, object], getattr(record, _FIELDS, {})))
    if record.exc_info:
        fields["traceback"] = logging.Formatter().formatException(record.exc_info)
    return fields


def _timestamp(created: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-12-02T22:57:47.374Z."""
    seconds = int(created)
    return f"{_second(seconds)}.{int((created - seconds) * 1000):03d}Z"


@functools.lru_cache(maxsize=4)
def _second(seconds: int) -> str:
    # Formatted once per second, not per line (a busy access log writes thousands).
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


class TextFormatter(logging.Formatter):
    """logfmt: `ts=... level=info event=split.changed model=m generation=3 ...`."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(
            f"{key}={_text(value)}"
            for key, value in record_fields(record).items()
            if value is not None
        )


class JsonFormatter(logging.Formatter):
    """One JSON object a line, the same keys as the text form (null: does not apply)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(record_fields(record), separators=(",", ":"), default=str)


# A value written bare: printable ASCII but for space, `"`, `=` and `\\`; anything else is
# quoted. Checked with one regex: the access log formats a line per request.
_BARE = re.compile(r"[!#-<>-\[\]-~]+")


def _text(value: object) -> str:
    kind = type(value)
    if kind is str:
        text = cast(str, value)
    elif kind is bool:
        return "true" if value else "false"
    elif kind is int:
        return str(value)
    elif kind is float:
        return f"{value:g}"
    elif isinstance(value, list | tuple):
        text = ",".join(_text(item) for item in cast(Iterable[object], value))
    else:
        text = str(value)
    if _BARE.fullmatch(text):
        return text
    return json.dumps(text)  # quoted, with JSON's escapes: still one line


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure(log_format: LogFormat, level: LogLevel, stream: TextIO | None = None) -> None:
    """Send every log record of the process through one handler in `log_format`, on
    stderr: the gateway's and uvicorn's loggers at `level`, the rest at warning and above.
    Called again, it replaces its handler (a second call does not double every line)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(log_format))
    setattr(handler, _HANDLER, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    # No line shows a record's thread or process names: not looked up for every record
    # (the logging documentation's own optimisation; the access log makes one a request).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for name in GATEWAY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(LEVELS[level])
        # Through the root's one handler: none of their own, or each line would be written
        # twice, once in another style.
        logger.handlers.clear()
        logger.propagate = True
