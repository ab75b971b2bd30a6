"""`lce sql`: ad-hoc SQL over the unit store, in DuckDB (Postgres attached) or in Postgres itself.

    relation = run_query("SELECT model, count(*) FROM unit_label WHERE interpretable GROUP BY model")
    export(relation, "csv", Path("counts.csv"))  # or export_stream(relation, "csv", sys.stdout): the same text

DuckDB is the default engine: Postgres's tables and views are reachable by name and local CSV/Parquet/JSON files
can be joined in (`JOIN 'families.csv'`, or `reads=["families=families.csv"]`). `engine="postgres"` runs the
query in Postgres (its dialect and functions such as unit_label_at(0.08)), one statement, through the extended
protocol.

Whatever its text, a query without `write=True` cannot write: both engines log in as the read-only role
(lce/db/roles.py), which may only SELECT, inside READ ONLY transactions. DuckDB's session is locked (duck.py: no
file, no extension, no setting) and parses the query itself, and only reading statements run (reading.py); the
local files a query joins are read by lce (local_files.py) and handed over as tables, and the result leaves as
Arrow, written to files by lce on a connection of its own. `write=True` logs in as the owner, unlocked.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Sequence, TextIO

import duckdb
import psycopg
from psycopg.types.string import TextLoader
import pyarrow

from lce.analysis.duck import duckdb_connection
from lce.analysis.local_files import BATCH_ROWS, hold, memory_budget, read_option, read_table
from lce.analysis.reading import check_reading
from lce.db.connection import connect, connect_reader, hide_passwords, libpq_dsn
from lce.errors import LceError, first_line
from lce.resources import read_sql

ENGINES = ("duckdb", "postgres")
FORMATS = ("table", "csv", "json", "parquet")
# DuckDB statement types that return rows (SHOW, DESCRIBE, SUMMARIZE and the reading PRAGMAs parse as SELECT);
# without --write, lce/analysis/reading.py decides what runs.
READING = {"SELECT", "EXPLAIN", "CALL", "PRAGMA"}


def run_query(query: str, engine: str = "duckdb", write: bool = False,
              reads: Sequence[str] = ()) -> duckdb.DuckDBPyRelation:
    """The result of `query` (its last statement) as a DuckDB relation, whichever engine ran it; `reads` are
    --read options (NAME=PATH), local files the query sees as tables (DuckDB only)."""
    if not query.strip():
        raise LceError("The query is empty.")
    if engine == "duckdb":
        return _run_duckdb(query, write, reads)
    if engine == "postgres":
        if reads:
            raise LceError("--read is for the duckdb engine: PostgreSQL cannot see local files.")
        return _run_postgres(query, write)
    raise LceError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}.")


def _run_duckdb(query: str, write: bool, reads: Sequence[str]) -> duckdb.DuckDBPyRelation:
    named = [read_option(option) for option in reads]  # before connecting: a bad option should cost nothing
    # Without --write the session is locked (duck.py) before it parses anything: the parse runs there, never on
    # duckdb's default connection, where a parse-time PRAGMA could still install or read.
    con = duckdb_connection(read_only=not write, require_reader=not write)
    try:
        try:
            statements = con.extract_statements(query)
        except duckdb.Error as error:
            raise LceError(f"DuckDB cannot parse the query: {_duckdb_reason(error)}") from None
        if not statements:
            raise LceError("The query holds no statement.")
        files = [] if write else check_reading(con, statements)
        budget = _hand_over(con, named, files)
        for statement in statements[:-1]:
            con.execute(statement)
        last = statements[-1]
        if write and last.type.name not in READING:
            return _executed(con, last)
        # The result leaves the session as Arrow (materialised once, so that counting, printing and writing do
        # not each run the query again), within what the memory budget has left; lce writes files from it, on a
        # connection of its own.
        rows = hold(con.execute(last).to_arrow_reader(BATCH_ROWS), "The query's result", budget,
                    "aggregate, filter or LIMIT it in the query")
        return result_relation(rows)
    except duckdb.Error as error:
        raise LceError(f"DuckDB could not run the query: {_duckdb_reason(error)}") from None
    finally:
        con.close()


def _hand_over(con: duckdb.DuckDBPyConnection, named: list[tuple[str, Path]], files: list[str]) -> int:
    """The --read files under their names, and the files the query names as tables under those very names
    (DuckDB's binder finds a table so named before it would look for the file), read by lce, within one memory
    budget for them all (local_files.memory_budget); returns what is left of it, for the result."""
    taken: dict[str, str] = {}
    for name in [name for name, _ in named] + files:
        # DuckDB's names ignore case: a second table of one name would replace the first, and both would read it
        if name.lower() in taken:
            raise LceError(f"The tables {taken[name.lower()]!r} and {name!r} are one name to DuckDB (its names "
                           "ignore case), so one file would be read for both: give each its own name with --read "
                           "NAME=PATH.")
        taken[name.lower()] = name
    budget = memory_budget()
    for name, path in named:
        if con.execute(read_sql("queries/store_tables_named"), [name]).fetchone()[0]:
            raise LceError(f"--read {name}={path}: the store has a table or view named {name}; choose another name.")
        table = read_table(path, f"--read {name}={path}", budget)
        budget -= table.nbytes
        con.register(name, table)
    for file in files:
        table = read_table(Path(file), f"The query's table '{file}'", budget)
        budget -= table.nbytes
        con.register(file, table)
    return budget


def _duckdb_reason(error: duckdb.Error) -> str:
    """DuckDB's first line; or, for a query that PostgreSQL refused through postgres_scanner (whose message quotes
    the SQL, over several lines, before PostgreSQL's ERROR), PostgreSQL's own reason; or, where the lock stopped
    it, what lce sql lets a query do instead."""
    refused = re.search(r"ERROR:\s+(.+)", str(error))
    if refused and str(error).startswith(("Failed to execute query", "Failed to prepare COPY")):
        return f"PostgreSQL refused it: {refused.group(1).strip()}"
    if "disabled by configuration" in str(error):
        return (f"{first_line(error)}. lce sql reads no file itself: name a CSV, Parquet or JSON file as a table "
                "(JOIN 'families.csv' ...) or pass it with --read NAME=PATH.")
    return first_line(error)


def _executed(con: duckdb.DuckDBPyConnection, statement) -> duckdb.DuckDBPyRelation:
    con.execute(statement)
    try:
        rows = con.fetchall()
        columns = [column[0] for column in con.description or []]
    except duckdb.Error:
        rows, columns = [], []
    return rows_relation(columns or ["result"], rows or [("ok",)])


def _run_postgres(query: str, write: bool) -> duckdb.DuckDBPyRelation:
    engine = connect() if write else connect_reader(required=True)
    dsn = libpq_dsn(engine.url.render_as_string(hide_password=False))
    try:
        conn = psycopg.connect(dsn)
    except psycopg.OperationalError as error:
        raise LceError(f"Cannot reach the database: {hide_passwords(first_line(error))}") from None
    with conn:
        if not write:
            conn.read_only = True  # psycopg opens the query's transaction with BEGIN READ ONLY
        try:
            cursor = conn.cursor()
            for json_type in ("json", "jsonb"):  # as text: JSON values vary in shape from row to row
                cursor.adapters.register_loader(json_type, TextLoader)
            # prepare=True: the extended protocol, where a string holding several statements is an error
            # (so `COMMIT; ...` cannot end the read-only transaction).
            cursor.execute(query, prepare=True)
            if cursor.pgresult is not None and cursor.pgresult.status == psycopg.pq.ExecStatus.EMPTY_QUERY:
                raise LceError("The query holds no statement.")
            columns = [column.name for column in cursor.description] if cursor.description else ["result"]
            rows = cursor.fetchall() if cursor.description else [(cursor.statusmessage,)]
            conn.commit() if write else conn.rollback()
        except psycopg.errors.ReadOnlySqlTransaction:
            conn.rollback()
            raise LceError("The query writes; lce sql is read-only unless you pass --write.") from None
        except psycopg.errors.InsufficientPrivilege as error:
            conn.rollback()
            hint = "" if write else " (lce sql without --write logs in as the read-only role)"
            raise LceError(f"PostgreSQL refused the query: {first_line(error)}{hint}.") from None
        except psycopg.Error as error:
            if conn.info.transaction_status == psycopg.pq.TransactionStatus.ACTIVE:
                # COPY ... TO STDOUT: the server is sending rows that execute() cannot take, so the connection
                # cannot even roll back (closing it does: nothing was written); not an outage.
                conn.close()
                raise LceError(f"PostgreSQL's COPY is not a query lce sql can run ({first_line(error)}): SELECT the "
                               "rows instead, with --format csv or --out FILE for a file.") from None
            conn.rollback()
            if "cannot insert multiple commands" in str(error):
                raise LceError("The query holds several statements; lce sql --engine postgres runs one at a "
                               "time.") from None
            raise LceError(f"PostgreSQL could not run the query: {first_line(error)}") from None
    return rows_relation(columns, rows)


def rows_relation(columns: list[str], rows: list[tuple]) -> duckdb.DuckDBPyRelation:
    """Rows from Postgres as a DuckDB relation (through Arrow, which keeps their types), so that every engine
    shares the output code."""
    table = pyarrow.table({
        name: _column([row[index] for row in rows]) for index, name in enumerate(_unique(columns))
    })
    return result_relation(table)


def result_relation(table: pyarrow.Table) -> duckdb.DuckDBPyRelation:
    """A result as a relation on a fresh in-memory DuckDB of its own: nothing attached, no user SQL ever run
    there; lce counts, prints and writes files (write_csv, write_parquet) from it. Columns of the same name (a
    self-join's `a.id, b.id`), which DuckDB cannot scan from Arrow, are renamed as DuckDB names a table's."""
    return duckdb.connect().from_arrow(table.rename_columns(distinct_names(table.column_names)))


def distinct_names(names: list[str]) -> list[str]:
    """The names DuckDB gives the columns of CREATE TABLE ... AS a query with these column names: a name met
    before (in any case) gets _1, _2 ... counted per name, until it is new (id, id, id_1, ID: id, id_1, id_1_1,
    ID_2), as `lce sql` named them when the result was such a table."""
    seen: set[str] = set()
    counts: dict[str, int] = {}
    distinct = []
    for name in names:
        new = name
        while new.lower() in seen:
            counts[name.lower()] = counts.get(name.lower(), 0) + 1
            new = f"{name}_{counts[name.lower()]}"
        seen.add(new.lower())
        distinct.append(new)
    return distinct


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
        out.write_text(_json(relation))
    else:
        raise LceError(f"--format must be one of {', '.join(FORMATS[1:])} with --out, not {fmt!r}.")
    return count


def export_stream(relation: duckdb.DuckDBPyRelation, fmt: str, stream: TextIO) -> int:
    """Write the result to an open text stream (standard output) as csv or json, the same text that `export`
    writes to a file; returns the row count. Parquet is binary: it needs a file."""
    count = relation.count("*").fetchone()[0]
    if fmt == "csv":
        # Through DuckDB's own CSV writer, so that a pipe gets byte for byte what --out FILE gets.
        with tempfile.TemporaryDirectory(prefix="lce-csv-") as folder:
            path = Path(folder) / "result.csv"
            relation.write_csv(str(path), header=True)
            with path.open(newline="") as written:
                shutil.copyfileobj(written, stream)
    elif fmt == "json":
        stream.write(_json(relation))
    elif fmt == "parquet":
        raise LceError("--format parquet is binary and is not written to standard output: give a file with --out "
                       "FILE.")
    else:
        raise LceError(f"--format must be one of csv, json to standard output, not {fmt!r}.")
    stream.flush()
    return count


def _json(relation: duckdb.DuckDBPyRelation) -> str:
    """An array of objects, one per row."""
    rows = [dict(zip(relation.columns, row)) for row in relation.fetchall()]
    return json.dumps(rows, indent=1, default=str) + "\n"
