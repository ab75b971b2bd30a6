"""`lce sql` (DuckDB with Postgres attached, or Postgres itself) and `lce models`."""

import csv
import json

import duckdb
import pytest
from sqlalchemy import text

QUERY = "SELECT model, count(*) FILTER (WHERE interpretable) AS units FROM unit_label GROUP BY model ORDER BY model"


@pytest.fixture
def two_models(cli, tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("name,unit,iou,label,category\na,0,0.1,sky,object\na,1,0.01,sky,object\nb,0,0.2,red-c,color\n")
    assert cli("import", "dissect-csv", path).exit_code == 0


@pytest.mark.parametrize("engine_name", ["duckdb", "postgres"])
def test_query_prints_a_table(cli, two_models, engine_name):
    result = cli("sql", QUERY, "--engine", engine_name)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "│" in line or "|" in line]
    assert any("a" in line.split("│")[1] and "1" in line for line in lines if line.count("│") >= 2)
    assert "2 row(s)" in result.stdout


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
@pytest.mark.parametrize("engine_name", ["duckdb", "postgres"])
def test_query_writes_files(cli, two_models, tmp_path, fmt, engine_name):
    out = tmp_path / f"result.{fmt}"
    result = cli("sql", QUERY, "--engine", engine_name, "--format", fmt, "--out", out)
    assert result.exit_code == 0, result.output
    assert "2 row(s) written" in result.stdout
    if fmt == "csv":
        assert list(csv.reader(out.open())) == [["model", "units"], ["a", "1"], ["b", "1"]]
    elif fmt == "json":
        assert json.loads(out.read_text()) == [{"model": "a", "units": 1}, {"model": "b", "units": 1}]
    else:
        assert duckdb.sql(f"SELECT * FROM '{out}'").fetchall() == [("a", 1), ("b", 1)]


def test_duckdb_joins_local_files_with_the_store(cli, two_models, tmp_path):
    families = tmp_path / "families.csv"
    families.write_text("model,family\na,contrastive\nb,clustering\n")
    out = tmp_path / "joined.csv"
    query = (f"SELECT f.family, l.label FROM unit_label l JOIN '{families}' f USING (model)"
             " WHERE l.interpretable ORDER BY 1")
    assert cli("sql", query, "--out", out).exit_code == 0
    assert list(csv.reader(out.open())) == [["family", "label"], ["clustering", "red-c"], ["contrastive", "sky"]]


def test_postgres_engine_reaches_sql_functions(cli, two_models, tmp_path):
    out = tmp_path / "f.csv"
    query = "SELECT count(*) AS n FROM unit_label_at(0.15) WHERE interpretable"
    assert cli("sql", query, "--engine", "postgres", "--out", out).exit_code == 0
    assert out.read_text().splitlines() == ["n", "1"]


@pytest.mark.parametrize("engine_name", ["duckdb", "postgres"])
def test_writes_are_refused_without_write(cli, engine, two_models, engine_name):
    result = cli("sql", "DELETE FROM model WHERE name = 'a'", "--engine", engine_name)
    assert result.exit_code == 1
    assert "lce sql is read-only unless you pass --write" in result.stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM model")).scalar() == 2


@pytest.mark.parametrize("engine_name", ["duckdb", "postgres"])
def test_write_flag_allows_writes(cli, engine, two_models, engine_name):
    result = cli("sql", "UPDATE model SET family = 'x' WHERE name = 'a'", "--engine", engine_name, "--write")
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        assert conn.execute(text("SELECT family FROM model WHERE name = 'a'")).scalar() == "x"


@pytest.mark.parametrize("engine_name, message", [
    ("duckdb", "DuckDB could not run the query"),
    ("postgres", "PostgreSQL could not run the query"),
])
def test_bad_sql_is_one_clear_error(cli, two_models, engine_name, message):
    result = cli("sql", "SELECT no_such_column FROM unit_label", "--engine", engine_name)
    assert result.exit_code == 1
    assert message in result.stderr and "no_such_column" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("engine_name", ["duckdb", "postgres"])
