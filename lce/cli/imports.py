"""`lce import dissect-csv|dissect-report|netdissect-csv`: published dissection results into the store."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from lce.cli.app import app, console, user_errors
from lce.cli.options import ImportedArch, ImportReplace, UnitsLayer
from lce.db.connection import connect
from lce.db.runs import Outcome, write_runs
from lce.importers.dissect_csv import read_dissect_csv
from lce.importers.dissect_report import read_dissect_report
from lce.importers.netdissect_csv import read_netdissect_csv
from lce.vocabulary import variant

import_app = typer.Typer(
    help="Import published per-unit dissection results (one transaction per file; the same file twice is a no-op).\n\n"
    "Example: lce import dissect-csv models_dissect_profiles_raw.csv --layer layer4",
    no_args_is_help=True,
)
app.add_typer(import_app, name="import", short_help="Import published per-unit dissection results.")

def _write(records, replace: bool, started: float) -> None:
    written = write_runs(connect(), records, replace=replace)
    changed = [w for w in written if w.outcome is not Outcome.UNCHANGED]
    for item in written:
        record = item.record
        console.print(f"  {item.outcome.value:<9} run {item.run_id:>5}  {record.model.name}  {record.layer}  "
                      f"{len(record.units)} units" + (f", {len(record.tallies)} tallies" if record.tallies else ""))
    seconds = time.perf_counter() - started
    if not changed:
        console.print(f"Nothing changed: all {len(written)} run(s) are already stored with this content "
                      "(--replace swaps them anyway).")
    else:
        units = sum(len(w.record.units) for w in changed)
        console.print(f"Imported {len(changed)} run(s), {units:,} units, in {seconds:.1f} s.")


@import_app.command("dissect-csv", short_help="Import Dissect's per-unit CSV (one run per model).", help=f"""Dissect per-unit CSV: each distinct `name` becomes a model with one
    `dissect` run ({variant("dissect").summary}). Label '-' means no concept; an empty IoU is kept as NULL.

    Example: lce import dissect-csv models_dissect_profiles_raw.csv --layer layer4 --arch resnet50
    """)
@user_errors
def dissect_csv(
    file: Path = typer.Argument(..., help="CSV with columns name,unit,iou,label,category (a leading index column "
                                          "is allowed)."),
    layer: UnitsLayer = "layer4",
    probe: str = typer.Option("places365-upp", "--probe",
                              help="Name for the probe the labels came from (default: Dissect's Places365 + UPP)."),
    arch: ImportedArch = None,
    replace: ImportReplace = False,
) -> None:
    started = time.perf_counter()
    _write(read_dissect_csv(file, layer=layer, probe=probe, architecture=arch), replace, started)


@import_app.command("dissect-report", short_help="Import a davidbau/dissect report.json.")
@user_errors
def dissect_report(
    file: Path = typer.Argument(..., help="davidbau/dissect report.json ({\"units\": [{unit, iou, label, cat}]})."),
    model: str = typer.Option(..., "--model", help="Name of the model the report dissects."),
    layer: UnitsLayer = ...,
    probe: str = typer.Option("places365-upp", "--probe", help="Name for the probe the labels came from."),
    arch: ImportedArch = None,
    replace: ImportReplace = False,
) -> None:
    """davidbau/dissect report.json: one `dissect` run for the model and layer.

    Example: lce import dissect-report report.json --model resnet50-places --layer layer4
    """
    started = time.perf_counter()
    _write(read_dissect_report(file, model=model, layer=layer, probe=probe, architecture=arch), replace, started)


@import_app.command("netdissect-csv", short_help="Import a NetDissect tally.csv.", help=f"""NetDissect tally.csv: one `netdissect` run
    ({variant("netdissect").summary}); each unit's label and score, and every category's best label with its
    truth, activation and intersection counts.

    Example: lce import netdissect-csv tally.csv --model resnet18-places365 --layer layer4 --arch resnet18
    """)
@user_errors
def netdissect_csv(
    file: Path = typer.Argument(..., help="NetDissect / NetDissect-Lite tally.csv (unit numbers from 1)."),
    model: str = typer.Option(..., "--model", help="Name of the model the tally dissects."),
    layer: UnitsLayer = ...,
    probe: str = typer.Option("broden1_224", "--probe", help="Name of the probe dataset (default: Broden 1, 224 px)."),
    arch: ImportedArch = None,
    replace: ImportReplace = False,
) -> None:
    started = time.perf_counter()
    _write(read_netdissect_csv(file, model=model, layer=layer, probe=probe, architecture=arch), replace, started)
