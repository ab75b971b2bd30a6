"""Writing transfer-task results to Postgres: one transaction, with the metric as the unit of replacement.

    table = read_task_csv(path)                       # lce.importers.task_csv: a TaskTable
    result = write_task_table(engine, table, replace=False)
    result.outcomes, result.unmatched

Models are matched by name. Values of names that match no stored model are not written but listed (`unmatched`,
with the closest stored name where one is close); a file none of whose models is stored is an error. For each
metric of the file:
- not stored yet: created, with its values;
- stored with the same family, direction, task and dataset, and the same value for every model both hold:
  `unchanged`, or `added` when the file brings values for models the store lacks;
- anything else is a conflict, refused unless `replace`, which swaps the stored metric (definition and every
  value) for the file's.
Either every metric of the call is written, or none is.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from dataclasses import dataclass
from enum import Enum

import psycopg
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from lce.errors import LceError
from lce.records import MetricInfo, TaskTable

SHOWN = 5  # conflicts and names listed in a message before "and N more"


class Outcome(str, Enum):
    CREATED = "created"
    ADDED = "added"
    UNCHANGED = "unchanged"
    REPLACED = "replaced"


@dataclass
class TaskImport:
    table: TaskTable
    outcomes: dict[str, Outcome]  # per metric, in the file's order
    matched: list[str]  # the file's models that are stored
    unmatched: list[str]  # the file's models that are not, in the file's order
    suggestions: dict[str, str]  # unmatched name -> closest stored model name
    values_written: int

    @property
    def changed(self) -> bool:
        return any(outcome is not Outcome.UNCHANGED for outcome in self.outcomes.values())


def write_task_table(engine: Engine, table: TaskTable, replace: bool = False) -> TaskImport:
    """Write the table's metrics and values in one transaction; see the module docstring for the rules."""
    try:
        with engine.begin() as conn:
            return _write(conn, table, replace)
    except (IntegrityError, psycopg.IntegrityError) as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise LceError(f"The database refused the task results: {reason}. Nothing was written.") from error


def _write(conn: Connection, table: TaskTable, replace: bool) -> TaskImport:
    # Two imports at once would both see a metric as new; one waits for the other instead.
    conn.execute(text("LOCK TABLE task_metric IN SHARE ROW EXCLUSIVE MODE"))
    stored_models = dict(conn.execute(text("SELECT name, id FROM model")).all())
    model_ids = {name: stored_models[name] for name in table.models if name in stored_models}
    unmatched = [name for name in table.models if name not in stored_models]
    if not model_ids:
        known = sorted(stored_models)
        raise LceError(
            f"None of the {len(table.models)} model name(s) in {table.path} ({_listed(table.models)}) matches a "
            "stored model, so there is nothing to attach the results to. Import or ingest the models' dissection "
            f"first, or fix the names; the database holds {len(known)} model(s)"
            + (f": {_listed(known)}." if known else ".") + " Nothing was written."
        )
    names = {model_id: name for name, model_id in model_ids.items()}
    new_values: dict[str, dict[int, float]] = defaultdict(dict)
    for value in table.values:
        if value.model in model_ids:
            new_values[value.metric][model_ids[value.model]] = value.value

    metric_names = [metric.name for metric in table.metrics]
    stored = {row.name: row for row in conn.execute(
        text("SELECT id, name, family, direction, task, dataset FROM task_metric WHERE name = ANY(:names)"),
        {"names": metric_names},
    )}
    stored_values: dict[int, dict[int, float]] = defaultdict(dict)
    for metric_id, model_id, value in conn.execute(
        text("SELECT metric_id, model_id, value FROM task_performance WHERE metric_id = ANY(:ids)"),
        {"ids": [row.id for row in stored.values()]},
    ):
        stored_values[metric_id][model_id] = value

    outcomes: dict[str, Outcome] = {}
    conflicts: list[str] = []
    for metric in table.metrics:
        old = stored.get(metric.name)
        new = new_values.get(metric.name, {})
        if old is None:
            outcomes[metric.name] = Outcome.CREATED
            continue
        old_values = stored_values[old.id]
        difference = _difference(metric, old, old_values, new, names)
        if replace:
            same = difference is None and old_values.keys() == new.keys()
            outcomes[metric.name] = Outcome.UNCHANGED if same else Outcome.REPLACED
        elif difference is not None:
            conflicts.append(f"{metric.name} ({difference})")
        else:
            outcomes[metric.name] = Outcome.ADDED if new.keys() - old_values.keys() else Outcome.UNCHANGED
    if conflicts:
        raise LceError(
            f"The database already holds {len(conflicts)} metric(s) of {table.path} with different content: "
            f"{_listed(conflicts, separator='; ')}. Pass --replace to swap them (definition and every value) for "
            "this file's; nothing was written."
        )

    written = 0
    for metric in table.metrics:
        outcome = outcomes[metric.name]
        new = new_values.get(metric.name, {})
        fields = dict(name=metric.name, family=metric.family, direction=metric.direction, task=metric.task,
                      dataset=metric.dataset, source=table.path.name)
        if outcome is Outcome.CREATED:
            metric_id = conn.execute(text(
                "INSERT INTO task_metric (name, family, direction, task, dataset, source)"
                " VALUES (:name, :family, :direction, :task, :dataset, :source) RETURNING id"), fields).scalar_one()
            rows = new
        elif outcome is Outcome.REPLACED:
            metric_id = stored[metric.name].id
            conn.execute(text(
                "UPDATE task_metric SET family = :family, direction = :direction, task = :task,"
                " dataset = :dataset, source = :source WHERE name = :name"), fields)
            conn.execute(text("DELETE FROM task_performance WHERE metric_id = :id"), {"id": metric_id})
            rows = new
        elif outcome is Outcome.ADDED:
            metric_id = stored[metric.name].id
            old_values = stored_values[metric_id]
            rows = {model_id: value for model_id, value in new.items() if model_id not in old_values}
        else:
            continue
        if rows:
            conn.execute(
                text("INSERT INTO task_performance (model_id, metric_id, value) VALUES (:model, :metric, :value)"),
                [dict(model=model_id, metric=metric_id, value=value) for model_id, value in sorted(rows.items())],
            )
            written += len(rows)

    suggestions = {}
    for name in unmatched:
        close = difflib.get_close_matches(name, list(stored_models), n=1, cutoff=0.6)
        if close:
            suggestions[name] = close[0]
    return TaskImport(table, outcomes, list(model_ids), unmatched, suggestions, written)


def _difference(metric: MetricInfo, old, old_values: dict[int, float], new: dict[int, float],
                names: dict[int, str]) -> str | None:
    """The first way the file's metric differs from the stored one, for the message; None when it agrees."""
    for column in ("family", "direction", "task", "dataset"):
        if getattr(old, column) != getattr(metric, column):
            return f"{column} {getattr(old, column)!r} stored, {getattr(metric, column)!r} in the file"
    for model_id, value in sorted(new.items()):
        if model_id in old_values and old_values[model_id] != value:
            return f"{names[model_id]}: {old_values[model_id]:g} stored, {value:g} in the file"
    return None


def _listed(items: list[str], separator: str = ", ") -> str:
    shown = separator.join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")
