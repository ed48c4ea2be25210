"""The CLI's live display on stderr: a status line (the step Prefect runs now, and its
latest log line) above one progress bar per piece of work the core tracks (chassis.progress).

One rich `Live` draws both, so the status spinner and the bars never fight over the
terminal. It never writes to stdout (`redirect_stdout=False`: a command's result printed
meanwhile stays on stdout), and disappears when the work ends (the summary follows).
Prefect's console log handler writes to the stderr it found when logging was configured,
past the display, which then redraws over half-written lines: while the display is up,
that handler's lines go through the display's console instead, above the bars.
"""

import io
import logging
import sys
from typing import IO, cast

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.spinner import Spinner
from rich.text import Text

from chassis.progress import Tracker


class CountColumn(ProgressColumn):
    """`12/40 epochs`, or `1,234 requests` when the total is unknown."""

    def render(self, task: Task) -> Text:
        unit = str(task.fields.get("unit", ""))
        done = f"{task.completed:,.0f}"
        count = done if task.total is None else f"{done}/{task.total:,.0f}"
        return Text(f"{count} {unit}".rstrip(), style="progress.download")


class RateColumn(ProgressColumn):
    """Units per second, only for work that asked for it (requests)."""

    def render(self, task: Task) -> Text:
        if not task.fields.get("rate"):
            return Text("")
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.1f}/s", style="progress.data.speed")


class _BarTracker:
    def __init__(
        self, bars: Progress, description: str, total: float | None, unit: str, rate: bool
    ) -> None:
        self.bars = bars
        self.task = bars.add_task(description, total=total, unit=unit, rate=rate, detail="")
        self.closed = False

    def advance(self, amount: float = 1, detail: str | None = None) -> None:
        if detail is None:
            self.bars.advance(self.task, amount)
        else:
            self.bars.update(self.task, advance=amount, detail=detail)

    def update(
        self,
        *,
        completed: float | None = None,
        total: float | None = None,
        detail: str | None = None,
    ) -> None:
        if detail is None:
            self.bars.update(self.task, completed=completed, total=total)
        else:
            self.bars.update(self.task, completed=completed, total=total, detail=detail)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.bars.remove_task(self.task)


class LiveDisplay:
    """A status line and the bars of the trackers open now (a `chassis.progress.Reporter`)."""

    def __init__(self, console: Console, status: str = "") -> None:
        self.spinner = Spinner("dots", text=status, style="cyan")
        self.bars = Progress(
            TextColumn("  [bold]{task.description}"),
            BarColumn(bar_width=28),
            CountColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console,
        )
        self.live = Live(
            Group(self.spinner, self.bars),
            console=console,
            transient=True,
            refresh_per_second=4,  # ~1.5 % of a core on this machine; 8 Hz cost twice that
            redirect_stdout=False,
        )

    def status(self, text: str) -> None:
        self.spinner.update(text=text)

    def step(self, name: str) -> None:
        self.status(f"[bold cyan]{escape(name)}[/]")

    def start(self, description: str, total: float | None, unit: str, rate: bool) -> Tracker:
        return _BarTracker(self.bars, description, total, unit, rate)

    def __enter__(self) -> "LiveDisplay":
        self.live.start()
        self.rerouted = _route_log_consoles(self.live.console)
        return self

    def __exit__(self, *exc: object) -> None:
        for handler_console, file in self.rerouted:
            handler_console.file = file
        self.live.stop()


class _ThroughDisplay(io.TextIOBase):
    """A log handler console's file that prints each whole line through the display's
    console (rich's own FileProxy would not do: a Console unwraps it back to the file)."""

    def __init__(self, display: Console) -> None:
        self.display = display
        self.pending = ""

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        if lines:
            self.display.print(Text("\n").join(Text.from_ansi(line) for line in lines))
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.display.print(Text.from_ansi(self.pending))
            self.pending = ""

    def isatty(self) -> bool:
        return True


def _route_log_consoles(display: Console) -> list[tuple[Console, IO[str]]]:
    """Point every log handler that prints to stderr through a rich console (Prefect's)
    at `display`; returns each such console and the file to give back."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    rerouted: list[tuple[Console, IO[str]]] = []
    for logger in loggers:
        for handler in logger.handlers:
            handler_console = getattr(handler, "console", None)
            if not isinstance(handler_console, Console) or handler_console is display:
                continue
            file = handler_console.file
            if file in (sys.stderr, sys.__stderr__) and all(
                c is not handler_console for c, _ in rerouted
            ):
                handler_console.file = cast(IO[str], _ThroughDisplay(display))
                rerouted.append((handler_console, file))
    return rerouted
