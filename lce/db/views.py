"""The views and SQL functions of sql/, created and dropped by migrations.

Each file sql/<name>.sql creates a view <name> (and, for views that depend on the IoU cut-off, a function
<name>_at(min_iou double precision) under it). Each migration names the views it creates, so that upgrading an
empty database replays history; a migration that changes a view (or a table under one) drops and creates it
again from its file, so the files are the single definition.

A view's earlier definition stays as sql/previous/<name>.<revision>.sql (the last revision that held it), so
that a migration replayed on an empty database, or a downgrade, creates the view as it was at its revision:
`create(op.execute, VIEWS, revision)`.

A view that took the place of a table (unit_concept, a table until migration 0008), or that a later migration
added (run_control_of, 0009), exists only from its revision on: create() skips it for earlier revisions, and
drop() drops it only where it is a view.
"""

from __future__ import annotations

from lce.resources import read_sql

# Every view, in dependency order (each may use the ones before it).
VIEWS = ("unit_concept", "run_control_of", "unit_label", "model_concept_units", "model_category_profile",
         "model_concept_matrix", "unit_category_label", "model_task_performance")


# Views a migration redefined: name -> the last revisions of each earlier definition, ascending.
PREVIOUS = {"unit_label": ("0005", "0008"), "unit_category_label": ("0005", "0007")}

# Views that replaced a table of the same name, or came later: name -> the revision that made them.
SINCE = {"unit_concept": "0008", "run_control_of": "0009"}


def definition(name: str, revision: str | None = None) -> str:
    """The SQL of view `name` as it was at `revision` (None: the newest, sql/<name>.sql)."""
    for last in PREVIOUS.get(name, ()):
        if revision is not None and revision <= last:  # revisions are zero-padded numbers: text order works
            return read_sql(f"previous/{name}.{last}")
    return read_sql(name)


def create(execute, names: tuple[str, ...], revision: str | None = None) -> None:
    """Create the views as at `revision` (None: the newest); `execute` runs one SQL string (op.execute)."""
    for name in names:
        if revision is None or revision >= SINCE.get(name, ""):
            execute(definition(name, revision))


def drop(execute, names: tuple[str, ...]) -> None:
    for name in reversed(names):
        if name in SINCE:
            # Before SINCE[name] a table has this name, which DROP VIEW IF EXISTS refuses rather than skips.
            execute(f"DO $$ BEGIN IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('public.{name}')) = 'v'"
                    f" THEN DROP VIEW {name}; END IF; END $$")
            continue
        execute(f"DROP VIEW IF EXISTS {name}")
        # By name alone: unit_label_at's parameters changed in 0009 (each name has one function at a time).
        execute(f"DROP FUNCTION IF EXISTS {name}_at")