def test_csv_and_json_go_to_standard_output_without_out(cli, two_models, tmp_path, engine_name):
    """The same text as --out FILE, and nothing else on standard output (it is for a program)."""
    printed = cli("sql", QUERY, "--engine", engine_name, "--format", "csv")
    assert printed.exit_code == 0, printed.output
    assert printed.stdout == "model,units\na,1\nb,1\n"
    out = tmp_path / "result.csv"
    assert cli("sql", QUERY, "--engine", engine_name, "--out", out).exit_code == 0
    assert out.read_text() == printed.stdout
    printed = cli("sql", QUERY, "--engine", engine_name, "--format", "json", "--max-rows", "1")  # every row
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.stdout) == [{"model": "a", "units": 1}, {"model": "b", "units": 1}]


def test_parquet_needs_a_file_and_query_can_come_from_stdin(cli, two_models, tmp_path):
    refused = cli("sql", "SELECT 1", "--format", "parquet")
    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.stderr.strip() == ("error: --format parquet is binary and is not written to standard output: give "
                                      "a file with --out FILE.")
    out = tmp_path / "stdin.csv"
    assert cli("sql", "-", "--out", out, input="SELECT 42 AS answer").exit_code == 0
    assert out.read_text().splitlines() == ["answer", "42"]
    assert cli("sql", "-", "--format", "csv", input="SELECT 42 AS answer").stdout == "answer\n42\n"


def test_a_wide_result_in_a_pipe_is_one_line_per_row(cli, two_models):
    """Rich wraps tables at the terminal's width; the test runner is no terminal (COLUMNS=200 notwithstanding)."""
    result = cli("sql", "SELECT name, repeat('x', 300) AS long FROM model ORDER BY name")
    assert result.exit_code == 0, result.output
    rows = [line.split("│")[1:3] for line in result.stdout.splitlines() if line.startswith("│")]
    assert [[cell.strip() for cell in row] for row in rows] == [["a", "x" * 300], ["b", "x" * 300]]


def test_models_lists_runs_units_and_interpretable_units(cli, two_models):
    result = cli("models")
    assert result.exit_code == 0, result.output
    table = [line.replace("│", " ").split() for line in result.stdout.splitlines() if line.startswith("│")]
    rows = {row[0]: row for row in table if row[0] in ("a", "b")}
    assert rows["a"][-5:] == ["2", "1", "NULL", "NULL", "NULL"]  # units, interpretable, trusted, beats_random, control
    assert rows["b"][-5:] == ["1", "1", "NULL", "NULL", "NULL"]  # an import's trust is unknown; no control
    assert "imported:dissect-csv" in result.stdout


def test_models_as_csv_and_json(cli, two_models):
    printed = cli("models", "--format", "csv")
    assert printed.exit_code == 0, printed.output
    assert list(csv.reader(printed.stdout.splitlines())) == [
        ["model", "architecture", "run", "layer", "probe", "variant", "source", "units", "interpretable", "trusted",
         "beats_random", "control"],
        ["a", "", "1", "layer4", "places365-upp", "dissect", "imported:dissect-csv", "2", "1", "", "", ""],
        ["b", "", "2", "layer4", "places365-upp", "dissect", "imported:dissect-csv", "1", "1", "", "", ""]]
    rows = json.loads(cli("models", "--format", "json").stdout)
    assert [(row["model"], row["architecture"], row["units"], row["interpretable"]) for row in rows] == [
        ("a", None, 2, 1), ("b", None, 1, 1)]
    assert "--format must be one of table, csv, json" in cli("models", "--format", "parquet").stderr


def test_no_models_is_a_header_or_an_empty_array(cli):
    assert cli("models", "--format", "csv").stdout == (
        "model,architecture,run,layer,probe,variant,source,units,interpretable,trusted,beats_random,control\n")
    assert json.loads(cli("models", "--format", "json").stdout) == []


def test_postgres_results_keep_their_types_and_vary_in_shape(cli, database, tmp_path):
    out = tmp_path / "typed.parquet"
    query = ("SELECT 1.5::numeric AS n, ARRAY[1, 2] AS arr, '{\"a\": 1}'::jsonb AS j, int4range(1, 3) AS r"
             " UNION ALL SELECT 22.25, NULL, '[1]'::jsonb, NULL")
    result = cli("sql", query, "--engine", "postgres", "--out", out)
    assert result.exit_code == 0, result.output
    assert duckdb.sql(f"SELECT n::DOUBLE, arr, j, r FROM '{out}'").fetchall() == [
        (1.5, [1, 2], '{"a": 1}', "[1, 3)"), (22.25, None, "[1]", None)]
