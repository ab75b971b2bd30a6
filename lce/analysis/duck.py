"""DuckDB with lce's Postgres database attached, for analytics and `lce sql`.

    con = duckdb_connection(read_only=True)
    con.sql("SELECT model, count(*) FROM unit_label GROUP BY model").show()

A read-only connection attaches Postgres READ_ONLY through the read-only login (lce/db/roles.py), so that no
query, not even `CALL postgres_execute(...)`, can write; `require_reader=False` lets lce's own queries fall back
to the owner on an external server that has no LCE_DATABASE_READONLY_URL.

A read-only connection is also locked, once `pg` is attached: no file access (COPY, read_csv, logging to a file,
LOAD), no extension installed, loaded or autoloaded, no setting changed (lock_configuration). The lock leaves the
postgres_scanner's own connections open: `pg`, and postgres_scan('dsn', ...) to a server of the query's choosing,
which lce sql's statement check (reading.py) refuses. Every read-only session lce opens is locked the same way:
`lce sql`'s and lce's own (`lce embed`), which runs only lce's fixed SQL and loses nothing. Local files are read
by lce (local_files.py) on another connection and handed over as tables. The owner's connection (`lce sql
--write`) is not locked: the owner may write, files included.

The postgres_scanner extension is loaded from its PyPI wheel (duckdb-extension-postgres-scanner, the same
version as DuckDB, signed), by file path: nothing is downloaded at run time. The Postgres database is attached as
`pg` and made the default, so its tables and views are reachable by name.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from lce.db.connection import connect, connect_reader, hide_passwords, libpq_dsn, masked
from lce.errors import LceError, first_line

ATTACHED = "pg"
# Every session: no extension fetched or loaded behind lce's back, and none that DuckDB did not sign.
SESSION_CONFIG = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "python_enable_replacements": False,  # a table name is a table, never a Python variable of lce's
    # A result leaves a session as Arrow (query.py); DuckDB's own extension types keep HUGEINT, UUID, JSON, BIT
    # and TIME WITH TIME ZONE what they were (else decimal, text, blob), so files are written as before.
    "arrow_lossless_conversion": True,
}


def scanner_extension() -> Path:
    """The postgres_scanner binary inside the installed wheel, for this DuckDB version."""
    import duckdb_extension_postgres_scanner as wheel

    expected = Path(wheel.__file__).parent / "extensions" / f"v{duckdb.__version__}" / "postgres_scanner.duckdb_extension"
    if not expected.exists():
        found = sorted(p.parent.name for p in Path(wheel.__file__).parent.glob("extensions/*/*.duckdb_extension"))
        raise LceError(
            f"The postgres_scanner wheel holds the extension for DuckDB {', '.join(found) or 'no version'}, but DuckDB "
            f"is v{duckdb.__version__}; install duckdb-extension-postgres-scanner=={duckdb.__version__}."
        )
    return expected


def duckdb_connection(read_only: bool = True, require_reader: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the (migrated) Postgres database attached as `pg` and in use: through the
    read-only login, and locked, when `read_only`; else the owner's."""
    engine = connect_reader(required=require_reader) if read_only else connect()
    url = engine.url.render_as_string(hide_password=False)
    con = duckdb.connect(config=SESSION_CONFIG)
    con.execute(f"LOAD '{scanner_extension()}'")
    mode = ", READ_ONLY" if read_only else ""
    try:
        con.execute(f"ATTACH '{_escape(libpq_dsn(url))}' AS {ATTACHED} (TYPE postgres{mode})")
    except duckdb.Error as error:  # DuckDB quotes the whole connection string, password included
        raise LceError(f"DuckDB cannot attach the database at {masked(url)}: "
                       f"{hide_passwords(first_line(error))}") from None
    con.execute(f"USE {ATTACHED}")
    if read_only:  # once set up: no file, no extension, and the configuration locked (last)
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    return con


def _escape(value: str) -> str:
    return value.replace("'", "''")
