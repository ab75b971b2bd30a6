"""Which PostgreSQL lce talks to, and a ready (reachable, migrated) SQLAlchemy engine for it.

    engine = connect()          # LCE_DATABASE_URL, else the embedded server; schema upgraded to head
    with engine.begin() as conn: ...

A database that cannot be reached is one LceError naming the URL with its password masked.
"""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from lce.config import external_database_url, lce_home
from lce.db.server import EmbeddedServer
from lce.errors import LceError


def database_url(start_embedded: bool = True) -> str:
    """The SQLAlchemy URL (psycopg 3 driver): $LCE_DATABASE_URL, else the embedded server's (started if needed)."""
    external = external_database_url()
    if external:
        return normalise_url(external)
    if not start_embedded:
        raise LceError("The embedded server is not running and was not asked to start.")
    return EmbeddedServer(lce_home()).start()


def normalise_url(url: str) -> str:
    """Accept libpq-style `postgresql://` and `postgres://` URLs and use the psycopg 3 driver for them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def masked(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def libpq_dsn(url: str) -> str:
    """The URL as a libpq connection string (for DuckDB's postgres_scanner and psql)."""
    parsed = make_url(url)
    parts = {
        "host": parsed.host or parsed.query.get("host"),
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": parsed.database,
    }
    for key, value in parsed.query.items():
        if key != "host":
            parts[key] = value
    return " ".join(f"{key}={_quote_libpq(str(value))}" for key, value in parts.items() if value)


def _quote_libpq(value: str) -> str:
    if value and all(c not in value for c in " '\\"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def create(url: str) -> Engine:
    """An engine for `url`, checked to be reachable."""
    try:
        engine = create_engine(url, pool_pre_ping=False)
    except (ArgumentError, ModuleNotFoundError) as error:
        raise LceError(f"The database URL {masked(url)} is not a PostgreSQL URL lce can use: {error}") from error
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise LceError(f"Cannot reach the database at {masked(url)}: {reason}") from error
    return engine


_engines: dict[str, Engine] = {}
_migrated: set[str] = set()


def connect(upgrade: bool = True) -> Engine:
    """The engine for the configured database, its schema upgraded to the newest migration on first use.

    Engines are kept per configuration (external URL, or embedded server's home), so a process that changes
    LCE_DATABASE_URL or LCE_HOME (the tests do) gets the right one.
    """
    key = external_database_url() or f"embedded:{lce_home()}"
    if key not in _engines:
        _engines[key] = create(database_url())
    if upgrade and key not in _migrated:
        from lce.db import migrate

        migrate.ensure_head(_engines[key])
        _migrated.add(key)
    return _engines[key]


def dispose_all() -> None:
    """Close every pooled connection and forget the engines (before a server stops, or between tests)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
    _migrated.clear()
