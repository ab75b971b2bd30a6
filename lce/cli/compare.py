"""`lce compare`: how two models relate."""

from __future__ import annotations

import json
import sys

import typer
from rich.table import Table

from lce.analysis.compare import COUNT_TEST, FALSE_DISCOVERY_RATE, write_csv
from lce.analysis.compare import compare as run_compare
from lce.cli.app import app, console, user_errors
from lce.cli.options import MinIou, run_choice
from lce.vocabulary import IOU_CUTOFF
from lce.errors import LceError

COMPARE_FORMATS = ("table", "csv", "json")
RunLayer, RunProbe, RunVariant = run_choice("a model")


@app.command("compare", short_help="How two models relate: shared concepts, categories, distance.")
@user_errors
def compare(
    model_a: str = typer.Argument(..., help="First model (lce models lists them)."),
    model_b: str = typer.Argument(..., help="Second model."),
    min_iou: MinIou = IOU_CUTOFF,
    layer: RunLayer = None,
    probe: RunProbe = None,
    variant: RunVariant = None,
    embedding: int | None = typer.Option(None, "--embedding", help="Embedding id for the distance (default: the "
                                                                   "newest stored embedding that holds both)."),
    fmt: str = typer.Option("table", "--format", help="table (terminal), csv (one row per concept) or json "
                                                      "(everything, the distance included)."),
) -> None:
    """The concepts both models have and those only one has (interpretable units and best IoU per concept), their
    interpretable units and concepts per category, and their distance in the newest embedding that holds both.
    Per concept, p (Fisher's exact test of the two unit counts, each out of its run's units), q (Benjamini-Hochberg
    over the concepts listed) and whether the counts differ beyond unit sampling (q <= 0.05).

    Example: lce compare 'MoCoV1(R)' 'InfoMin(R)' --format json > pair.json
    """
    if fmt not in COMPARE_FORMATS:
        raise LceError(f"--format must be one of {', '.join(COMPARE_FORMATS)}, not {fmt!r}.")
    comparison = run_compare(model_a, model_b, min_iou=min_iou, layer=layer, probe=probe, variant=variant,
                             embedding_id=embedding)
    if fmt == "csv":
        write_csv(comparison, sys.stdout)
    elif fmt == "json":
        sys.stdout.write(json.dumps(comparison.to_json(), indent=1) + "\n")
    else:
        _print_comparison(comparison)


def _print_comparison(comparison) -> None:
    a, b = comparison.a, comparison.b
    for side, run in (("A", a), ("B", b)):
        console.print(f"{side}: {run.model} (run {run.run_id}: {run.layer}, probe {run.probe}, {run.variant}, "
                      f"{run.source})", highlight=False)
    console.print(f"IoU > {comparison.min_iou}: {a.interpretable} of {a.units} units of A and {b.interpretable} of "
                  f"{b.units} of B are interpretable; {len(comparison.shared)} concepts shared, "
                  f"{len(comparison.only_a)} only in A, {len(comparison.only_b)} only in B"
                  + (f" (Jaccard {comparison.jaccard:.2f})" if comparison.jaccard is not None else ""),
                  highlight=False)
    console.print(f"{len(comparison.significant)} of {len(comparison.concepts)} concepts differ in unit counts beyond "
                  f"unit sampling ({COUNT_TEST}; Benjamini-Hochberg q <= {FALSE_DISCOVERY_RATE}).", highlight=False)
    distance = comparison.embedding
    if distance is None:
        console.print(f"Distance: {comparison.embedding_note}", highlight=False)
    else:
        clusters = ("the same cluster" if distance.same_cluster
                    else f"clusters {distance.cluster_a} and {distance.cluster_b}")
        console.print(
            f"Distance in embedding {distance.embedding_id} ({distance.method}, {distance.components} components, "
            f"IoU > {distance.min_iou}): {distance.distance:.3f}, the {_ordinal(distance.rank)} closest of its "
            f"{distance.pairs} pairs (median {distance.median_distance:.3f}, largest {distance.max_distance:.3f}); "
            f"{clusters}.", highlight=False)
    table = Table("category", header_style="bold", title="Interpretable units and concepts per category")
    for column in ("units A", "units B", "concepts A", "concepts B", "shared"):
        table.add_column(column, justify="right")
    for row in comparison.categories:
        table.add_row(row.category, str(row.units_a), str(row.units_b), str(row.concepts_a), str(row.concepts_b),
                      str(row.shared))
    console.print(table)
    table = Table("concept", "category", "in", header_style="bold", title="Concepts")
    for column in ("units A", "best IoU A", "units B", "best IoU B", "p", "q", "significant"):
        table.add_column(column, justify="right")
    shown = {"both": "both", "only_a": "A only", "only_b": "B only"}
    for row in comparison.concepts:
        table.add_row(row.label.replace("[", r"\["), row.category, shown[row.presence], str(row.units_a),
                      _iou(row.max_iou_a), str(row.units_b), _iou(row.max_iou_b), _probability(row.p),
                      _probability(row.q), "yes" if row.significant else "")
    console.print(table)


def _iou(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _probability(value: float | None) -> str:
    return "" if value is None else f"{value:.2g}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
