"""`lce db upgrade`: the schema at the newest revision, and the read-only role ready to read it.

    for said in upgrade_database():   # "schema at revision ...", what was done to the roles, the reader's grant
        print(said)

On an external server (LCE_DATABASE_URL) the read-only role (lce_reader, or the user of LCE_DATABASE_READONLY_URL)
is created when the connecting user may create roles, and PUBLIC loses the temporary tables and large objects
PostgreSQL grants it, as far as that user may (lce.db.roles says what to ask for otherwise). Each line is said as
its step is done, so that a failure later leaves what was done on the screen.
"""

from __future__ import annotations

from collections.abc import Iterator

from lce.config import external_database_url
from lce.db import migrate
from lce.db.connection import connect, reader_role
from lce.db.roles import READER, create_reader, role_exists, secure_external


def upgrade_database() -> Iterator[str]:
    """Migrate the configured database to head and grant the read-only role SELECT on every table and view,
    yielding a line for each step."""
    engine = connect(upgrade=False)
    before = migrate.current(engine)
    migrate.upgrade(engine)
    after = migrate.current(engine)
    yield f"schema at revision {after}" + ("" if before == after else f" (was {before or 'empty'})")
    reader = reader_role() or READER
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        if external_database_url():
            yield create_reader(raw, reader)
        exists = role_exists(raw, reader)
        if external_database_url() and exists:
            yield from secure_external(raw, reader)
        raw.commit()  # on the driver's connection: SQLAlchemy's own commit knows of no transaction here
    if exists:
        granted = migrate.grant_reader(engine, reader)
        yield f"read-only role {reader}: " + ("SELECT granted on every table and view" if granted
                                              else "has SELECT on every table and view")
