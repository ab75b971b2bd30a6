"""`lce models`: the stored models and their runs."""

from __future__ import annotations

from lce.cli.app import app, user_errors
from lce.cli.options import ListingFormat
from lce.cli.tables import print_listing

MODELS_FORMATS = ("table", "csv", "json")


@app.command("models", short_help="List the stored models and their runs.")
@user_errors
def models(
    fmt: ListingFormat = "table",
) -> None:
    """List the models with their runs: layer, probe, variant, source, units, interpretable units, and beside
    them the trusted units (interpretable, stable, interval above chance, beating random when a control serves
    the run; NULL where unknown, as for imports without intervals), the interpretable units that also beat random
    (NULL when no control serves the run) and the control's run id (lce control).

    Example: lce models; lce models --format csv > models.csv
    """
    print_listing("queries/models", fmt, MODELS_FORMATS, "No models yet: import results with lce import ... first.")
