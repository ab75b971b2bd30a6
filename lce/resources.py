"""Files that ship beside the code: the Alembic migrations and the .sql files.

In a checkout (or an editable install) they sit at the repository's top level; a wheel carries them inside
the package as lce/_migrations, lce/_sql and lce/_alembic.ini (see pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _locate(packaged: str, top_level: str) -> Path:
    inside = _PACKAGE / packaged
    return inside if inside.exists() else _PACKAGE.parent / top_level


def migrations_dir() -> Path:
    return _locate("_migrations", "migrations")


def sql_dir() -> Path:
    return _locate("_sql", "sql")


def alembic_ini() -> Path:
    return _locate("_alembic.ini", "alembic.ini")


def read_sql(name: str) -> str:
    """The text of sql/<name>.sql (name may include a subfolder: 'queries/embedding_matrix')."""
    return (sql_dir() / f"{name}.sql").read_text()
