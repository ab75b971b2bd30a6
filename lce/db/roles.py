"""The two database roles: an owner that commands use, and a read-only login for `lce sql`.

    provision_embedded(superuser_conn, "lce")      # the embedded server: roles, database, revocations
    grant_reader(owner_conn, "lce_reader")          # after migrations: SELECT on every table and view
    powers = write_powers(reader_conn)              # [] when the login can only read

`lce_owner` owns the schema (no superuser, no CREATEROLE, no CREATEDB). `lce_reader` can connect and SELECT,
nothing else: no membership in the owner, no server-file roles, no CREATE anywhere, no temporary tables, no large
objects, and `default_transaction_read_only` on. On an external server the reader is whatever role
LCE_DATABASE_READONLY_URL logs in as; `lce db upgrade` creates `lce_reader` there when the connecting user may,
and takes from PUBLIC what the connecting user may take (secure_external).
"""

from __future__ import annotations

from psycopg import sql

OWNER = "lce_owner"
READER = "lce_reader"
# Large-object constructors are granted to PUBLIC: a SELECT-only role could still write through them.
LARGE_OBJECT_WRITERS = ("lo_create(oid)", "lo_creat(integer)", "lo_from_bytea(oid, bytea)")
# Advisory locks are granted to PUBLIC too: a read-only login holding the lock space of lce's writers (runs.py,
# migrate.py, locks.py) for as long as its session lasts (SELECT pg_advisory_lock(7425001), pg_sleep(...)) would
# stop every ingest and upgrade. The locks are the owner's alone.
ADVISORY_LOCKS = tuple(f"{name}({arguments})" for name in (
    "pg_advisory_lock", "pg_advisory_lock_shared", "pg_advisory_xact_lock", "pg_advisory_xact_lock_shared",
    "pg_try_advisory_lock", "pg_try_advisory_lock_shared", "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared") for arguments in ("bigint", "integer, integer"))
# Default roles that reach outside the database (files, programs).
SERVER_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program")


def provision_embedded(conn, database: str) -> None:
    """As the embedded server's superuser (connected to any database): the two roles, and `database` owned by
    the owner. Idempotent; lce/db/server.py runs it at every start, under its lock."""
    for role in (OWNER, READER):
        if not role_exists(conn, role):
            _create_login(conn, role)
    owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (database,)).fetchone()
    if owner is None:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(OWNER)))
    elif owner[0] != OWNER:  # a database made by lce 0.1.0, owned by the superuser
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(database), sql.Identifier(OWNER)))
    conn.execute(sql.SQL("ALTER ROLE {} RESET ALL").format(sql.Identifier(READER)))
    _read_only_by_default(conn, READER)


def secure_database(conn, database: str) -> None:
    """As the superuser, connected to `database`: every object of the schema owned by the owner (lce 0.1.0 made
    them as the superuser), nothing granted to PUBLIC that writes, the reader allowed to connect only."""
    for statement in _ownership_transfers(conn):
        conn.execute(statement)
    _close_database(conn, database, READER)
    conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(sql.Identifier(database),
                                                                                 sql.Identifier(OWNER)))
    conn.execute(_REVOKE_LARGE_OBJECTS)
    for statement in _owner_locks(OWNER):
        conn.execute(statement)


# The large-object constructors, as one statement: what only a superuser may take from PUBLIC.
_LARGE_OBJECT_FUNCTIONS = ", ".join(f"pg_catalog.{function}" for function in LARGE_OBJECT_WRITERS)
_REVOKE_LARGE_OBJECTS = f"REVOKE EXECUTE ON FUNCTION {_LARGE_OBJECT_FUNCTIONS} FROM PUBLIC"
_LOCK_FUNCTIONS = ", ".join(f"pg_catalog.{function}" for function in ADVISORY_LOCKS)


def _owner_locks(owner: str) -> tuple[str, str]:
    """The advisory-lock functions taken from PUBLIC and given to `owner` (a role name, or CURRENT_USER)."""
    return (f"REVOKE EXECUTE ON FUNCTION {_LOCK_FUNCTIONS} FROM PUBLIC",
            f"GRANT EXECUTE ON FUNCTION {_LOCK_FUNCTIONS} TO {owner}")


