"""Progress of long work (epochs, candidates, measurements, requests, rollout samples), apart
from how it is shown.

Core code reports through `track(...)` and never asks who listens. What happens depends on
what the entry point installed:

- nothing (a library caller, a test): a no-op tracker; an `advance` costs one method call.
- the CLI on a terminal: a live display on stderr (`install`; chassis_cli/progress_display.py
  draws it with rich). Installed process-wide, so work on other threads (the traffic
  replay's workers, a rollout's background traffic) shows in the same display.
- a Prefect task with no display (a run started from the UI, a worker, a piped CLI): plain
  lines through the run logger (`log_fallback`), at most one per 10 % of the total or per
  10 s, never more than one a second, so the Prefect UI's log shows progress without a flood.

One switch for all of it: `CHASSIS_PROGRESS` = `auto` (default: the display when stderr is a
terminal), `on` or `off` (no display and no progress lines). `enabled()` says whether a
display is drawn; commands with machine-readable output set the variable to `off`.
"""

import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Generator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal, Protocol, TextIO

from chassis.errors import SettingsError

ENVIRONMENT_VARIABLE = "CHASSIS_PROGRESS"
Mode = Literal["auto", "on", "off"]
MODES: tuple[Mode, ...] = ("auto", "on", "off")

Log = logging.Logger | logging.LoggerAdapter[logging.Logger]


class Tracker(Protocol):
    """One piece of long work: `advance` as it goes (from any thread), `detail` says what
    it is at ("candidate pruned", "val accuracy 0.95")."""

    def advance(self, amount: float = 1, detail: str | None = None) -> None: ...

    def update(
        self,
        *,
        completed: float | None = None,
        total: float | None = None,
        detail: str | None = None,
    ) -> None: ...

    def close(self) -> None: ...


class Reporter(Protocol):
    """Where trackers report: the rich display, log lines, or nowhere. `step` names the
    step (a Prefect task run) that starts now."""

    def start(self, description: str, total: float | None, unit: str, rate: bool) -> Tracker: ...

    def step(self, name: str) -> None: ...


def mode() -> Mode:
    """`CHASSIS_PROGRESS`, checked: a typo is an error naming the variable, not a silent auto."""
    value = os.environ.get(ENVIRONMENT_VARIABLE, "auto").strip().lower() or "auto"
    for known in MODES:
        if value == known:
            return known
    raise SettingsError(
        f"{ENVIRONMENT_VARIABLE} must be one of {', '.join(MODES)}, "
        f"got {os.environ[ENVIRONMENT_VARIABLE]!r}"
    )


def enabled(stream: TextIO | None = None) -> bool:
    """Whether a live display is drawn: `on`, or `auto` and `stream` (stderr) is a terminal.
    The display only ever goes to stderr, so stdout stays the command's result."""
    chosen = mode()
    if chosen != "auto":
        return chosen == "on"
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


class _NullTracker:
    def advance(self, amount: float = 1, detail: str | None = None) -> None:
        pass

    def update(
        self,
        *,
        completed: float | None = None,
        total: float | None = None,
        detail: str | None = None,
    ) -> None:
        pass

    def close(self) -> None:
        pass


_NULL_TRACKER = _NullTracker()


class NullReporter:
    """Nobody listens: every tracker is the same do-nothing object."""

    def start(self, description: str, total: float | None, unit: str, rate: bool) -> Tracker:
        return _NULL_TRACKER

    def step(self, name: str) -> None:
        pass


NULL_REPORTER = NullReporter()

# The display the CLI installed, process-wide (threads share it); a run's log fallback,
# per context (each Prefect task run has its own logger).
_display_lock = threading.Lock()
_display: Reporter | None = None
_fallback: ContextVar[Reporter | None] = ContextVar("chassis_progress_fallback", default=None)


@contextmanager
def install(reporter: Reporter) -> Generator[None]:
    """Make `reporter` the display of every tracker in this process while the block runs."""
    global _display
    with _display_lock:
        previous, _display = _display, reporter
    try:
        yield
    finally:
        with _display_lock:
            _display = previous


def current() -> Reporter:
    """The installed display, else this context's log fallback, else nobody."""
    display = _display
    if display is not None:
        return display
    return _fallback.get() or NULL_REPORTER


