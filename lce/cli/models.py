"""`lce models`: the stored models and their runs."""

from __future__ import annotations

import sys

import typer

from lce.cli.app import app, console, user_errors
from lce.cli.tables import cell, table
from lce.errors import LceError

MODELS_FORMATS = ("table", "csv", "json")


@app.command("models", short_help="List the stored models and their runs.")
@user_errors
def models(
    fmt: str = typer.Option("table", "--format", help="table (terminal), csv or json (to standard output)."),
) -> None:
    """List the models with their runs: layer, probe, variant, source, units, interpretable units, and beside
    them the trusted units (interpretable, stable, interval above chance, beating random when a control serves
    the run; NULL where unknown, as for imports without intervals), the interpretable units that also beat random
    (NULL when no control serves the run) and the control's run id (lce control).

    Example: lce models; lce models --format csv > models.csv
    """
    from sqlalchemy import text

    from lce.analysis.query import export_stream, rows_relation
    from lce.db.connection import connect_reader
    from lce.resources import read_sql

    if fmt not in MODELS_FORMATS:
        raise LceError(f"--format must be one of {', '.join(MODELS_FORMATS)}, not {fmt!r}.")
    with connect_reader(required=False).connect() as conn:
        result = conn.execute(text(read_sql("queries/models")))
        columns, rows = list(result.keys()), result.fetchall()
    if fmt != "table":
        export_stream(rows_relation(columns, [tuple(row) for row in rows]), fmt, sys.stdout)
        return
    if not rows:
        console.print("No models yet: import results with lce import ... first.")
        return
    listing = table(columns)
    for row in rows:
        listing.add_row(*(cell(value) for value in row))
    console.print(listing)
