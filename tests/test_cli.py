"""The command line as a user meets it: help with examples, errors without tracebacks, the embedded server."""

import os
import subprocess
import sys

import pytest

from lce.db import connection, migrate
from tests.conftest import REPO, Cli

COMMANDS = [
    [], ["db"], ["db", "status"], ["db", "upgrade"], ["db", "url"], ["db", "stop"],
    ["import"], ["import", "dissect-csv"], ["import", "dissect-report"], ["import", "netdissect-csv"],
    ["sql"], ["models"], ["embed"], ["ingest"], ["zoo"], ["layers"],
    ["probe"], ["probe", "check"], ["probe", "add"], ["probe", "list"], ["probe", "show"], ["probe", "synth"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "lce")
def test_every_help_explains_itself_with_an_example(command):
    result = Cli()(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert "lce" in result.stdout.split("Example", 1)[1]


def test_cli_py_runs_the_same_app():
    result = subprocess.run([sys.executable, str(REPO / "cli.py"), "--help"], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "200"}, timeout=60)
    assert result.returncode == 0
    for command in ("embed", "sql", "models", "db", "import"):
        assert command in result.stdout


def test_unreachable_database_is_one_sentence_with_the_password_masked(monkeypatch):
    monkeypatch.setenv("LCE_DATABASE_URL", "postgresql://alice:s3cret@127.0.0.1:9/lce")
    connection.dispose_all()
    result = Cli()("models")
    connection.dispose_all()
    assert result.exit_code == 1
    assert "Cannot reach the database at postgresql+psycopg://alice:***@127.0.0.1:9/lce" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_url_that_is_not_postgres_is_refused(monkeypatch):
    monkeypatch.setenv("LCE_DATABASE_URL", "mysql://bob@localhost/lce")
    connection.dispose_all()
    result = Cli()("models")
    connection.dispose_all()
    assert result.exit_code == 1
    assert "mysql://bob@localhost/lce" in result.stderr


def test_user_errors_exit_non_zero_in_a_real_process(database, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,unit,iou,label,category\nm,0,x,sky,object\n")
    result = subprocess.run([sys.executable, "-m", "lce", "import", "dissect-csv", str(bad)], capture_output=True,
                            text=True, env={**os.environ, "COLUMNS": "200"}, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {bad}, line 2: iou 'x' is not a number."


def test_embedded_server_starts_on_first_use_and_stops(tmp_path, monkeypatch):
    """With no LCE_DATABASE_URL, lce runs its own server under $LCE_HOME, on a unix socket only."""
    monkeypatch.delenv("LCE_DATABASE_URL", raising=False)
    monkeypatch.delenv("LCE_DATABASE_READONLY_URL", raising=False)
    monkeypatch.setenv("LCE_HOME", str(tmp_path / "home"))
    connection.dispose_all()
    cli = Cli()
    try:
        status = cli("db", "status")
        assert status.exit_code == 0 and "not running" in status.stdout
        models = cli("models")
        assert models.exit_code == 0 and "No models yet" in models.stdout
        url = cli("db", "url").stdout.strip()  # the read-only login unless --write
        assert url.startswith("postgresql://lce_reader@/lce?host=") and "home" in url and ":5432" not in url
        assert cli("db", "url", "--write").stdout.startswith("postgresql://lce_owner@/lce?host=")
        status = cli("db", "status")
        assert f"revision {migrate.head()}, up to date" in status.stdout
        assert "read-only: postgresql+psycopg://lce_reader@/lce?host=" in status.stdout
        assert "unix socket only, peer authentication" in status.stdout
        assert (tmp_path / "home" / "postgres" / "PG_VERSION").exists()
        # postmaster.pid: pid, data dir, start time, port, socket dir, listen addresses (empty: no TCP), ...
        pid_lines = (tmp_path / "home" / "postgres" / "postmaster.pid").read_text().splitlines()
        assert pid_lines[4].strip() == str(tmp_path / "home" / "postgres")
        assert pid_lines[5].strip() == ""
    finally:
        stop = cli("db", "stop")
    assert stop.exit_code == 0 and "stopped" in stop.stdout
    assert "not running" in cli("db", "status").stdout
