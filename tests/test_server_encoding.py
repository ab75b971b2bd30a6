"""A database in another encoding than UTF-8: lce talks UTF-8 to it (a SQL_ASCII database made psycopg hand back
bytes, and every command failed with a TypeError deep in SQLAlchemy)."""

import psycopg

from lce.db import connection, roles
from tests.conftest import _sqlalchemy_url


def test_a_sql_ascii_database_is_migrated_and_queried(cli, admin_url, monkeypatch):
    name = "lce_test_sql_ascii"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f"CREATE DATABASE \"{name}\" OWNER {roles.OWNER} ENCODING 'SQL_ASCII' LC_COLLATE 'C' "
                     "LC_CTYPE 'C' TEMPLATE template0")
    monkeypatch.setenv("LCE_DATABASE_URL", _sqlalchemy_url(admin_url, name, roles.OWNER))
    monkeypatch.setenv("LCE_DATABASE_READONLY_URL", _sqlalchemy_url(admin_url, name, roles.READER))
    connection.dispose_all()
    try:
        upgraded = cli("db", "upgrade")
        assert upgraded.exit_code == 0, upgraded.output
        written = cli("sql", "--engine", "postgres", "--write", "INSERT INTO model (name) VALUES ('sky-net')")
        assert written.exit_code == 0, written.output
        with connection.connect().connect() as conn:
            assert conn.exec_driver_sql("SHOW server_encoding").scalar() == "SQL_ASCII"
            assert conn.exec_driver_sql("SELECT name FROM model").scalars().all() == ["sky-net"]
    finally:
        connection.dispose_all()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
