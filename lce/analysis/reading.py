"""Which DuckDB statements `lce sql` runs without --write: a check on the locked session's own parse.

    con = duckdb_connection(read_only=True)         # locked (duck.py); never duckdb's default connection
    statements = con.extract_statements(query)      # parsed there, so that parse-time PRAGMAs run locked too
    files = check_reading(con, statements)           # LceError naming what is refused; the data files it names

A statement runs when it only reads: a SELECT (SHOW, DESCRIBE, SUMMARIZE and the reading PRAGMAs parse as one),
whose table functions are all in READING_FUNCTIONS; a plain EXPLAIN of such a statement (EXPLAIN ANALYZE runs
the statement it explains, so it is refused however it is spelled); a CALL of a reading function. Everything
else (COPY, CREATE, SET, LOAD, ATTACH, a PRAGMA that DuckDB keeps as a PRAGMA, ...) is refused by its type.
The locked configuration (duck.py) is the second wall: what this check lets through still cannot reach a file,
load an extension or change a setting.
"""

from __future__ import annotations

import json
import re

import duckdb

from lce.errors import LceError, first_line
from lce.resources import read_sql

READ_ONLY = "lce sql is read-only unless you pass --write"
# Table functions that only read (DuckDB 1.5.5's list, less those with effects). A function missing here is
# refused by name: a new DuckDB's functions are refused until someone has looked at them.
READING_FUNCTIONS = frozenset({
    "range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree", "summary",
    "query_table", "pg_timezone_names", "icu_calendar_names", "test_all_types", "test_vector_types",
    "which_secret",
    # the catalog
    "duckdb_approx_database_count", "duckdb_columns", "duckdb_connection_count", "duckdb_constraints",
    "duckdb_coordinate_systems", "duckdb_databases", "duckdb_dependencies", "duckdb_extensions",
    "duckdb_external_file_cache", "duckdb_functions", "duckdb_indexes", "duckdb_keywords", "duckdb_log_contexts",
    "duckdb_logs", "duckdb_logs_parsed", "duckdb_memory", "duckdb_optimizers", "duckdb_prepared_statements",
    "duckdb_profiling_settings", "duckdb_schemas", "duckdb_secret_types", "duckdb_secrets", "duckdb_sequences",
    "duckdb_settings", "duckdb_table_sample", "duckdb_tables", "duckdb_temporary_files", "duckdb_types",
    "duckdb_variables", "duckdb_views", "histogram", "histogram_values",
    # what PRAGMA version, database_size, table_info('t'), show_tables ... become (and CALL pragma_table_info)
    "pragma_collations", "pragma_database_size", "pragma_metadata_info", "pragma_platform", "pragma_show",
    "pragma_storage_info", "pragma_table_info", "pragma_user_agent", "pragma_version",
    # runs its query in PostgreSQL through the attached `pg` (the read-only login, a READ_ONLY attachment);
    # DuckDB binds only a query that returns rows
    "postgres_query",
})
# Table functions that read files: the locked session reaches no file; lce reads them instead.
FILE_READERS = frozenset({
    "read_csv", "read_csv_auto", "read_parquet", "parquet_scan", "read_json", "read_json_auto",
    "read_json_objects", "read_json_objects_auto", "read_ndjson", "read_ndjson_auto", "read_ndjson_objects",
    "read_text", "read_blob", "read_duckdb", "glob", "sniff_csv", "parquet_metadata", "parquet_schema",
    "parquet_file_metadata", "parquet_kv_metadata", "parquet_full_metadata", "parquet_bloom_probe",
})
# What a table named like a file ('families.csv') means to DuckDB: the file, read by suffix.
DATA_FILE = re.compile(r".+\.(csv|tsv|parquet|json|jsonl|ndjson)(\.gz)?$", re.IGNORECASE)
ANALYZE = {"analyze", "analyse"}


def check_reading(con: duckdb.DuckDBPyConnection, statements: list) -> list[str]:
    """Refuse (LceError) unless every statement only reads; return the data files the statements name as tables
    (`JOIN 'families.csv'`), in order, each once."""
    files: list[str] = []
    for statement in statements:
        for name in _check(con, statement):
            if name not in files:
                files.append(name)
    return files


def _check(con: duckdb.DuckDBPyConnection, statement) -> list[str]:
    kind = statement.type.name
    if kind == "SELECT":
        return _check_select(con, statement.query)
    if kind == "EXPLAIN":
        return _check_explain(con, statement.query)
    if kind == "CALL":
        return _check_call(con, statement.query)
    if kind == "PRAGMA":
        words = _words(statement.query)
        name = words[1][1] if len(words) > 1 else "?"
        raise LceError(f"PRAGMA {name} changes DuckDB's state; {READ_ONLY}. The reading PRAGMAs (version, "
                       "platform, database_size, show_tables, table_info('t'), ...) run as queries.")
    raise LceError(f"The query writes ({kind}); {READ_ONLY}.")


