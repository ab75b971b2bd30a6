"""`lce correlate`: how an embedding relates to the stored transfer-task results."""

from __future__ import annotations

from pathlib import Path

import typer

from lce.analysis.correlate import correlate as run_correlate
from lce.analysis.correlate import summary, write_csv
from lce.cli.app import app, console, user_errors
from lce.output_paths import check_table_and_plot
from lce.report.plots import plot_correlation


@app.command("correlate", short_help="Correlate an embedding with the stored task results.")
@user_errors
def correlate(
    embedding: int | None = typer.Option(None, "--embedding", help="Embedding id (default: the newest)."),
    method: str = typer.Option("pearson", "--method", help="pearson or spearman."),
    out: Path | None = typer.Option(None, "--out", help="CSV in long form: metric,family,component,r."),
    plot: Path | None = typer.Option(None, "--plot", help="PNG heatmap of r."),
) -> None:
    """Correlate an embedding's components and its models' category profiles (all_<category>: interpretable
    units, unique_<category>: distinct concepts) with every stored task metric, and average per task family.
    Models without task results are left out and named. r is with the raw value (for lower-is-better metrics a
    negative r goes with better results).

    Example: lce correlate --out correlation.csv --plot correlation.png
    """
    check_table_and_plot(out, plot)
    result = run_correlate(embedding, method)
    for line in summary(result):
        console.print(line, highlight=False, soft_wrap=True)
    if out is not None:
        write_csv(result, out)
        console.print(f"wrote {out}")
    if plot is not None:
        plot_correlation(result, plot)
        console.print(f"wrote {plot}")
