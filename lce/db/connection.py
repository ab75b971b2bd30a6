"""Which PostgreSQL lce talks to, as which role, and ready (reachable, migrated) SQLAlchemy engines for it.

    engine = connect()              # the owner: LCE_DATABASE_URL, else the embedded server; schema at head
    reader = connect_reader()       # the read-only login: LCE_DATABASE_READONLY_URL, else the embedded server's
    with engine.begin() as conn: ...

Commands that write use the owner; `lce sql` without --write logs in as the reader, which can only SELECT
(lce/db/roles.py). A database that cannot be reached is one LceError naming the URL with its password masked
(masked(): user:password@ and the query's password= and sslpassword=, which libpq reads there too).
"""

from __future__ import annotations

import re

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from lce.config import DATABASE_URL_ENV, READONLY_URL_ENV, external_database_url, external_readonly_url, lce_home
from lce.db import roles
from lce.db.server import EmbeddedServer
from lce.errors import LceError, first_line


class DatabaseUnreachable(LceError):
    """A server that did not answer a new connection (create()): a wrong URL, or a server stopped or restarting."""


def database_url(role: str = roles.OWNER) -> str:
    """The SQLAlchemy URL (psycopg 3 driver) for `role`: the external server's when LCE_DATABASE_URL is set
    (the reader's from LCE_DATABASE_READONLY_URL), else the embedded server's (started if needed)."""
    external = external_database_url()
    if external:
        if role == roles.OWNER:
            return normalise_url(external, DATABASE_URL_ENV)
        readonly = external_readonly_url()
        if readonly is None:
            raise LceError(
                f"lce sql reads through a read-only login, and {DATABASE_URL_ENV} has none beside it: set "
                f"{READONLY_URL_ENV} to a role that may only SELECT (`lce db upgrade` creates one named "
                f"{roles.READER} when your user may create roles), or pass --write to run as {DATABASE_URL_ENV}'s "
                "user."
            )
        return normalise_url(readonly, READONLY_URL_ENV)
    server = EmbeddedServer(lce_home())
    if role == roles.OWNER or not server.is_running():  # the reader follows the owner's start (connect_reader)
        server.start()
    return server.url(role)


def reader_role() -> str | None:
    """The name of the read-only role that migrations grant SELECT to: the embedded server's, or the user of
    LCE_DATABASE_READONLY_URL (None when an external server has none configured)."""
    if not external_database_url():
        return roles.READER
    readonly = external_readonly_url()
    return make_url(normalise_url(readonly, READONLY_URL_ENV)).username if readonly else None


