"""`lce sql` without --write, attacked after issue 23's lock: statements that slipped past the check (reading.py)
or the locked session (duck.py). Each marked "before" ran (or reached the server) on wt-attack1 at 3db1396.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def two_models(cli, tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("name,unit,iou,label,category\na,0,0.1,sky,object\na,1,0.01,sky,object\nb,0,0.2,red-c,color\n")
    assert cli("import", "dissect-csv", path).exit_code == 0


def _refused(result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.mark.parametrize("query", [
    "CHECKPOINT memory",  # before: ran, exit 0
    "FORCE CHECKPOINT memory",  # before: ran, exit 0
    "CHECKPOINT pg",  # before: sent CHECKPOINT to PostgreSQL (refused there only for want of the privilege)
    "FORCE CHECKPOINT",  # before: the same
    "checkpoint /* x */ pg",
])
def test_checkpoint_is_refused_by_the_check(cli, two_models, query):
    # DuckDB parses CHECKPOINT as a CALL whose text does not start with CALL: the check read "SELECT * FROM pg".
    _refused(cli("sql", query), "The query writes (CHECKPOINT)", "lce sql is read-only unless you pass --write")


@pytest.mark.parametrize("query", ["COPY model TO STDOUT", "COPY (SELECT 1) TO STDOUT"])
def test_copy_to_stdout_on_postgres_is_not_an_outage(cli, two_models, query):
    # before: psycopg refused the COPY, the rollback then failed on the connection still in COPY, and lce said
    # "The database ... went away" (with psycopg's "error ignored in rollback" above it)
    result = cli("sql", query, "--engine", "postgres")
    _refused(result, "COPY", "--format csv")
    assert "went away" not in result.output and "error ignored" not in result.output
    assert cli("sql", "SELECT count(*) AS n FROM model", "--engine", "postgres", "--format", "csv").stdout == "n\n2\n"


def test_values_and_names_are_printed_as_they_are_never_as_markup(cli, two_models):
    # before: rich read "\[/x]" as a closing tag (MarkupError, a traceback) and "\[link=...]" as a hyperlink
    query = (r"""SELECT '\[/x]' AS "[/y]", '\[link=https://example.invalid]click' AS w, 'a[b]\' AS z""")
    result = cli("sql", query)
    assert result.exit_code == 0, result.output
    assert r"\[/x]" in result.stdout and "[/y]" in result.stdout
    assert r"\[link=https://example.invalid]click" in result.stdout and "a[b]\\" in result.stdout
    renamed = cli("sql", r"UPDATE model SET name = '\[/x]' WHERE name = 'a'", "--write")
    assert renamed.exit_code == 0, renamed.output
    listing = cli("models")  # a stored name, shown to whoever lists the models
    assert listing.exit_code == 0, listing.output
    assert r"\[/x]" in listing.stdout


def test_terminal_control_characters_are_shown_not_sent(cli, two_models):
    # before: ESC ]0;... BEL and ESC [31m reached the terminal as they were (retitle, recolour)
    renamed = cli("sql", r"UPDATE model SET name = chr(27) || ']0;PWNED' || chr(7) || 'b' WHERE name = 'b'", "--write")
    assert renamed.exit_code == 0, renamed.output
    for args in (["sql", "SELECT name, chr(27) || '[31mred' AS c FROM model ORDER BY id"], ["models"]):
        result = cli(*args)
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout
        assert r"\x1b]0;PWNED\x07b" in result.stdout
    assert "\x1b[31mred" in cli("sql", "SELECT chr(27) || '[31mred' AS c", "--format", "csv").stdout  # data: as is


@pytest.mark.parametrize("names", [
    ["id", "id"], ["id", "id", "id", "id_1", "ID"], ["a", "A", "a_1", "a"], ["x_1", "x", "x", "x"], ['"q"', '"Q"'],
])
def test_columns_of_the_same_name_are_named_as_duckdb_names_them(names):
    import duckdb

    from lce.analysis.query import distinct_names

    con = duckdb.connect()
    select = ", ".join(f'{index} AS "{name.replace(chr(34), chr(34) * 2)}"' for index, name in enumerate(names))
    con.execute(f"CREATE TEMP TABLE t AS SELECT {select}")  # how lce sql named them before the Arrow handover
    assert distinct_names(names) == con.table("t").columns


