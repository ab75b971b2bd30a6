"""`lce sql`: ad-hoc SQL over the store, as the read-only role."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from lce.analysis.query import FORMATS, export, export_stream, run_query
from lce.cli.app import app, console, user_errors
from lce.cli.tables import print_relation
from lce.errors import LceError
from lce.output_paths import check_output


@app.command("sql", short_help="Run SQL over the unit store (DuckDB or PostgreSQL).")
@user_errors
def sql(
    query: str = typer.Argument(..., help="The SQL to run; '-' reads it from standard input."),
    engine: str = typer.Option("duckdb", "--engine", help="duckdb (Postgres attached, local files reachable) or "
                                                          "postgres (runs in Postgres, read-only transaction)."),
    fmt: str = typer.Option("table", "--format", help="table (terminal), csv, json (both to standard output "
                                                      "without --out) or parquet (needs --out)."),
    out: Path | None = typer.Option(None, "--out", help="File to write the result to (its suffix says the format "
                                                        "when --format is not given)."),
    reads: list[str] = typer.Option([], "--read", help="A local CSV, TSV, Parquet or JSON file the query sees as "
                                                        "a table: NAME=PATH, or PATH (named after the file: "
                                                        "families.csv is families); repeatable. lce reads it."),
    write: bool = typer.Option(False, "--write", help="Allow a query that writes."),
    max_rows: int = typer.Option(50, "--max-rows", help="Rows shown on the terminal."),
) -> None:
    """Run SQL over the unit store. Tables (probe, concept, model, run, unit, embedding, embedding_point;
    the tallies as unit_tally and run_concept) and views (unit_concept: one row per unit x concept pair,
    unit_label, model_concept_units, model_category_profile, model_concept_matrix)
    are reachable by name; in DuckDB, local CSV/Parquet/JSON files can be joined in (JOIN 'families.csv', or
    --read families.csv ... JOIN families).

    Example: lce sql "SELECT model, count(*) FILTER (WHERE interpretable) AS units FROM unit_label GROUP BY model"
    """
    if fmt not in FORMATS:
        raise LceError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}.")
    if fmt == "parquet" and out is None:
        raise LceError("--format parquet is binary and is not written to standard output: give a file with --out "
                       "FILE.")
    if out is not None and fmt == "table":
        fmt = {".csv": "csv", ".json": "json", ".parquet": "parquet"}.get(out.suffix.lower(), "")
        if not fmt:
            raise LceError(f"--out {out}: say which format with --format csv|json|parquet.")
    if out is not None:
        out = check_output(out, "--out")  # before the query runs: a bad path should cost nothing
    text = sys.stdin.read() if query == "-" else query
    relation = run_query(text, engine=engine, write=write, reads=reads)
    if out is not None:
        count = export(relation, fmt, out)
        console.print(f"{count:,} row(s) written to {out}")
    elif fmt == "table":
        print_relation(relation, max_rows)
    else:
        export_stream(relation, fmt, sys.stdout)  # every row, and nothing else: this output is for a program
