"""Tables on the terminal: query results and listings, shared by the commands that print them."""

from __future__ import annotations

from rich.table import Table

from lce.cli.app import console


def print_relation(relation, max_rows: int) -> None:
    """A DuckDB relation as a table, its first `max_rows` rows, then the count."""
    total = relation.count("*").fetchone()[0]
    shown_table = table(relation.columns)
    for row in relation.limit(max_rows).fetchall():
        shown_table.add_row(*(cell(value) for value in row))
    console.print(shown_table)
    shown = min(total, max_rows)
    console.print(f"{total:,} row(s)" + (f", first {shown} shown (--max-rows)" if total > shown else ""))


def table(columns: list[str]) -> Table:
    """An empty table with these columns."""
    # Fold long values rather than cutting them: a truncated model name or label is no answer.
    folded = Table(header_style="bold")
    for column in columns:
        folded.add_column(column, overflow="fold")
    return folded


def cell(value) -> str:
    """A value as rich markup: NULL dimmed, floats to 6 significant digits."""
    if value is None:
        return "[dim]NULL[/]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("[", r"\[")
