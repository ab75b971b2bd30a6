"""`lce sql`: ad-hoc SQL over the unit store, in DuckDB (Postgres attached) or in Postgres itself.

    relation = run_query("SELECT model, count(*) FROM unit_label WHERE interpretable GROUP BY model")
    export(relation, "csv", Path("counts.csv"))

DuckDB is the default engine: Postgres's tables and views are reachable by name and local CSV/Parquet files can
be joined in. `engine="postgres"` runs the query in Postgres (its dialect and functions such as
unit_label_at(0.08)) inside a READ ONLY transaction. A query that writes is refused unless `write=True`.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import psycopg
from psycopg.types.string import TextLoader
import pyarrow
from sqlalchemy.exc import DBAPIError

from lce.analysis.duck import duckdb_connection
from lce.db.connection import connect
from lce.errors import LceError

ENGINES = ("duckdb", "postgres")
FORMATS = ("table", "csv", "json", "parquet")
# DuckDB statement types that only read (SHOW, DESCRIBE, SUMMARIZE and PRAGMA parse as SELECT).
READING = {"SELECT", "EXPLAIN", "CALL", "PRAGMA"}


def run_query(query: str, engine: str = "duckdb", write: bool = False) -> duckdb.DuckDBPyRelation:
    """The result of `query` (its last statement) as a DuckDB relation, whichever engine ran it."""
    if not query.strip():
        raise LceError("The query is empty.")
    if engine == "duckdb":
        return _run_duckdb(query, write)
    if engine == "postgres":
        return _run_postgres(query, write)
    raise LceError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}.")


def _run_duckdb(query: str, write: bool) -> duckdb.DuckDBPyRelation:
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as error:
        raise LceError(f"DuckDB cannot parse the query: {_first_line(error)}") from None
    writing = sorted({s.type.name for s in statements if s.type.name not in READING})
    if writing and not write:
        raise LceError(
            f"The query writes ({', '.join(writing)}); lce sql is read-only unless you pass --write."
        )
    con = duckdb_connection(read_only=not write)
    try:
        for statement in statements[:-1]:
            con.execute(statement)
        last = statements[-1]
        if last.type.name == "SELECT":
            # Materialise once, so that counting, printing and writing do not each run the query again.
            con.execute(f"CREATE TEMP TABLE lce_result AS {last.query}")
            return con.table("lce_result")
        return con.sql(last.query) if last.type.name in READING else _executed(con, last)
    except duckdb.Error as error:
        raise LceError(f"DuckDB could not run the query: {_first_line(error)}") from None


def _executed(con: duckdb.DuckDBPyConnection, statement) -> duckdb.DuckDBPyRelation:
    con.execute(statement)
    try:
        rows = con.fetchall()
        columns = [column[0] for column in con.description or []]
    except duckdb.Error:
        rows, columns = [], []
    return _relation(columns or ["result"], rows or [("ok",)])


def _run_postgres(query: str, write: bool) -> duckdb.DuckDBPyRelation:
    engine = connect()
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        try:
            if not write:
                raw.execute("SET TRANSACTION READ ONLY")
            cursor = raw.cursor()
            for json_type in ("json", "jsonb"):  # as text: JSON values vary in shape from row to row
                cursor.adapters.register_loader(json_type, TextLoader)
            cursor.execute(query)
            columns = [column.name for column in cursor.description] if cursor.description else ["result"]
            rows = cursor.fetchall() if cursor.description else [(cursor.statusmessage,)]
            raw.commit() if write else raw.rollback()
        except psycopg.errors.ReadOnlySqlTransaction:
            raw.rollback()
            raise LceError("The query writes; lce sql is read-only unless you pass --write.") from None
        except (psycopg.Error, DBAPIError) as error:
            raw.rollback()
            raise LceError(f"PostgreSQL could not run the query: {_first_line(error)}") from None
    return _relation(columns, rows)


def _relation(columns: list[str], rows: list[tuple]) -> duckdb.DuckDBPyRelation:
    """Rows from Postgres as a DuckDB relation (through Arrow, which keeps their types), so that every engine
    shares the output code."""
    table = pyarrow.table({
        name: _column([row[index] for row in rows]) for index, name in enumerate(_unique(columns))
    })
    return duckdb.connect().from_arrow(table)


def _column(values: list) -> pyarrow.Array:
    try:
        return pyarrow.array(values)
    except (pyarrow.ArrowException, OverflowError):  # a type Arrow cannot hold (ranges, mixed values): as text
        return pyarrow.array([None if value is None else str(value) for value in values])


def _unique(columns: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for name in columns:
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return names


def export(relation: duckdb.DuckDBPyRelation, fmt: str, out: Path) -> int:
    """Write the result to `out` as csv, json (an array of objects) or parquet; returns the row count."""
    out.parent.mkdir(parents=True, exist_ok=True)
    count = relation.count("*").fetchone()[0]
    if fmt == "csv":
        relation.write_csv(str(out), header=True)
    elif fmt == "parquet":
        relation.write_parquet(str(out))
    elif fmt == "json":
        rows = [dict(zip(relation.columns, row)) for row in relation.fetchall()]
        out.write_text(json.dumps(rows, indent=1, default=str) + "\n")
    else:
        raise LceError(f"--format must be one of {', '.join(FORMATS[1:])} with --out, not {fmt!r}.")
    return count


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
