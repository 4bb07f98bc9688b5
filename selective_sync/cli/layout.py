"""Tables that stay readable at any terminal width (an 80-column SSH session, a pipe).

A table is printed as a table when it fits: the fixed columns at their widest cell, the
free-text columns (reasons, key lists, names) wrapping at a few characters. When it does
not fit it is printed stacked, one block of ``Column  value`` lines per row. Never is a
cell cut to "…" (Rich's default when a table is squeezed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .common import console

MIN_WRAP = 10
"""The narrowest a wrapping column may get before the table goes stacked."""


@dataclass(frozen=True)
class Column:
    name: str
    justify: Literal["left", "right"] = "left"
    wrap: bool = False
    """Free text that may wrap onto several lines (anything else stays on one line)."""


Cell = str | Text


def _text(cell: Cell) -> Text:
    # Plain strings print literally, never as markup (user and run names, reasons).
    return cell if isinstance(cell, Text) else Text(cell)


def table_width(
    columns: Sequence[Column], rows: Sequence[Sequence[Cell]], compact: bool = False
) -> int:
    """The narrowest the table can be printed without cutting a cell: Rich's default box
    takes one separator per column plus one, and one space of padding each side; the
    compact one a space between columns and one after each."""
    width = len(columns) * 2 if compact else len(columns) * 3 + 1
    for i, column in enumerate(columns):
        if column.wrap:
            width += MIN_WRAP
        else:
            cells = [_text(row[i]).cell_len for row in rows]
            width += max(len(column.name), *cells) if cells else len(column.name)
    return width


def print_rows(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    title: str | None = None,
    out: Console | None = None,
    compact: bool = False,
) -> None:
    """Print ``rows`` on ``out`` (default: stdout) as a table when it fits, else stacked.

    ``compact``: light borders (a rule under the headings only), for many columns."""
    out = out or console
    if table_width(columns, rows, compact) <= out.width:
        table = (
            Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0), title=title)
            if compact
            else Table(title=title, title_justify="left")
        )
        for column in columns:
            table.add_column(
                column.name, justify=column.justify, no_wrap=not column.wrap, overflow="fold"
            )
        for row in rows:
            table.add_row(*(_text(cell) for cell in row))
        out.print(table)
        return
    print_stacked(columns, rows, title, out)


def print_stacked(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    title: str | None = None,
    out: Console | None = None,
) -> None:
    """One block per row: each column's name, then its value (wrapping, never cut)."""
    out = out or console
    if title:
        out.print(Text(title, style="italic"))
    for row in rows:
        block = Table.grid(padding=(0, 2))
        block.add_column(style="bold", no_wrap=True)
        block.add_column(overflow="fold")
        for column, cell in zip(columns, row, strict=True):
            block.add_row(column.name, _text(cell))
        out.print()
        out.print(block)
