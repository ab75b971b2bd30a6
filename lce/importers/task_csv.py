"""Transfer-task results per model: a wide CSV (one row per model, one column per metric) or a long one
(`model,task,dataset,metric,value`, one row per model and metric).

    table = read_task_csv(Path("models_performance_on_tasks.csv"))          # built-in family rules
    table = read_task_csv(path, rules=read_families(Path("families.csv")))  # the user's rules tried first
    table.metrics, table.values, table.ignored

Wide: the `model` column names the model; every other column is a metric, except columns without a name or named
`Unnamed: ...` (index columns that pandas writes). Long: `task` and `dataset` are optional columns; the family
rules see the metric name first, then the task. Each metric gets a family and a direction from the rules
(lce.importers.task_families); a metric no rule covers is an error that lists them all. An empty or NaN cell is a
missing value, not an error; any other cell that is not a finite number is. Model names (200 characters at most)
and metric, task and dataset names (500) are one line of printable text (lce.names.check_name).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from lce.errors import LceError
from lce.importers.common import Where, csv_header, read_csv
from lce.importers.task_families import BUILT_IN_RULES, IGNORE, FamilyRule, classify
from lce.names import MAX_LABEL, check_name
from lce.records import MetricInfo, TaskTable, TaskValue

LONG_COLUMNS = ("model", "task", "dataset", "metric", "value")
MISSING = ("", "nan", "na", "n/a")


def read_task_csv(path: Path, rules: list[FamilyRule] | None = None) -> TaskTable:
    """Parse and check the whole file; `rules` (a families file's) are tried before the built-in ones."""
    header = csv_header(path)
    all_rules = [*(rules or []), *BUILT_IN_RULES]
    if "model" in header and "metric" in header and "value" in header:
        table = _read_long(path, all_rules)
    else:
        table = _read_wide(path, header, all_rules)
    if not table.values:
        raise LceError(f"{path} holds no values: every metric cell is empty.")
    return table


def _read_wide(path: Path, header: list[str], rules: list[FamilyRule]) -> TaskTable:
    if "model" not in header:
        raise LceError(f"{path} lacks the column model; its header is {','.join(header)!r}. A wide task CSV has a "
                       "model column and one column per metric; a long one has the columns "
                       f"{','.join(LONG_COLUMNS)}.")
    columns = [c for c in header if c != "model" and c.strip() and not c.startswith("Unnamed:")]
    for column in columns:
        check_name(column, Where(path, 1), "metric name", MAX_LABEL)
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise LceError(f"{path}: the header names the column(s) {', '.join(repeated)} more than once.")
    metrics, ignored = _classify(path, columns, rules)
    values: list[TaskValue] = []
    seen: dict[str, Where] = {}
    for where, row in read_csv(path, ["model"]):
        model = _model_name(row, where)
        if model in seen:
            raise LceError(f"{where}: model {model!r} appears twice (first at line {seen[model].line}).")
        seen[model] = where
        for metric in metrics:
            value = parse_value(row[metric.name], where, metric.name)
            if value is not None:
                values.append(TaskValue(model, metric.name, value))
    if not seen:
        raise LceError(f"{path} has a header but no models.")
    return TaskTable(path, "wide", metrics, values, list(seen), ignored)


def _read_long(path: Path, rules: list[FamilyRule]) -> TaskTable:
    values: list[TaskValue] = []
    described: dict[str, tuple[str | None, str | None, Where]] = {}  # metric -> task, dataset, first line
    pairs: dict[tuple[str, str], Where] = {}
    models: dict[str, None] = {}
    for where, row in read_csv(path, ["model", "metric", "value"]):
        model = _model_name(row, where)
        metric = check_name((row["metric"] or "").strip(), where, "metric name", MAX_LABEL)
        task = (row.get("task") or "").strip() or None
        dataset = (row.get("dataset") or "").strip() or None
        for name, what in ((task, "task name"), (dataset, "dataset name")):
            if name is not None:
                check_name(name, where, what, MAX_LABEL)
        first = described.setdefault(metric, (task, dataset, where))
        if first[:2] != (task, dataset):
            raise LceError(
                f"{where}: metric {metric!r} has task {task!r} and dataset {dataset!r}, but {first[0]!r} and "
                f"{first[1]!r} at line {first[2].line}: a metric name must name one measurement (for example "
                f"{(dataset or 'dataset') + '_' + metric!r})."
            )
        if (model, metric) in pairs:
            raise LceError(f"{where}: model {model!r} has a second value for metric {metric!r} (first at line "
                           f"{pairs[model, metric].line}).")
        pairs[model, metric] = where
        models.setdefault(model)
        value = parse_value(row["value"], where, "value")
        if value is not None:
            values.append(TaskValue(model, metric, value))
    if not described:
        raise LceError(f"{path} has a header but no rows.")
    metrics, ignored = _classify(path, list(described), rules, tasks={m: d[0] for m, d in described.items()})
    metrics = [replace(m, task=described[m.name][0] or m.task, dataset=described[m.name][1] or m.dataset)
               for m in metrics]
    kept = {m.name for m in metrics}
    return TaskTable(path, "long", metrics, [v for v in values if v.metric in kept], list(models), ignored)


def _classify(
    path: Path, names: list[str], rules: list[FamilyRule], tasks: dict[str, str | None] | None = None
) -> tuple[list[MetricInfo], list[str]]:
    metrics, ignored, unknown = [], [], []
    for name in names:
        info = classify(name, rules)
        task = (tasks or {}).get(name)
        if info is None and task:
            by_task = classify(task, rules)
            info = replace(by_task, name=name) if by_task else None
        if info is None:
            unknown.append(name)
        elif info.family == IGNORE:
            ignored.append(name)
        else:
            metrics.append(info)
    if unknown:
        raise LceError(
            f"{path}: no task family for the metric(s) {', '.join(unknown)}. Name their family in a families file "
            f"(--families FILE, rows pattern,family,direction such as '{unknown[0]},my-family,higher'), or give "
            "them the family 'ignore' to leave them out; nothing was written."
        )
    if not metrics:
        raise LceError(f"{path} has no metric columns (only {', '.join(ignored) or 'model'}).")
    return metrics, ignored


def _model_name(row: dict[str, str], where: Where) -> str:
    return check_name((row["model"] or "").strip(), where, "model name")


def parse_value(cell: str | None, where: Where, column: str) -> float | None:
    """A finite number; an empty or NaN cell is None (a missing value)."""
    if cell is None or cell.strip().lower() in MISSING:
        return None
    try:
        value = float(cell)
    except ValueError:
        raise LceError(f"{where}, column {column}: {cell!r} is not a number.") from None
    if math.isnan(value):
        return None
    if math.isinf(value):
        raise LceError(f"{where}, column {column}: {cell!r} is not a finite number.")
    return value
