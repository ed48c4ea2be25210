"""Markdown tables whose cells show exactly the text put in them.

Prefect's UI renders markdown artifacts, and also each cell of a table artifact as a
markdown document of its own: a threshold ">= 0.9" became a blockquote there, a "-" an
empty bullet list, and a `|` in a reason would split a markdown table's row. Text is
escaped by `cell`; text that is markdown on purpose (a link, emphasis) is wrapped in
`Markdown` and kept as written.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Inline markup anywhere in a cell (emphasis, code, links, HTML, strike-through), the table
# column separator, and the backslash that escapes them. An underscore inside a word
# (`recall_class_9`) is no emphasis in CommonMark, so it is left as written: table data read
# through the API keeps its names.
_INLINE = re.compile(r"([\\`*\[\]<>|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
# What opens a block at the start of a cell: a heading, a list item (or, alone, a thematic
# break), and an ordered list's "1." or "1)" when a space or the end follows.
_BLOCK_START = re.compile(r"^([#+\-=])")
_ORDERED_START = re.compile(r"^(\d{1,9})([.)])(?=\s|$)")


class Markdown(str):
    """Text that is already markdown (a link, emphasis, code): put into a table as it is."""

    __slots__ = ()


def cell(value: object) -> str:
    """`value` as one line of markdown that renders as its own text."""
    if isinstance(value, Markdown):
        return " ".join(value.split("\n")).strip()
    text = " ".join(str(value).split())  # one line; leading spaces would make a code block
    text = _INLINE.sub(r"\\\1", text)
    text = _BLOCK_START.sub(r"\\\1", text)
    return _ORDERED_START.sub(r"\1\\\2", text)


def link(text: str, url: str) -> Markdown:
    """A link whose text is escaped (a model name with `_` stays as written)."""
    return Markdown(f"[{cell(text)}]({url})")


def image(alt: str, url: str) -> Markdown:
    """An image shown in place (a browser fetches `url`); `alt` is read where it cannot be."""
    return Markdown(f"![{cell(alt)}]({url})")


def code(text: str) -> Markdown:
    """Inline code; a backtick inside is replaced, as code spans cannot escape it."""
    inside = text.replace("`", "'").replace("|", "/")
    return Markdown(f"`{inside}`")


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; every cell through `cell`."""
    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class PlotLinks:
    """A plot stored with an MLflow run: the image itself as the tracking server serves it
    (what a Prefect artifact embeds) and the run's page with it open."""

    image_url: str
    page_url: str

    def markdown(self, alt: str) -> str:
        """The image shown in place, then a link to its run in MLflow."""
        return f"{image(alt, self.image_url)}\n\n{link('The plot in MLflow', self.page_url)}"
