"""lce against a PostgreSQL server it did not start, over TCP with passwords: `lce db upgrade` provisions it, the
probe, ingest, batch plan (with local workers), embed and sql paths store and read through it, and the read-only
login cannot write there either; a wrong password or a server that is not listening is one message.

The server (tests/external_server.py) listens on 127.0.0.1 only, with scram-sha-256 and no unix socket; an
administrator (its superuser) makes the owner's login and the database, as docs/deployment.md's "A shared
PostgreSQL server" says.
"""

from __future__ import annotations

import csv
from urllib.parse import quote

import psycopg
import pytest

from lce.db import connection
from tests.conftest import Cli
from tests.external_server import TcpServer, free_port

pytestmark = pytest.mark.slow  # an external PostgreSQL server of its own

OWNER, OWNER_PASSWORD = "lce", "owner pw:@/"  # characters a URL must escape, on purpose
READER, READER_PASSWORD = "lce_reader", "reader-pw"
DATABASE = "lce"
PLAN = "model,arch,random_init,seed,layer\nplan-1,resnet18,true,3,layer4\nplan-2,resnet18,true,4,layer4\n"


@pytest.fixture(scope="session")
def tcp_server(tmp_path_factory):
    """The external server, for the session; its data directory under pytest's temporary folder."""
    server = TcpServer(tmp_path_factory.mktemp("tcp-server") / "pg")
    server.start()
    yield server
    connection.dispose_all()
    server.stop()


@pytest.fixture(scope="module")
def admin(tcp_server) -> str:
    """The administrator's part: an owner login that may create roles, and the database it owns."""
    dsn = tcp_server.dsn("postgres", tcp_server.superuser_password)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {OWNER} LOGIN CREATEROLE PASSWORD '{OWNER_PASSWORD}'")
        conn.execute(f"CREATE DATABASE {DATABASE} OWNER {OWNER}")
    return tcp_server.dsn("postgres", tcp_server.superuser_password, DATABASE)


def url(server: TcpServer, user: str, password: str) -> str:
    return f"postgresql://{user}:{quote(password, safe='')}@127.0.0.1:{server.port}/{DATABASE}"


def point_lce_at(server: TcpServer, home, monkeypatch) -> None:
    """lce's environment for the TCP server: owner and reader URLs, an LCE_HOME of its own."""
    monkeypatch.setenv("LCE_HOME", str(home))
    monkeypatch.setenv("LCE_DATABASE_URL", url(server, OWNER, OWNER_PASSWORD))
    monkeypatch.setenv("LCE_DATABASE_READONLY_URL", url(server, READER, READER_PASSWORD))
    connection.dispose_all()


@pytest.fixture(scope="module")
def provisioned(tcp_server, admin, tmp_path_factory) -> dict:
    """The documented set-up, done once: `lce db upgrade` as the owner (it creates the reader and says what it
    leaves to an administrator), the administrator's REVOKE it asked for, the reader's password set by the owner
    through `lce sql --write`, and `lce db upgrade` again. Returns each command's output."""
    said = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        point_lce_at(tcp_server, tmp_path_factory.mktemp("provision-home"), monkeypatch)
        cli = Cli()
        said["upgrade"] = ok(cli("db", "upgrade")).output
        if "`REVOKE EXECUTE" in said["upgrade"]:
            statement = said["upgrade"][said["upgrade"].index("`REVOKE EXECUTE"):].split("`")[1]
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(statement)
        # The owner made the reader, so it may give it its password.
        ok(cli("sql", "--engine", "postgres", "--write", f"ALTER ROLE {READER} PASSWORD '{READER_PASSWORD}'"))
        said["again"] = ok(cli("db", "upgrade")).output
        said["status"] = ok(cli("db", "status")).output
        connection.dispose_all()
    return said


@pytest.fixture(scope="module")
def ingested(tcp_server, provisioned, tmp_path_factory) -> dict:
    """Four resnet18 (random init) in the store: two by `lce ingest`, two by a plan run by two local workers, on a
    30-image 64-px synthetic probe. Returns the outputs and the LCE_HOME used."""
    folder = tmp_path_factory.mktemp("ingest")
    said = {"home": folder / "home"}
    with pytest.MonkeyPatch.context() as monkeypatch:
        point_lce_at(tcp_server, said["home"], monkeypatch)
        cli = Cli()
        probe = folder / "probe"
        ok(cli("probe", "synth", probe, "--images", "30", "--size", "64", "--seed", "2"))
        ok(cli("probe", "add", "synth", probe))
        for name, seed in (("r18-a", "1"), ("r18-b", "2")):
            said[name] = ok(cli("ingest", name, "--arch", "resnet18", "--random-init", "--seed", seed, "--probe",
                                "synth", "--batch-size", "8")).stdout
        plan = folder / "plan.csv"
        plan.write_text(PLAN)
        # Two worker processes: they reach the server through the environment they inherit.
        said["plan"] = ok(cli("ingest", "--plan", plan, "--probe", "synth", "--batch-size", "8", "--executor",
                              "local", "--devices", "cpu,cpu")).stdout
        connection.dispose_all()
    return said