def _may_create_large_objects(role: str) -> str:
    """SQL that is true when `role` (an SQL expression: current_user, a parameter) may run any of them."""
    return "(" + " OR ".join(f"has_function_privilege({role}, 'pg_catalog.{function}', 'EXECUTE')"
                             for function in LARGE_OBJECT_WRITERS) + ")"


def _close_database(conn, database: str, reader: str) -> None:
    """Nothing of `database` left to PUBLIC (connecting, temporary tables, objects in schema public); `reader`
    may connect. As the database's owner or a superuser."""
    ident = {"db": sql.Identifier(database), "reader": sql.Identifier(reader)}
    for text in ("REVOKE ALL ON DATABASE {db} FROM PUBLIC", "GRANT CONNECT ON DATABASE {db} TO {reader}",
                 "REVOKE CREATE ON SCHEMA public FROM PUBLIC"):
        conn.execute(sql.SQL(text).format(**ident))


def _ownership_transfers(conn) -> list:
    """ALTER ... OWNER TO lce_owner for every table, view, sequence and function in `public` it does not own.
    Sequences that belong to a table follow it, so they are altered only when free-standing."""
    rows = conn.execute(
        """
        SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
               ELSE 'TABLE' END, c.oid::regclass::text
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
          AND c.relowner <> %s::regrole
          AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                   AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
        UNION ALL
        SELECT 'FUNCTION', p.oid::regprocedure::text
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND p.proowner <> %s::regrole
        """,
        (OWNER, OWNER),
    ).fetchall()
    return [sql.SQL("ALTER {} {} OWNER TO {}").format(sql.SQL(kind), sql.SQL(name), sql.Identifier(OWNER))
            for kind, name in rows]


def reader_grants_missing(conn, reader: str) -> bool:
    """Whether `reader` exists and lacks USAGE on `public` or SELECT on one of its tables or views."""
    if not role_exists(conn, reader):
        return False
    missing = conn.execute(
        """
        SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
          AND NOT has_table_privilege(%s, c.oid, 'SELECT')
        """,
        (reader,),
    ).fetchone()[0]
    usage = conn.execute("SELECT has_schema_privilege(%s, 'public', 'USAGE')", (reader,)).fetchone()[0]
    return bool(missing) or not usage


def grant_reader(conn, reader: str) -> bool:
    """As the schema's owner: SELECT for `reader` on every table and view of `public`, now and for tables made
    later. Does nothing (and returns False) when the reader has them already or does not exist."""
    if not reader_grants_missing(conn, reader):
        return False
    role = sql.Identifier(reader)
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role))
    conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(role))
    conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {}").format(role))
    return True


def create_reader(conn, reader: str = READER) -> str:
    """On an external server, as the connecting user: create the reader role if it is missing and this user may.
    Returns what was done, for `lce db upgrade` to say."""
    if role_exists(conn, reader):
        return f"read-only role {reader} exists"
    may = conn.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    if not may:
        return (f"read-only role {reader} is missing and {_current_user(conn)} may not create roles: ask an "
                f"administrator for `CREATE ROLE {reader} LOGIN PASSWORD '...'`, then run lce db upgrade again")
    _create_login(conn, reader)
    _read_only_by_default(conn, reader)
    return (f"created read-only role {reader}; give it a password (ALTER ROLE {reader} PASSWORD '...') and set "
            f"LCE_DATABASE_READONLY_URL to its login")


