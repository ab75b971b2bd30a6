"""`lce compare` and `lce report`: how two models relate, and the whole store as a static HTML report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.table import Table

from lce.cli.app import app, console, errors, progress_bars, user_errors
from lce.dissect.variants import IOU_CUTOFF, one_of
from lce.errors import LceError

COMPARE_FORMATS = ("table", "csv", "json")


@app.command("compare", short_help="How two models relate: shared concepts, categories, distance.")
@user_errors
def compare(
    model_a: str = typer.Argument(..., help="First model (lce models lists them)."),
    model_b: str = typer.Argument(..., help="Second model."),
    min_iou: float = typer.Option(IOU_CUTOFF, "--min-iou", help="A unit counts when its IoU exceeds this."),
    layer: str | None = typer.Option(None, "--layer", help="Layer, when a model has runs on several."),
    probe: str | None = typer.Option(None, "--probe", help="Probe, when a model has runs on several."),
    variant: str | None = typer.Option(None, "--variant", help=f"{one_of()}, when a model has runs of several."),
    embedding: int | None = typer.Option(None, "--embedding", help="Embedding id for the distance (default: the "
                                                                   "newest stored embedding that holds both)."),
    fmt: str = typer.Option("table", "--format", help="table (terminal), csv (one row per concept) or json "
                                                      "(everything, the distance included)."),
) -> None:
    """The concepts both models have and those only one has (interpretable units and best IoU per concept), their
    interpretable units and concepts per category, and their distance in the newest embedding that holds both.

    Example: lce compare 'MoCoV1(R)' 'InfoMin(R)' --format json > pair.json
    """
    from lce.analysis.compare import compare as run_compare
    from lce.analysis.compare import write_csv

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
    for column in ("units A", "best IoU A", "units B", "best IoU B"):
        table.add_column(column, justify="right")
    shown = {"both": "both", "only_a": "A only", "only_b": "B only"}
    for row in comparison.concepts:
        table.add_row(row.label.replace("[", r"\["), row.category, shown[row.presence], str(row.units_a),
                      _iou(row.max_iou_a), str(row.units_b), _iou(row.max_iou_b))
    console.print(table)


def _iou(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@app.command("report", short_help="Write a static HTML report of the store.")
@user_errors
def report(
    out: Path = typer.Option(..., "--out", help="Directory to write the report to (DIR/index.html is its entry)."),
    embedding: int | None = typer.Option(None, "--embedding", help="Embedding id to show (default: the newest)."),
    min_iou: float | None = typer.Option(None, "--min-iou", help="Count units as interpretable above this IoU "
                                                                 "(default: the embedding's cut-off)."),
    units: int | None = typer.Option(None, "--units", help="Draw strips for at most this many units per run, those "
                                                           "with the highest IoU (default: every unit)."),
    images: bool = typer.Option(True, "--images/--no-images", help="Draw the unit strips of dissected runs."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda, for the strips."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per forward pass when drawing strips."),
) -> None:
    """Write a static HTML report of the store that opens from disk (no server, no network): the embedding with
    its clusters, loadings and elbow curve, every model's category profile and top concepts, and per run a sortable
    table of units, with strips of each dissected unit's top images and mask (drawn once, then cached).

    Example: lce report --out report && xdg-open report/index.html
    """
    from lce.report.html import ReportSettings, write_report

    settings = ReportSettings(out=out, embedding_id=embedding, min_iou=min_iou, strips=images, strip_units=units,
                              device=device, batch_size=batch_size)
    with progress_bars() as progress:
        outcome = write_report(settings, progress)
    for note in outcome.notes:
        errors.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    shown = f"embedding {outcome.embedding_id}" if outcome.embedding_id else "no embedding stored"
    strips = ""
    if outcome.strips:
        strips = (f"; unit strips: {outcome.strips_rendered} drawn, {outcome.strips_reused} reused from the cache "
                  f"({sum(s.seconds for s in outcome.strips.values()):.1f} s)")
    console.print(f"wrote {outcome.index} ({shown}, {len(outcome.pages)} run pages{strips}) in "
                  f"{outcome.seconds:.1f} s", highlight=False)
