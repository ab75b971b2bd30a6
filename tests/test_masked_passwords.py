"""A password in a database URL is never printed: neither `user:password@` nor the query's `password=` and
`sslpassword=` (libpq reads both there), in any message that names the URL (unreachable, malformed, not
PostgreSQL, an option libpq does not know), in `lce db url` without --show-password, nor in DuckDB's message
when it cannot attach the database (it quotes the whole connection string).

On lce 0.2 only `user:password@` was masked; `?password=secret` was printed, and `?foo=1` was a traceback.
"""

from __future__ import annotations

import pytest

from lce.db import connection
from tests.conftest import Cli

SECRET = "s3cret-Pw"


@pytest.mark.parametrize("url", [
    f"postgresql://u@127.0.0.1:1/db?password={SECRET}",
    f"postgresql://u:{SECRET}@127.0.0.1:1/db",
    f"postgresql://u@127.0.0.1:1/db?sslmode=require&sslpassword={SECRET}",
    f"postgresql://u@127.0.0.1:1/db?password={SECRET}&foo=bar",  # an option libpq does not know
    f"postgresql://u@127.0.0.1:notaport/db?password={SECRET}",  # does not parse
    f"mysql://u@dbhost/db?PASSWORD={SECRET}",  # not PostgreSQL
])
@pytest.mark.parametrize("command", [["models"], ["db", "status"], ["db", "url", "--write"]])
def test_no_message_shows_the_password(monkeypatch, url, command):
    monkeypatch.setenv("LCE_DATABASE_URL", url)
    monkeypatch.setenv("LCE_DATABASE_READONLY_URL", url.replace("u@", "r@").replace("u:", "r:"))
    connection.dispose_all()
    result = Cli()(*command)
    connection.dispose_all()
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # a message, not a traceback
    assert "***" in result.stderr, result.stderr
    assert SECRET not in result.output


def test_db_url_masks_a_password_in_the_query_unless_asked(database, monkeypatch):
    # Peer authentication over the socket ignores the password, so the URL works as given.
    monkeypatch.setenv("LCE_DATABASE_URL", f"{database}&password={SECRET}")
    connection.dispose_all()
    shown = Cli()("db", "url", "--write")
    assert shown.exit_code == 0, shown.output
    assert SECRET not in shown.stdout and "password=***" in shown.stdout, shown.stdout
    plain = Cli()("db", "url", "--write", "--show-password")
    assert plain.exit_code == 0 and f"password={SECRET}" in plain.stdout, plain.output


def test_duckdb_cannot_attach_message_hides_the_password(database, monkeypatch):
    """DuckDB's postgres_scanner says 'Unable to connect to Postgres at "<the whole DSN>"'."""
    import lce.analysis.duck as duck

    monkeypatch.setattr(duck, "libpq_dsn", lambda url: f"host=127.0.0.1 port=1 user=u password={SECRET} dbname=db")
    result = Cli()("sql", "--write", "SELECT 1 AS one")
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "password=***" in result.stderr and SECRET not in result.output, result.output


@pytest.mark.parametrize("text, expected", [
    (f"postgresql://u:{SECRET}@h/db", "postgresql://u:***@h/db"),
    (f"postgresql://u@h/db?a=1&password={SECRET}&b=2", "postgresql://u@h/db?a=1&password=***&b=2"),
    (f"host=h user=u password='{SECRET} x\\' y' dbname=d", "host=h user=u password=*** dbname=d"),
    (f'at "host=h sslpassword={SECRET} dbname=d": refused', 'at "host=h sslpassword=*** dbname=d": refused'),
    ("postgresql://u@/lce?host=/tmp/x", "postgresql://u@/lce?host=/tmp/x"),
])
def test_hide_passwords(text, expected):
    assert connection.hide_passwords(text) == expected
