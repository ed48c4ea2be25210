"""The CLI's live display on stderr: a status line (the step Prefect runs, its latest log
line) above one progress bar per piece of work the core tracks (chassis.progress).

One rich `Live` draws both, so the status spinner and the bars never fight over the
terminal. It never writes to stdout (`redirect_stdout=False`: a command's result printed
meanwhile stays on stdout), and disappears when the work ends (the summary follows).
"""

from rich.console import Console, Group
from rich.live import Live
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
            refresh_per_second=8,
            redirect_stdout=False,
        )

    def status(self, text: str) -> None:
        self.spinner.update(text=text)

    def start(self, description: str, total: float | None, unit: str, rate: bool) -> Tracker:
        return _BarTracker(self.bars, description, total, unit, rate)

    def __enter__(self) -> "LiveDisplay":
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()