def _check_select(con: duckdb.DuckDBPyConnection, query: str) -> list[str]:
    """The table functions a SELECT calls must read; returns the tables it names that are data files."""
    tree = json.loads(con.execute(read_sql("queries/statement_tree"), [query]).fetchone()[0])
    if tree.get("error") or len(tree.get("statements", [])) != 1:
        raise LceError(f"lce sql cannot check this statement ({tree.get('error_message', 'not one statement')}); "
                       f"{READ_ONLY}.")
    functions, tables = _references(tree, [], [])
    for name in functions:
        if name in FILE_READERS:
            raise LceError(f"The query reads a file with {name}(): lce sql reads local files itself. Name the file "
                           "as a table (JOIN 'families.csv' ...) or pass it with --read NAME=PATH.")
        if name not in READING_FUNCTIONS:
            raise LceError(f"The query calls {name}(), which is not one of the reading table functions "
                           f"(docs/security.md); {READ_ONLY}. PostgreSQL's own functions (unit_label_at, ...) run with "
                           "--engine postgres, or in postgres_query('pg', '...').")
    return [name for name in tables if DATA_FILE.match(name)]


def _references(node, functions: list[str], tables: list[str]) -> tuple[list[str], list[str]]:
    """Every table function called and every unqualified table named, anywhere in the parse tree."""
    if isinstance(node, dict):
        if node.get("type") == "TABLE_FUNCTION":
            functions.append(str(node["function"].get("function_name", "")).lower())
        elif node.get("type") == "BASE_TABLE" and not node.get("schema_name") and not node.get("catalog_name"):
            tables.append(node["table_name"])
        for value in node.values():
            _references(value, functions, tables)
    elif isinstance(node, list):
        for value in node:
            _references(value, functions, tables)
    return functions, tables


def _check_explain(con: duckdb.DuckDBPyConnection, query: str) -> list[str]:
    """A plain EXPLAIN of a reading statement. DuckDB's parser drops comments from the tokens, so neither a
    comment, the case, a quoted `"analyze"` nor `EXPLAIN (FORMAT json, ANALYZE)` hides the word."""
    words = _words(query)
    if any(word.lower() in ANALYZE for _, word in words if not word.startswith("'")):
        raise LceError(f"EXPLAIN ANALYZE runs the statement it explains; {READ_ONLY} (plain EXPLAIN shows the "
                       "plan without running it).")
    # What is explained: after EXPLAIN [VERBOSE], or after EXPLAIN (options) -- or `(SELECT ...)` itself, which
    # also starts with a parenthesis. Each reading that parses must pass; one must.
    index = 1 + (len(words) > 1 and words[1][1].lower() == "verbose")
    if index >= len(words):
        raise LceError("EXPLAIN explains nothing.")
    starts = [words[index][0]]
    if words[index][1] == "(":
        after = _closing(words, index)
        if after is not None:
            starts.append(after)
    files, parsed = [], 0
    for start in starts:
        try:
            explained = con.extract_statements(query[start:])
        except duckdb.Error:
            continue
        if len(explained) != 1:
            continue
        parsed += 1
        if explained[0].type.name == "EXPLAIN":
            raise LceError(f"EXPLAIN of an EXPLAIN is refused; {READ_ONLY}.")
        files += _check(con, explained[0])
    if not parsed:
        raise LceError(f"lce sql cannot tell which statement this EXPLAIN explains; {READ_ONLY}.")
    return files


def _check_call(con: duckdb.DuckDBPyConnection, query: str) -> list[str]:
    """CALL f(...) is SELECT * FROM f(...): checked as that, so f and anything in its arguments must read."""
    words = _words(query)
    # DuckDB parses [FORCE] CHECKPOINT [database] as a CALL of (force_)checkpoint too, with its own text: read as
    # "SELECT * FROM pg" it would pass, and it checkpoints (on `pg`, it sends CHECKPOINT to PostgreSQL).
    if not words or words[0][1].lower() != "call":
        raise LceError(f"The query writes (CHECKPOINT); {READ_ONLY}.")
    if len(words) < 2:
        raise LceError("CALL names no function.")
    return _check_select(con, "SELECT * FROM " + query[words[1][0]:])


def _closing(words: list[tuple[int, str]], index: int) -> int | None:
    """The position just after the parenthesis that closes the one at `words[index]`."""
    depth = 0
    for position, word in words[index:]:
        depth += (word == "(") - (word == ")")
        if depth == 0:
            return position + 1
    return None


WORD = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|[A-Za-z_\x80-\U0010ffff][\w$\x80-\U0010ffff]*|.", re.DOTALL)


def _words(query: str) -> list[tuple[int, str]]:
    """DuckDB's tokens (comments dropped) as (position, text); a quoted identifier unquoted, a string kept in
    its quotes."""
    try:
        tokens = duckdb.tokenize(query)  # the scanner alone: no connection, no catalog
    except (duckdb.Error, RuntimeError) as error:
        raise LceError(f"DuckDB cannot parse the query: {first_line(error)}") from None
    words = []
    for position, _ in tokens:
        match = WORD.match(query, position)
        word = match.group() if match else query[position]
        if word.startswith('"'):
            word = word[1:-1].replace('""', '"')
        words.append((position, word))
    return words
