"""`lce tasks import|list`: transfer-task results per model (lce correlate relates an embedding to them)."""

from __future__ import annotations

from pathlib import Path

import typer

from lce.analysis.query import run_query
from lce.cli.app import app, console, errors, user_errors
from lce.cli.tables import print_relation
from lce.db.connection import connect
from lce.db.task_performance import Outcome, write_task_table
from lce.importers.task_csv import read_task_csv
from lce.importers.task_families import family_order, read_families
from lce.resources import read_sql

tasks_app = typer.Typer(
    help="Transfer-task results per model (accuracy, AP, angular error, ...), for lce correlate.\n\n"
    "Example: lce tasks import models_performance_on_tasks.csv && lce tasks list",
    no_args_is_help=True,
)
app.add_typer(tasks_app, name="tasks", short_help="Transfer-task results per model: import, list.")


@tasks_app.command("import", short_help="Store transfer-task results from a CSV.")
@user_errors
def import_tasks(
    file: Path = typer.Argument(..., help="Wide CSV (a model column, one column per metric) or long CSV "
                                          "(model,task,dataset,metric,value)."),
    families: Path | None = typer.Option(None, "--families", help="CSV of rules pattern,family,direction[,task,"
                                         "dataset] tried before the built-in ones; family 'ignore' drops a metric."),
    replace: bool = typer.Option(False, "--replace", help="Swap stored metrics (definition and every value) for "
                                                          "this file's, atomically."),
) -> None:
    """Store transfer-task results in one transaction. Each metric gets a family and a direction: dt_* many-shot,
    *_shot few-shot, voc_* detection, sne_* surface normals (sne_Mean and sne_Median lower is better), dt_Avg.
    ignored as an aggregate; a families file adds rules. Models are matched by name: names that match no stored
    model are listed and left out. The same file again changes nothing.

    Example: lce tasks import models_performance_on_tasks.csv --families my_families.csv
    """
    rules = read_families(families) if families is not None else None
    table = read_task_csv(file, rules)
    result = write_task_table(connect(), table, replace=replace)
    for family, names in sorted(table.families().items(), key=lambda item: family_order(item[0])):
        direction = {m.name: m.direction for m in table.metrics}
        lower = [name for name in names if direction[name] == "lower"]
        console.print(f"  {family:<16} {len(names):>3} metric(s)" + (f", lower is better: {', '.join(lower)}"
                                                                      if lower else ""), highlight=False)
    if table.ignored:
        console.print(f"  ignored: {', '.join(table.ignored)}", highlight=False)
    if result.unmatched:
        shown = [name + (f" (stored: {result.suggestions[name]!r}?)" if name in result.suggestions else "")
                 for name in result.unmatched]
        errors.print(f"[bold yellow]warning:[/] {len(result.unmatched)} model name(s) of {file} match no stored "
                     f"model and were not imported: {', '.join(shown)}.", highlight=False, soft_wrap=True)
    counts = {outcome: sum(1 for o in result.outcomes.values() if o is outcome) for outcome in Outcome}
    if not result.changed:
        console.print(f"Nothing changed: all {len(result.outcomes)} metric(s) are already stored with these values "
                      "(--replace swaps them anyway).")
    else:
        done = ", ".join(f"{count} {outcome.value}" for outcome, count in counts.items() if count)
        console.print(f"Imported {len(result.outcomes)} metric(s) ({done}) for {len(result.matched)} model(s): "
                      f"{result.values_written:,} value(s) written.")


@tasks_app.command("list", short_help="List the stored task metrics.")
@user_errors
def list_tasks() -> None:
    """Stored metrics: family, direction, task, dataset, how many models have a value, and the range.

    Example: lce tasks list
    """
    print_relation(run_query(read_sql("queries/task_metrics"), engine="postgres"), max_rows=10_000)