def secure_external(conn, reader: str = READER) -> list[str]:
    """On an external server, as the connecting user: what secure_database does on the embedded server, as far as
    this user may. PostgreSQL grants every new database's CONNECT and TEMPORARY, and the large-object constructors,
    to PUBLIC; a read-only login that lifts its own `default_transaction_read_only` could then make temporary
    tables and large objects. Returns what was done, or what to ask an administrator for, for `lce db upgrade`."""
    database, superuser, owns = conn.execute(
        "SELECT current_database(), r.rolsuper, d.datdba = r.oid FROM pg_roles r, pg_database d"
        " WHERE r.rolname = current_user AND d.datname = current_database()").fetchone()
    said = []
    if superuser or owns:
        _close_database(conn, database, reader)
        said.append(f"database {database}: nothing granted to PUBLIC (no temporary tables), {reader} may connect")
    elif conn.execute("SELECT has_database_privilege(%s, current_database(), 'TEMPORARY')", (reader,)).fetchone()[0]:
        said.append(f"{reader} may create temporary tables in {database}: ask its owner for `REVOKE ALL ON DATABASE "
                    f"{database} FROM PUBLIC; GRANT CONNECT ON DATABASE {database} TO {reader}`")
    if superuser:
        conn.execute(_REVOKE_LARGE_OBJECTS)
        said.append("large objects: their constructors revoked from PUBLIC")
        for statement in _owner_locks("CURRENT_USER"):  # lce's writer on this server: the login upgrading it
            conn.execute(statement)
        said.append(f"advisory locks: revoked from PUBLIC, granted to {_current_user(conn)}")
        return said
    if conn.execute("SELECT " + _may_create_large_objects("%(reader)s"), {"reader": reader}).fetchone()[0]:
        said.append(f"{reader} may create large objects: ask an administrator (a superuser) for "
                    f"`{_REVOKE_LARGE_OBJECTS}` in database {database}")
    if conn.execute("SELECT has_function_privilege(%s, 'pg_catalog.pg_advisory_lock(bigint)', 'EXECUTE')",
                    (reader,)).fetchone()[0]:
        said.append(f"{reader} may take advisory locks (and hold up lce's writers): ask an administrator (a "
                    f"superuser) for `{'; '.join(_owner_locks(_current_user(conn)))}` in database {database}")
    return said


def write_powers(conn) -> list[str]:
    """What the current login could do beyond reading the store, in words ([] for a proper read-only login)."""
    row = conn.execute(
        """
        SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb,
               has_database_privilege(current_database(), 'CREATE'),
               has_schema_privilege('public', 'CREATE'),
               (SELECT string_agg(c.relname, ', ' ORDER BY c.relname) FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
                  AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')),
               (SELECT string_agg(g.rolname, ', ' ORDER BY g.rolname) FROM pg_roles g
                WHERE g.rolname <> current_user AND pg_has_role(current_user, g.oid, 'USAGE')
                  AND g.rolname NOT IN ('pg_read_all_data', 'pg_read_all_settings', 'pg_read_all_stats',
                                        'pg_stat_scan_tables', 'pg_monitor')),
               -- A login that lifts its own default_transaction_read_only could write these (PUBLIC has both in
               -- a new database unless they are taken away: secure_database, secure_external).
               has_database_privilege(current_database(), 'TEMPORARY'),
               """ + _may_create_large_objects("current_user") + """
        FROM pg_roles r WHERE r.rolname = current_user
        """
    ).fetchone()
    superuser, createrole, createdb, create_db, create_schema, writable, member_of, temporary, large_objects = row
    powers = [name for flag, name in ((superuser, "is a superuser"), (createrole, "may create roles"),
                                      (createdb, "may create databases"),
                                      (create_db, "may create schemas"),
                                      (create_schema, "may create objects in schema public"),
                                      (temporary, "may create temporary tables"),
                                      (large_objects, "may create large objects")) if flag]
    if writable:
        powers.append(f"may write tables {writable}")
    if member_of:
        powers.append(f"acts as role(s) {member_of}")
    return powers


def role_exists(conn, role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def _create_login(conn, role: str) -> None:
    """A login with no power beyond what is granted to it (nor inherited from roles it may join)."""
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT").format(
        sql.Identifier(role)))


def _read_only_by_default(conn, role: str) -> None:
    conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(sql.Identifier(role)))


def _current_user(conn) -> str:
    return conn.execute("SELECT current_user").fetchone()[0]
