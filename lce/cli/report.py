"""`lce report`: the whole store as a static HTML report."""

from __future__ import annotations

from pathlib import Path

import typer

from lce.cli.app import app, console, errors, progress_bars, user_errors
from lce.report.html import ReportSettings, write_report

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
    allow_arch: list[str] = typer.Option([], "--allow-arch", help="A package.module:function architecture that "
                                         "stored runs name and that you trust to run, to draw their strips "
                                         "(repeatable); without it, such runs get no strips and nothing is imported."),
) -> None:
    """Write a static HTML report of the store that opens from disk (no server, no network): the embedding with
    its clusters, loadings and elbow curve, every model's category profile and top concepts, and per run a sortable
    table of units, with strips of each dissected unit's top images and mask (drawn once, then cached).

    Example: lce report --out report && xdg-open report/index.html

    A run whose architecture is a package.module:function (code) is drawn only with --allow-arch naming it: stored
    settings are written by whoever could write runs, and the report never imports code they name on its own.
    """
    settings = ReportSettings(out=out, embedding_id=embedding, min_iou=min_iou, strips=images, strip_units=units,
                              device=device, batch_size=batch_size, allowed_archs=tuple(allow_arch))
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
