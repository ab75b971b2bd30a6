"""The views and SQL functions of sql/, created and dropped by migrations.

Each file sql/<name>.sql creates a view <name> (and, for views that depend on the IoU cut-off, a function
<name>_at(min_iou double precision) under it). Each migration names the views it creates, so that upgrading an
empty database replays history; a migration that changes a view (or a table under one) drops and creates it
again from its file, so the files are the single definition.
"""

from __future__ import annotations

from lce.resources import read_sql

# Every view, in dependency order (each may use the ones before it).
VIEWS = ("unit_label", "model_concept_units", "model_category_profile", "model_concept_matrix",
         "unit_category_label", "model_task_performance")


def create(execute, names: tuple[str, ...]) -> None:
    """Create the views; `execute` runs one SQL string (alembic's op.execute)."""
    for name in names:
        execute(read_sql(name))


def drop(execute, names: tuple[str, ...]) -> None:
    for name in reversed(names):
        execute(f"DROP VIEW IF EXISTS {name}")
        execute(f"DROP FUNCTION IF EXISTS {name}_at(double precision)")