def test_a_self_join_prints(cli, two_models, tmp_path):
    # before: a traceback (ArrowInvalid: Multiple matches for FieldRef.Name(id)), exit 1
    query = "SELECT a.id, b.id, a.name AS ID FROM model a JOIN model b USING (id) ORDER BY 1"
    result = cli("sql", query, "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout == "id,id_1,ID_2\n1,1,a\n2,2,b\n"
    assert cli("sql", query, "--out", tmp_path / "self.parquet").exit_code == 0
    assert "ID_2" in cli("sql", query).stdout


def test_a_local_file_past_the_memory_budget_is_refused_as_it_is_read(cli, two_models, tmp_path, monkeypatch):
    # before: every row was held, whatever the size (a .gz bomb ran into the kernel's out-of-memory killer)
    import gzip

    from lce.analysis import local_files, query

    bomb = tmp_path / "bomb.csv.gz"
    with gzip.open(bomb, "wt") as handle:
        handle.write("a,b\n" + "1,2\n" * 2_000_000)  # 8 MB of text, 20 kB gzip'd
    small = tmp_path / "small.csv"
    small.write_text("a,b\n1,2\n")
    monkeypatch.setattr(query, "memory_budget", lambda: 4 * 2**20)  # (half of this machine's, unpatched)
    _refused(cli("sql", f"SELECT count(*) FROM '{bomb}'"), f"The query's table '{bomb}'", "more than 4 MiB")
    _refused(cli("sql", "SELECT count(*) FROM bomb", "--read", f"bomb={bomb}"), "--read bomb=", "more than 4 MiB")
    half = tmp_path / "half.csv"  # 150,000 rows of two BIGINTs: 2.4 MB as Arrow, within 4 MiB alone, not twice
    half.write_text("a,b\n" + "1,2\n" * 150_000)
    assert cli("sql", "SELECT count(*) FROM one", "--read", f"one={half}").exit_code == 0
    _refused(cli("sql", "SELECT count(*) FROM one, two", "--read", f"one={half}", "--read", f"two={half}"),
             "--read two=")
    result = cli("sql", f"SELECT count(*) AS n FROM '{small}'", "--format", "csv")
    assert result.exit_code == 0 and result.stdout == "n\n1\n"
    assert local_files.memory_budget() > 2**20


def test_a_result_past_the_memory_budget_is_refused_as_it_comes(cli, two_models, monkeypatch):
    # before: SELECT * FROM range(10^10) was held whole, as Arrow (80 GB): the out-of-memory killer
    from lce.analysis import query

    monkeypatch.setattr(query, "memory_budget", lambda: 4 * 2**20)
    _refused(cli("sql", "SELECT * FROM range(10000000000)"), "The query's result", "more than 4 MiB", "LIMIT")
    _refused(cli("sql", "SELECT * FROM range(10000000000)", "--write"), "The query's result")
    result = cli("sql", "SELECT * FROM range(10000000000) LIMIT 3", "--format", "csv")
    assert result.exit_code == 0 and result.stdout == "range\n0\n1\n2\n"


def test_the_reader_cannot_hold_the_writers_locks(cli, two_models, tmp_path):
    # before: SELECT pg_advisory_lock(7425002, ...) ran as lce_reader, on both engines; held with a pg_sleep, it
    # stopped every ingest of that probe (and 7425001, every upgrade) for as long as the reader liked
    for query in ["SELECT pg_advisory_lock(7425002, 0) IS NULL AS held",
                  "SELECT pg_try_advisory_xact_lock(7425001) AS held"]:
        _refused(cli("sql", query, "--engine", "postgres"), "permission denied for function pg_")
        _refused(cli("sql", f"SELECT * FROM postgres_query('pg', '{query}')"), "permission denied for function pg_")
    path = tmp_path / "three.csv"  # the owner's writes still take them
    path.write_text("name,unit,iou,label,category\nc,0,0.1,sky,object\n")
    assert cli("import", "dissect-csv", path).exit_code == 0


def test_two_files_of_one_name_to_duckdb_are_refused(cli, two_models, tmp_path, monkeypatch):
    # before: 'x.csv' and 'X.csv' were registered under one DuckDB name: both read X.csv, exit 0, wrong rows
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.csv").write_text("v\nlower\n")
    (tmp_path / "X.csv").write_text("v\nUPPER\n")
    _refused(cli("sql", "SELECT * FROM 'x.csv' UNION ALL SELECT * FROM 'X.csv'"), "'x.csv' and 'X.csv' are one name")
    _refused(cli("sql", "SELECT * FROM a", "--read", "a=x.csv", "--read", "A=X.csv"), "'a' and 'A'")
    _refused(cli("sql", "SELECT * FROM a", "--read", "a=x.csv", "--read", "a=X.csv"), "'a' and 'a'")
    result = cli("sql", "SELECT * FROM lower UNION ALL SELECT * FROM upper", "--read", "lower=x.csv", "--read",
                 "upper=X.csv", "--format", "csv")
    assert result.exit_code == 0 and result.stdout == "v\nlower\nUPPER\n"


def test_an_error_message_sends_no_control_character_to_the_terminal(cli, two_models, tmp_path):
    # before: a name in a message (here the query's file) reached the terminal with its ESC ]0; ... BEL
    result = cli("sql", f"SELECT * FROM '{tmp_path}/a\x1b]0;PWNED\x07b.csv'")
    _refused(result, r"a\x1b]0;PWNED\x07b.csv", "does not exist")
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
