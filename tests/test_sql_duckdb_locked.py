"""`lce sql` on DuckDB without --write: a locked session (no file, no extension, no setting) that parses the query
itself, a strict check of what runs, local files read by lce, and output written by lce as before.

Each attack marked "main" below ran on main at 1dd31be (issue 23): it wrote the file, loaded or installed, or
changed the setting, and exited 0.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import pytest

from lce.analysis import query as query_module
from lce.analysis.duck import duckdb_connection, scanner_extension
from lce.db import connection
from lce.errors import LceError
from tests.test_sql import two_models  # noqa: F401 (a fixture)

TODAY = Path(__file__).parent / "data" / "sql_today"
FAMILIES = "model,family\na,contrastive\nb,clustering\n"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A scratch HOME: where DuckDB would install extensions (~/.duckdb)."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    return folder


def _refused(result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.stderr, result.stderr


def _files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize("query", [
    "EXPLAIN ANALYZE COPY (SELECT '#!/bin/sh' UNION ALL SELECT 'id') TO '{out}' (HEADER false, QUOTE '')",  # main
    "explain /* analyze */ analyze copy (select 1) to '{out}'",  # main
    "EXPLAIN -- a comment\n ANALYSE COPY (SELECT 1) TO '{out}'",
    "EXPLAIN (ANALYZE) COPY (SELECT 1) TO '{out}'",  # main
    "EXPLAIN (FORMAT json, ANALYZE) COPY (SELECT 1) TO '{out}'",  # main
    'EXPLAIN ("analyze") COPY (SELECT 1) TO \'{out}\'',  # main
    "EXPLAIN ANALYZE COPY (SELECT * FROM model) TO '{out}' (FORMAT parquet)",  # main: any table exported
    "EXPLAIN COPY (SELECT 1) TO '{out}'",  # plain, but of a statement that writes
])
def test_explain_analyze_writes_no_file(cli, two_models, tmp_path, query):
    out = tmp_path / "evil.sh"
    result = cli("sql", query.format(out=out))
    _refused(result, "lce sql is read-only unless you pass --write")
    assert not out.exists()


def test_explain_analyze_creates_no_table_and_changes_no_setting(cli, two_models):
    _refused(cli("sql", "EXPLAIN ANALYZE CREATE TABLE memory.main.t AS SELECT 42 AS x; SELECT * FROM memory.main.t"),
             "EXPLAIN ANALYZE runs the statement it explains")  # main: printed 42
    _refused(cli("sql", "EXPLAIN ANALYZE SET threads = 1; SELECT current_setting('threads') AS t", "--format", "csv"),
             "EXPLAIN ANALYZE")  # main: printed 1
    # Where the check let it through, the lock would stop it: the session's settings cannot change.
    con = duckdb_connection(read_only=True, require_reader=True)
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    with pytest.raises(duckdb.Error, match="locked"):
        con.execute("EXPLAIN ANALYZE SET threads = 1")
    assert con.execute("SELECT current_setting('threads')").fetchone()[0] == threads
    con.close()


def test_explain_analyze_installs_and_loads_nothing(cli, two_models, home, tmp_path):
    _refused(cli("sql", "EXPLAIN ANALYZE INSTALL httpfs"), "EXPLAIN ANALYZE")  # main: a download, ~/.duckdb made
    extension = tmp_path / "copy.duckdb_extension"  # native code at a path the query names
    shutil.copy(scanner_extension(), extension)
    _refused(cli("sql", f"EXPLAIN ANALYZE LOAD '{extension}'"), "EXPLAIN ANALYZE")  # main: dlopen'ed it
    assert _files(home) == []


def test_plain_explain_and_the_reading_statements_still_run(cli, two_models):
    for query in ["EXPLAIN SELECT * FROM model", "EXPLAIN (FORMAT json) SELECT 1", "EXPLAIN (SELECT 1)",
                  "SUMMARIZE model", "DESCRIBE model", "SHOW TABLES", "PRAGMA show_tables", "PRAGMA version",
                  "PRAGMA table_info('model')", "CALL pragma_table_info('model')",
                  "SELECT count(*) FROM duckdb_settings()", "SELECT * FROM range(3)"]:
        result = cli("sql", query, "--format", "csv")
        assert result.exit_code == 0, (query, result.output)
    assert cli("sql", "CALL pragma_table_info('model')", "--format", "csv").stdout.splitlines()[1] == \
        "0,id,INTEGER,true,,true"
    result = cli("sql", "SELECT * FROM postgres_query('pg', 'SELECT current_user AS u')", "--format", "csv")
    assert result.stdout == "u\nlce_reader\n"


def test_calls_and_table_functions_that_act_are_refused(cli, two_models, tmp_path):
    log = tmp_path / "log.csv"
    _refused(cli("sql", f"CALL enable_logging(storage='file', storage_path='{log}'); SELECT 1"),
             "enable_logging()", "not one of the reading table functions")  # main: wrote the log
    _refused(cli("sql", f"SELECT * FROM enable_logging(storage='file', storage_path='{log}')"),
             "enable_logging()")  # main: the same, as a SELECT
    _refused(cli("sql", f"SELECT * FROM system.main.\"Enable_Logging\"(storage='file', storage_path='{log}')"),
             "enable_logging()")
    _refused(cli("sql", "SELECT 1 WHERE EXISTS (SELECT * FROM checkpoint())"), "checkpoint()")
    _refused(cli("sql", "SELECT * FROM query('SELECT 1')"), "query()")  # SQL text lce cannot check
    _refused(cli("sql", "PRAGMA enable_profiling"), "PRAGMA enable_profiling changes DuckDB's state")
    assert not log.exists()


def test_a_parse_time_pragma_installs_nothing(cli, two_models, home):
    result = cli("sql", "PRAGMA create_fts_index('model', 'id', 'name')")
    _refused(result, "fts")
    assert "automatically install" not in result.stderr  # main: tried the download, on the default connection
    assert _files(home) == []


def test_the_query_is_parsed_on_the_locked_session_only(cli, two_models, monkeypatch):
    def default_connection(*args, **kwargs):
        raise AssertionError("parsed on duckdb's default connection")

    monkeypatch.setattr(duckdb, "extract_statements", default_connection)
    result = cli("sql", "SELECT count(*) AS n FROM model", "--format", "csv")
    assert result.exit_code == 0, result.output  # main: parsed with duckdb.extract_statements
    assert result.stdout == "n\n2\n"


@pytest.mark.parametrize("query, kind", [
    ("COPY (SELECT 1) TO '{out}'", "COPY"),
    ("LOAD '{out}'", "LOAD"),
    ("INSTALL httpfs", "LOAD"),
    ("SET threads = 1", "SET"),
    ("ATTACH '{out}' AS x", "ATTACH"),
    ("EXPORT DATABASE '{out}'", "EXPORT"),
])
def test_bare_statements_that_write_are_refused(cli, two_models, home, tmp_path, query, kind):
    out = tmp_path / "out"
    _refused(cli("sql", query.format(out=out)), f"The query writes ({kind})")
    assert not out.exists() and _files(home) == []


def test_the_owner_and_other_servers_are_not_reached_with_a_dsn(cli, two_models, database):
    owner = connection.libpq_dsn(database)
    _refused(cli("sql", f"SELECT count(*) FROM postgres_scan('{owner}', 'public', 'model')"),
             "postgres_scan()")  # main: read as the owner
    _refused(cli("sql", f"CALL postgres_attach('{owner}')"), "postgres_attach()")  # main: views as the owner
    _refused(cli("sql", "CALL postgres_execute('pg', 'SELECT 1')"), "postgres_execute()")


def test_the_locked_session_reaches_pg_and_nothing_else(two_models, tmp_path):
    """The second wall, whatever the check lets through."""
    con = duckdb_connection(read_only=True, require_reader=True)
    assert con.execute("SELECT name FROM model ORDER BY name").fetchall() == [("a",), ("b",)]
    readable = tmp_path / "families.csv"
    readable.write_text(FAMILIES)
    extension = tmp_path / "copy.duckdb_extension"
    shutil.copy(scanner_extension(), extension)
    for statement in [f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'", f"SELECT * FROM read_csv('{readable}')",
                      f"SELECT * FROM '{readable}'", f"LOAD '{extension}'", "INSTALL httpfs",
                      "SET enable_external_access = true", "SET lock_configuration = false",
                      "SET allow_unsigned_extensions = true"]:
        with pytest.raises(duckdb.Error, match="disabled by configuration|disabled through configuration|locked"):
            con.execute(statement)
    assert not (tmp_path / "x.csv").exists()
    con.close()


def test_a_local_csv_is_joined_and_no_statement_writes_it(cli, two_models, tmp_path, monkeypatch):
    families = tmp_path / "families.csv"
    families.write_text(FAMILIES)
    joined = [["family", "label"], ["clustering", "red-c"], ["contrastive", "sky"]]
    query = "SELECT f.family, l.label FROM unit_label l JOIN {} f USING (model) WHERE l.interpretable ORDER BY 1"
    for args in ([query.format(f"'{families}'")],  # docs/using.md's form: lce reads the file the query names
                 [query.format("families"), "--read", f"families={families}"],
                 [query.format("families"), "--read", str(families)]):
        result = cli("sql", *args, "--format", "csv")
        assert result.exit_code == 0, result.output
        assert [line.split(",") for line in result.stdout.splitlines()] == joined
    monkeypatch.chdir(tmp_path)  # a relative path, as in docs/using.md
    assert cli("sql", query.format("'families.csv'"), "--format", "csv").stdout.splitlines()[1] == "clustering,red-c"
    for attack in [f"COPY (SELECT 'x') TO '{families}'", f"EXPLAIN ANALYZE COPY (SELECT 'x') TO '{families}'",
                   f"INSERT INTO '{families}' VALUES ('c', 'x')", f"DELETE FROM '{families}'",
                   f"SELECT * FROM enable_logging(storage='file', storage_path='{families}')"]:
        assert cli("sql", attack, "--read", f"families={families}").exit_code == 1, attack
    assert families.read_text() == FAMILIES


def test_files_to_read_are_checked(cli, two_models, tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    _refused(cli("sql", "SELECT 1", "--read", f"pipe={fifo}"), "not a regular file")
    _refused(cli("sql", "SELECT 1", "--read", "zero=/dev/zero"), "not a regular file")
    _refused(cli("sql", f"SELECT * FROM '{tmp_path / 'missing.csv'}'"), "does not exist")
    _refused(cli("sql", "SELECT * FROM read_csv('families.csv')"), "--read NAME=PATH")
    families = tmp_path / "families.csv"
    families.write_text(FAMILIES)
    _refused(cli("sql", "SELECT 1", "--read", f"model={families}"), "the store has a table or view named model")
    _refused(cli("sql", "SELECT 1", "--read", str(tmp_path / "2024 runs.csv")), "give one as --read NAME=PATH")
    _refused(cli("sql", "SELECT 1", "--engine", "postgres", "--read", str(families)), "--read is for the duckdb")


def _today(query: str, folder: Path) -> dict[str, bytes]:
    """What main at 1dd31be wrote, by its own steps: the result in a temporary table of the (unlocked) session,
    written there by DuckDB's write_csv / write_parquet, JSON from its rows."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute(f"LOAD '{scanner_extension()}'")
    dsn = connection.libpq_dsn(connection.connect_reader(required=True).url.render_as_string(hide_password=False))
    con.execute(f"ATTACH '{dsn}' AS pg (TYPE postgres, READ_ONLY)")
    con.execute("USE pg")
    con.execute(f"CREATE TEMP TABLE lce_result AS {query}")
    relation = con.table("lce_result")
    relation.write_csv(str(folder / "today.csv"), header=True)
    relation.write_parquet(str(folder / "today.parquet"))
    written = {fmt: (folder / f"today.{fmt}").read_bytes() for fmt in ("csv", "parquet")}
    written["json"] = query_module._json(relation).encode()
    con.close()
    return written


def test_output_is_byte_for_byte_what_it_was(cli, two_models, tmp_path):
    query = (TODAY / "query.sql").read_text()
    today = _today(query, tmp_path)
    assert today["csv"] == (TODAY / "result.csv").read_bytes()  # the same DuckDB as when the files were made
    assert today["json"] == (TODAY / "result.json").read_bytes()
    for fmt in ("csv", "json"):
        printed = cli("sql", "-", "--format", fmt, input=query)
        assert printed.exit_code == 0, printed.output
        assert printed.stdout_bytes == today[fmt], fmt
    for fmt in ("csv", "json", "parquet"):
        out = tmp_path / f"result.{fmt}"
        assert cli("sql", "-", "--out", out, input=query).exit_code == 0
        assert out.read_bytes() == today[fmt], fmt


def test_a_refused_query_is_refused_by_the_library_too(two_models):
    with pytest.raises(LceError, match="EXPLAIN ANALYZE"):
        query_module.run_query("EXPLAIN ANALYZE SELECT 1")
    assert query_module.run_query("EXPLAIN ANALYZE SELECT 1", write=True).count("*").fetchone()[0] == 1