def normalise_url(url: str, source: str = DATABASE_URL_ENV) -> str:
    """Accept libpq-style `postgresql://` and `postgres://` URLs, use the psycopg 3 driver for them, and refuse
    anything that is not a PostgreSQL URL with one message naming `source` (the variable it came from)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix):]
            break
    try:
        parsed = make_url(url)
        parsed.port  # a port that is not a number raises here  # noqa: B018
    except (ArgumentError, ValueError) as error:
        raise LceError(f"{source} ({masked(url)}) is not a URL lce can read ({first_line(error)}); it "
                       "should look like postgresql://user:password@host:5432/database.") from None
    if parsed.get_backend_name() != "postgresql":
        raise LceError(f"{source} ({masked(url)}) names a {parsed.get_backend_name()!r} database; lce needs "
                       "PostgreSQL (postgresql://user:password@host:5432/database).")
    return url


def masked(url: str) -> str:
    """The URL with every password hidden, for messages: user:password@ and the query's password= and
    sslpassword= (a URL that does not parse too)."""
    try:
        url = make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        pass
    return hide_passwords(url)


# user:password@ in a URL; password= and sslpassword= in a URL's query or a libpq "key=value" string (quoted or
# not). Hiding too much in a message costs nothing; showing a password does.
# The password runs to the token's last @: one holding an @ that is not percent-encoded (p@ss) is hidden whole.
_USERINFO_PASSWORD = re.compile(r"(://[^:/@\s]*:)\S*@")
_KEYWORD_PASSWORD = re.compile(r"""((?:^|[?&\s'"(;,])(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&'"]*)""",
                               re.IGNORECASE)


def hide_passwords(text: str) -> str:
    """`text` (a URL, a libpq connection string, or a driver's message quoting one) with every password in it
    replaced by ***."""
    text = _USERINFO_PASSWORD.sub(r"\1***@", text)
    return _KEYWORD_PASSWORD.sub(r"\1***", text)


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
    """An engine for `url`, checked to be reachable; pooled connections are checked before each use."""
    try:
        # UTF-8 on the wire whatever the database's encoding: with a SQL_ASCII database psycopg would otherwise
        # hand back bytes, which SQLAlchemy cannot read.
        engine = create_engine(url, pool_pre_ping=True, connect_args={"client_encoding": "utf8"})
    except (ArgumentError, ModuleNotFoundError, ValueError) as error:
        raise LceError(f"The database URL {masked(url)} is not a PostgreSQL URL lce can use: "
                       f"{hide_passwords(str(error))}") from error
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as error:
        reason = hide_passwords(first_line(error.orig if error.orig else error))
        if isinstance(error, OperationalError):
            raise DatabaseUnreachable(f"Cannot reach the database at {masked(url)}: {reason}") from error
        # psycopg's ProgrammingError: a query parameter that libpq does not know (`?foo=1`), and the like
        raise LceError(f"The database URL {masked(url)} is not one lce can use: {reason}.") from error
    return engine


_engines: dict[tuple[str, str], Engine] = {}
_migrated: set[str] = set()


def _configuration() -> str:
    return external_database_url() or f"embedded:{lce_home()}"


def connect(upgrade: bool = True) -> Engine:
    """The owner's engine for the configured database, its schema upgraded to the newest migration (and SELECT
    granted to the reader) on first use.

    Engines are kept per configuration (external URL, or embedded server's home) and role, so a process that
    changes LCE_DATABASE_URL or LCE_HOME (the tests do) gets the right one.
    """
    key = _configuration()
    if (key, roles.OWNER) not in _engines:
        _engines[(key, roles.OWNER)] = create(database_url(roles.OWNER))
    if upgrade and key not in _migrated:
        from lce.db import migrate  # alembic loads only where a schema is upgraded (not for readers, db status)

        migrate.ensure_head(_engines[(key, roles.OWNER)], reader_role())
        _migrated.add(key)
    return _engines[(key, roles.OWNER)]


def connect_reader(required: bool = True) -> Engine:
    """The read-only login's engine (the schema is brought to head through the owner first). An external
    server without LCE_DATABASE_READONLY_URL is an LceError when `required`, else the owner's engine (for lce's
    own read-only queries). A login that could write is refused: it would make `lce sql` unsafe."""
    owner = connect()
    key = _configuration()
    if external_database_url() and not external_readonly_url() and not required:
        return owner
    if (key, roles.READER) not in _engines:
        engine = create(database_url(roles.READER))
        with engine.connect() as conn:
            powers = roles.write_powers(conn.connection.driver_connection)
            conn.rollback()
        if powers:
            engine.dispose()
            user = engine.url.username
            raise LceError(f"The read-only login ({READONLY_URL_ENV if external_database_url() else 'embedded'}, "
                           f"user {user}) is not read-only: it {'; it '.join(powers)}. Give lce a role that may "
                           f"only SELECT (`lce db upgrade` creates {roles.READER} when your user may create roles).")
        _engines[(key, roles.READER)] = engine
    return _engines[(key, roles.READER)]


def dispose_all() -> None:
    """Close every pooled connection and forget the engines (before a server stops, or between tests)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
    _migrated.clear()


def stop_embedded() -> bool:
    """Stop the embedded server of LCE_HOME, its pooled connections closed first (lce db stop); False when it was
    not running."""
    dispose_all()
    return EmbeddedServer(lce_home()).stop()
