"""The views and SQL functions of sql/, created and dropped by migrations.

Each file sql/<name>.sql creates a function <name>_at(min_iou double precision) and a view <name> over it.
A migration that changes a view or a table under one drops them all (drop_all) and creates them again from the
files (create_all), so the files are the single definition.
"""

from __future__ import annotations

from lce.resources import read_sql

# In dependency order: each view may use the ones before it.
VIEWS = ("unit_label", "model_concept_units", "model_category_profile", "model_concept_matrix")


def create_all(execute) -> None:
    """Create every view; `execute` runs one SQL string (alembic's op.execute, or a connection's exec_driver_sql)."""
    for name in VIEWS:
        execute(read_sql(name))


def drop_all(execute) -> None:
    for name in reversed(VIEWS):
        execute(f"DROP VIEW IF EXISTS {name}")
        execute(f"DROP FUNCTION IF EXISTS {name}_at(double precision)")
