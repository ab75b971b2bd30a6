"""Schema versions: Alembic under migrations/, driven from code.

    ensure_head(engine)        # upgrade to the newest revision if needed (every command does this first)
    upgrade(engine, "head"); downgrade(engine, "base"); current(engine); head()
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.exc import ProgrammingError

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


def ensure_head(engine: Engine) -> None:
    if current(engine) != head():
        upgrade(engine)
