"""Alembic environment: the database is the one lce uses (or the engine handed in by lce.db.migrate)."""

from alembic import context

from lce.db.schema import Base

config = context.config


def _engine():
    engine = config.attributes.get("engine")
    if engine is None:  # the `alembic` command line
        from lce.db.connection import create, database_url

        engine = create(database_url())
    return engine


def run_migrations_online() -> None:
    with _engine().connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