def step(name: str) -> None:
    """Say that the step `name` starts (the CLI's status line shows it)."""
    current().step(name)


@contextmanager
def track(
    description: str, total: float | None = None, unit: str = "", *, rate: bool = False
) -> Generator[Tracker]:
    """A tracker for the block: `total` units of work (None: unknown, a count only);
    `rate` shows units per second (requests)."""
    tracker = current().start(description, total, unit, rate)
    try:
        yield tracker
    finally:
        tracker.close()


@contextmanager
def log_fallback(
    log: Log, every_seconds: float = 10.0, clock: Callable[[], float] = time.monotonic
) -> Generator[None]:
    """Inside the block, with no display installed, trackers write plain progress lines to
    `log` (a Prefect run logger: they reach the run's log in the UI), paced as
    `LogReporter` says. Nothing with `CHASSIS_PROGRESS=off`."""
    if mode() == "off":
        yield
        return
    token = _fallback.set(LogReporter(log.info, every_seconds=every_seconds, clock=clock))
    try:
        yield
    finally:
        _fallback.reset(token)


class LogReporter:
    """Progress as occasional plain lines: when the work passes another `every_fraction` of
    its total or `every_seconds` since its last line, but at most one line per `min_gap`
    seconds, and one last line when it ends (if it ran `min_gap` or logged before)."""

    def __init__(
        self,
        write: Callable[[str], object],
        every_seconds: float = 10.0,
        every_fraction: float = 0.1,
        min_gap: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.write = write
        self.every_seconds = every_seconds
        self.every_fraction = every_fraction
        self.min_gap = min_gap
        self.clock = clock

    def start(self, description: str, total: float | None, unit: str, rate: bool) -> Tracker:
        return _LogTracker(self, description, total, unit, rate)

    def step(self, name: str) -> None:
        pass  # Prefect's log lines carry the task run's name already


class _LogTracker:
    def __init__(
        self, pacing: LogReporter, description: str, total: float | None, unit: str, rate: bool
    ) -> None:
        self.pacing = pacing
        self.description = description
        self.total = total
        self.unit = unit
        self.rate = rate
        self.completed = 0.0
        self.detail: str | None = None
        self.started = self.last_line = pacing.clock()
        self.last_step = 0
        self.lines = 0
        self.closed = False
        self.lock = threading.Lock()

    def advance(self, amount: float = 1, detail: str | None = None) -> None:
        with self.lock:
            self.completed += amount
            if detail is not None:
                self.detail = detail
            self._maybe_write()

    def update(
        self,
        *,
        completed: float | None = None,
        total: float | None = None,
        detail: str | None = None,
    ) -> None:
        with self.lock:
            if completed is not None:
                self.completed = completed
            if total is not None:
                self.total = total
            if detail is not None:
                self.detail = detail
            self._maybe_write()

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            now = self.pacing.clock()
            if self.lines or now - self.started >= self.pacing.min_gap:
                self._write(now, "done in ")

    def _step(self) -> int:
        if not self.total or self.total <= 0:
            return 0
        return math.floor(self.completed / self.total / self.pacing.every_fraction + 1e-9)

    def _maybe_write(self) -> None:
        now = self.pacing.clock()
        since = now - self.last_line
        if since < self.pacing.min_gap:
            return
        step = self._step()
        # The end is said once, by `close` (with the time it took).
        unfinished = not self.total or self.completed < self.total
        if unfinished and (step > self.last_step or since >= self.pacing.every_seconds):
            self.last_step = step
            self._write(now, "")

    def _write(self, now: float, prefix: str) -> None:
        elapsed = now - self.started
        count = f"{self.completed:g}" + (f"/{self.total:g}" if self.total else "")
        parts = [f"{count} {self.unit}".strip()]
        if self.total:
            parts[0] += f" ({min(self.completed / self.total, 1.0):.0%})"
        if self.rate and elapsed > 0:
            parts.append(f"{self.completed / elapsed:.1f}/s")
        parts.append(f"{prefix}{elapsed:.1f} s")
        if self.detail:
            parts.append(self.detail)
        self.pacing.write(f"{self.description}: {', '.join(parts)}")
        self.lines += 1
        self.last_line = now
