"""Tables on the terminal: query results and listings, shared by the commands that print them."""

from __future__ import annotations

import sys

from rich.table import Table
from sqlalchemy import text

from lce.analysis.query import export_stream, rows_relation
from lce.cli.app import console, printable
from lce.db.connection import connect_reader
from lce.errors import LceError
from lce.resources import read_sql


def print_relation(relation, max_rows: int) -> None:
    """A DuckDB relation as a table, its first `max_rows` rows, then the count."""
    total = relation.count("*").fetchone()[0]
    shown_table = table(relation.columns)
    for row in relation.limit(max_rows).fetchall():
        shown_table.add_row(*(cell(value) for value in row))
    console.print(shown_table)
    shown = min(total, max_rows)
    console.print(f"{total:,} row(s)" + (f", first {shown} shown (--max-rows)" if total > shown else ""))


def print_listing(query: str, fmt: str, formats: tuple[str, ...], empty: str) -> None:
    """The rows of sql/`query` read as the read-only login: a table on the terminal (`empty` when there are none),
    or csv / json to standard output; `fmt` must be one of `formats` (lce models, lce control list)."""
    if fmt not in formats:
        raise LceError(f"--format must be one of {', '.join(formats)}, not {fmt!r}.")
    with connect_reader(required=False).connect() as conn:  # the reader: a listing only reads
        result = conn.execute(text(read_sql(query)))
        columns, rows = list(result.keys()), result.fetchall()
    if fmt != "table":
        export_stream(rows_relation(columns, [tuple(row) for row in rows]), fmt, sys.stdout)
        return
    if not rows:
        console.print(empty)
        return
    listing = table(columns)
    for row in rows:
        listing.add_row(*(cell(value) for value in row))
    console.print(listing)


def table(columns: list[str]) -> Table:
    """An empty table with these columns."""
    # Fold long values rather than cutting them: a truncated model name or label is no answer.
    folded = Table(header_style="bold")
    for column in columns:
        folded.add_column(printable(str(column)), overflow="fold")
    return folded


def cell(value) -> str:
    """A value as rich markup: NULL dimmed, floats to 6 significant digits."""
    if value is None:
        return "[dim]NULL[/]"
    if isinstance(value, float):
        return f"{value:.6g}"
    # a stored name such as \[/x] or ESC ]0; (anyone who can write runs chose it) is shown as it is, never read as
    # markup (a link, a style, a closing tag that fails) nor sent to the terminal
    return printable(str(value))