@pytest.fixture
def external(tcp_server, provisioned, tmp_path, monkeypatch):
    """lce pointed at the provisioned TCP server, for one test."""
    point_lce_at(tcp_server, tmp_path / "home", monkeypatch)
    yield tcp_server
    connection.dispose_all()


def rows(dsn: str, query: str):
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def refused(result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output


def test_db_upgrade_provisions_the_external_server(external, admin, provisioned):
    first = provisioned["upgrade"]
    assert "schema at revision" in first and "(was empty)" in first
    assert f"created read-only role {READER}" in first
    assert f"database {DATABASE}: nothing granted to PUBLIC" in first
    # The owner is no superuser: the large-object constructors are the administrator's to revoke; it says how.
    assert f"{READER} may create large objects: ask an administrator" in first
    assert f"{READER} may take advisory locks (and hold up lce's writers): ask an administrator" in first
    again = provisioned["again"]
    assert "may create large objects" not in again and f"read-only role {READER} exists" in again
    assert "has SELECT on every table" in again
    status = provisioned["status"]
    assert "external server" in status and f"127.0.0.1:{external.port}/{DATABASE}" in status
    assert "up to date" in status
    assert OWNER_PASSWORD not in status and READER_PASSWORD not in status
    assert rows(admin, "SELECT inet_server_addr()::text, current_setting('unix_socket_directories')") == [
        ("127.0.0.1/32", "")]
    assert rows(admin, f"""SELECT has_database_privilege('{READER}', '{DATABASE}', 'TEMPORARY'),
                                  has_function_privilege('{READER}', 'lo_from_bytea(oid, bytea)', 'EXECUTE'),
                                  has_table_privilege('{READER}', 'unit', 'SELECT'),
                                  has_table_privilege('{READER}', 'unit', 'INSERT')""") == [
        (False, False, True, False)]


def test_ingest_and_a_plan_with_local_workers_store_over_tcp(external, admin, ingested):
    for name in ("r18-a", "r18-b"):
        assert f"{name} layer4: created run" in ingested[name]
    assert ingested["plan"][ingested["plan"].index("Summary"):].count("stored") == 2
    assert rows(admin, "SELECT m.name, count(u.*) FROM model m JOIN run r ON r.model_id = m.id"
                       " JOIN unit u ON u.run_id = r.id GROUP BY 1 ORDER BY 1") == [
        ("plan-1", 512), ("plan-2", 512), ("r18-a", 512), ("r18-b", 512)]
    # Nothing went through an embedded server: lce never made one in LCE_HOME.
    assert not (ingested["home"] / "postgres").exists()


def test_embed_and_sql_over_tcp(external, admin, ingested, tmp_path):
    cli = Cli()
    out = tmp_path / "lce.csv"
    ok(cli("embed", "--components", "2", "--clusters", "2", "--min-iou", "0", "--out", out))
    assert sorted(row["model"] for row in csv.DictReader(out.open())) == ["plan-1", "plan-2", "r18-a", "r18-b"]
    assert rows(admin, "SELECT count(*) FROM embedding") == [(1,)]
    query = "SELECT m.name AS model, count(*) AS units FROM unit u JOIN run r ON r.id = u.run_id" \
            " JOIN model m ON m.id = r.model_id GROUP BY 1 ORDER BY 1"
    for engine in ("duckdb", "postgres"):
        table = ok(cli("sql", "--engine", engine, query)).stdout
        assert "r18-a" in table and "512" in table and "4 row(s)" in table
        path = tmp_path / f"units-{engine}.csv"
        ok(cli("sql", "--engine", engine, query, "--format", "csv", "--out", path))
        assert list(csv.reader(path.open())) == [["model", "units"], ["plan-1", "512"], ["plan-2", "512"],
                                                 ["r18-a", "512"], ["r18-b", "512"]]
    who = ok(cli("sql", "--engine", "postgres", "SELECT current_user AS who, inet_server_port() AS port")).stdout
    assert READER in who and str(external.port) in who


# What the read-only login must not do over TCP (the cases of tests/test_security.py that fit an external server),
# and a word of the message that says who stopped it: the server's read-only transaction ("writes"), its
# privileges ("permission denied"), the extended protocol ("several statements"), or lce's check of DuckDB's
# statements. DuckDB's postgres_execute says only that its query failed; the store's rows tell the rest.
WRITES = {
    "insert": ("postgres", "INSERT INTO model (name) VALUES ('intruder')", "writes"),
    "update": ("postgres", "UPDATE model SET name = 'renamed'", "writes"),
    "delete": ("postgres", "DELETE FROM unit", "writes"),
    "create temp": ("postgres", "CREATE TEMP TABLE scratch (x int)", "writes"),
    "copy to program": ("postgres", "COPY (SELECT 1) TO PROGRAM 'true'", "permission denied"),
    "copy to file": ("postgres", "COPY model TO '/tmp/lce-model-copy.csv'", "permission denied"),
    "large object": ("postgres", "SELECT lo_from_bytea(0, 'x')", "permission denied"),
    "server file": ("postgres", "SELECT pg_read_file('/etc/passwd')", "permission denied"),
    "commit escape": ("postgres", "COMMIT; DROP TABLE unit_top_image CASCADE", "several statements"),
    "duckdb insert": ("duckdb", "INSERT INTO pg.model (name) VALUES ('intruder')", "writes (INSERT)"),
    # postgres_execute is refused by lce's check before it reaches PostgreSQL (not a reading function); each
    # write it carried stayed refused by PostgreSQL too, while it ran.
    "duckdb execute": ("duckdb", "CALL postgres_execute('pg', 'COMMIT; INSERT INTO model (name) VALUES "
                                 "(''intruder'')')", "postgres_execute()"),
    "duckdb lifted insert": ("duckdb", "CALL postgres_execute('pg', 'COMMIT; SET default_transaction_read_only = "
                                       "off; COMMIT; INSERT INTO model (name) VALUES (''intruder'')')",
                             "postgres_execute()"),
    "duckdb lifted temp": ("duckdb", "CALL postgres_execute('pg', 'COMMIT; SET default_transaction_read_only = "
                                     "off; COMMIT; CREATE TEMP TABLE scratch (x int)')", "postgres_execute()"),
    "duckdb lifted large object": ("duckdb", "SELECT * FROM postgres_execute('pg', 'COMMIT; SET "
                                             "default_transaction_read_only = off; COMMIT; SELECT "
                                             "lo_from_bytea(0, ''x'')')", "postgres_execute()"),
    # postgres_query reaches PostgreSQL, as the reader, in the READ_ONLY attachment.
    "duckdb query insert": ("duckdb", "SELECT * FROM postgres_query('pg', 'WITH x AS (INSERT INTO model (name) "
                                      "VALUES (''intruder'') RETURNING id) SELECT * FROM x')", "could not run"),
    "duckdb query large object": ("duckdb", "SELECT * FROM postgres_query('pg', 'SELECT lo_from_bytea(0, ''x'')')",
                                  "could not run"),
}
STORE = ("SELECT (SELECT count(*) FROM model), (SELECT count(*) FROM unit), (SELECT string_agg(name, ',' ORDER BY"
         " name) FROM model), (SELECT count(*) FROM pg_largeobject_metadata), to_regclass('unit_top_image')::text")


@pytest.mark.parametrize("case", list(WRITES))
def test_sql_without_write_cannot_write_over_tcp(external, admin, ingested, case):
    engine, query, word = WRITES[case]
    before = rows(admin, STORE)
    assert before[0][0] == 4 and before[0][3] == 0  # the four models ingested; no large object
    result = Cli()("sql", "--engine", engine, query)
    refused(result, word)
    assert "Cannot reach" not in result.output
    assert rows(admin, STORE) == before


def test_sql_with_write_writes_over_tcp(external, admin, ingested):
    ok(Cli()("sql", "--engine", "postgres", "--write", "INSERT INTO model (name) VALUES ('by-hand')"))
    assert rows(admin, "SELECT count(*) FROM model WHERE name = 'by-hand'") == [(1,)]
    ok(Cli()("sql", "--engine", "postgres", "--write", "DELETE FROM model WHERE name = 'by-hand'"))


@pytest.mark.parametrize("which", ["LCE_DATABASE_URL", "LCE_DATABASE_READONLY_URL"])
def test_a_wrong_password_is_one_message_naming_the_server(external, monkeypatch, which):
    user = OWNER if which == "LCE_DATABASE_URL" else READER
    monkeypatch.setenv(which, url(external, user, "not-the-password"))
    connection.dispose_all()
    result = Cli()("sql", "SELECT 1")
    refused(result, f"127.0.0.1:{external.port}", "password authentication failed", user)
    assert "not-the-password" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_a_server_that_is_not_listening_is_one_message(external, monkeypatch):
    port = free_port()
    monkeypatch.setenv("LCE_DATABASE_URL", f"postgresql://{OWNER}:secret@127.0.0.1:{port}/{DATABASE}")
    connection.dispose_all()
    result = Cli()("models")
    refused(result, f"127.0.0.1:{port}", "Connection refused")
    assert "secret" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
