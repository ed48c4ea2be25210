"""What every plot Chassis writes shares: a figure drawn off-screen, saved as PNG.

Figures are made as `matplotlib.figure.Figure` objects on an Agg canvas, never through
pyplot: pyplot keeps every open figure in a process-wide registry (a flow run that drew one
per check would hold them all) and picks a GUI backend where a display exists. The builders
return the figure, so tests inspect its axes and lines, not pixels; `save_png` writes it.
"""

import math
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter, FuncFormatter

# Colours by outcome, one meaning on every plot: judged good, held back, failed, no verdict.
OUTCOME_COLORS = {
    "pass": "#2ca02c",
    "no-drift": "#2ca02c",
    "degraded": "#ff7f0e",
    "fail": "#d62728",
    "drift": "#d62728",
    "data-quality-failure": "#7f7f7f",
    "inconclusive": "#7f7f7f",
    "paused": "#7f7f7f",
}
STABLE_COLOR = "#1f77b4"
CANDIDATE_COLOR = "#ff7f0e"
LIMIT_COLOR = "#d62728"
# A log axis spanning at most this many decades labels its minor ticks too.
NARROW_DECADES = 1.2
# Pixels per inch when saved: a 12 x 8 in figure is a 1200 x 800 image, readable on a page.
DPI = 100


def new_figure(width: float, height: float) -> Figure:
    """An empty figure of `width` x `height` inches on an off-screen (Agg) canvas."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plain_log_axis(axes: Axes) -> None:
    """A log-scale y axis whose ticks read as numbers (40, 0.5), not powers (4 x 10^1)."""
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(FuncFormatter(_plain_number))
    # Minor ticks (2, 3, ... 9 x 10^n) are labelled only on an axis of about a decade or
    # less; over several decades their labels overlap.
    axes.yaxis.set_minor_formatter(_MinorWhenNarrow())


class _MinorWhenNarrow(Formatter):
    """Labels a log axis's minor ticks as plain numbers when the axis spans about a decade
    or less (its only labels otherwise), else leaves them blank."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        if self.axis is None:
            return ""
        low, high = self.axis.get_view_interval()
        if low <= 0 or math.log10(high / low) > NARROW_DECADES:
            return ""
        return f"{x:g}"


def _plain_number(value: float, _position: int | None) -> str:
    return f"{value:g}"


def outcome_color(outcome: str) -> str:
    return OUTCOME_COLORS.get(outcome, "#7f7f7f")


def save_png(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI)
    return path
