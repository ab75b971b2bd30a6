"""Schema versions: Alembic under migrations/, driven from code.

    ensure_head(engine, "lce_reader")  # upgrade to the newest revision if needed, SELECT granted to the reader
    upgrade(engine, "head"); downgrade(engine, "base"); current(engine); head()

Every command does ensure_head first, as the owner. The reader's grants are checked each time (a data directory
upgraded from lce 0.1.0 is at head already but has none), and given under the same advisory lock as migrations.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.exc import ProgrammingError

from lce.db import roles
from lce.resources import alembic_ini, migrations_dir

# Held while migrating, so that two lce processes starting at once do not both upgrade.
_ADVISORY_LOCK = 7_425_001


def config(engine: Engine) -> Config:
    cfg = Config(str(alembic_ini()))
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["engine"] = engine
    return cfg


def head() -> str:
    return ScriptDirectory(str(migrations_dir())).get_current_head()


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except ProgrammingError:
            return None


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _ADVISORY_LOCK})
        try:
            command.upgrade(config(engine), revision)
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _ADVISORY_LOCK})
            conn.commit()


def downgrade(engine: Engine, revision: str = "base") -> None:
    command.downgrade(config(engine), revision)


def ensure_head(engine: Engine, reader: str | None = None) -> None:
    if current(engine) != head():
        upgrade(engine)
    if reader is not None:
        grant_reader(engine, reader)


def grant_reader(engine: Engine, reader: str) -> bool:
    """SELECT on every table and view for `reader`, given once (concurrent commands wait on the lock)."""
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        if not roles.reader_grants_missing(raw, reader):
            conn.rollback()
            return False
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
        granted = roles.grant_reader(raw, reader)
        conn.commit()
        return granted
