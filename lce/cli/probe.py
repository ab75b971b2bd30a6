"""`lce probe check|add|list|show|synth`: probe datasets in the Broden format."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from lce.analysis.query import run_query
from lce.cli.app import app, console, errors, progress_bars, user_errors
from lce.cli.tables import print_relation
from lce.errors import LceError
from lce.probe.check import check_probe
from lce.probe.registry import add_probe, probe_categories, problems_summary
from lce.probe.synth import synthesize
from lce.resources import read_sql

probe_app = typer.Typer(
    help="Probe datasets with pixel-level concept labels (Broden format): check, register, inspect, synthesise.\n\n"
    "Example: lce probe synth synth-probe && lce probe add synth synth-probe",
    no_args_is_help=True,
)
app.add_typer(probe_app, name="probe", short_help="Probe datasets (Broden format): check, add, list, show, synth.")

FAST_SKIPS = ("decoding the images (a truncated JPEG is then found by lce ingest) and re-hashing label files whose "
              "size and modification time match the decode cache's manifest")


@probe_app.command("check", short_help="Validate a Broden-format dataset and list its problems.")
@user_errors
def check(
    directory: Path = typer.Argument(..., help="The dataset directory (index.csv, label.csv, images/ ...)."),
    deep: bool = typer.Option(False, "--deep", help="Decode every file (finds truncated or corrupt ones)."),
) -> None:
    """Validate a Broden-format dataset and list every problem (the first 20, then a count), each with its file
    and line. Exit 0 only when clean.

    Example: lce probe check /data/broden1_224 --deep
    """
    started = time.perf_counter()
    with progress_bars() as update:
        problems = check_probe(directory, deep=deep, progress=lambda done, total: update("checking", done, total))
    if problems:
        errors.print(f"[bold red]{len(problems)} problem(s)[/] in {directory}:\n{problems_summary(problems)}",
                     highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"{directory}: no problems ({'deep' if deep else 'headers'} check, "
                  f"{time.perf_counter() - started:.1f} s)")


@probe_app.command("add", short_help="Check, decode and register a probe dataset.")
@user_errors
def add(
    name: str = typer.Argument(..., help="Name to register the probe under (used by lce ingest --probe)."),
    directory: Path = typer.Argument(..., help="The dataset directory."),
    replace: bool = typer.Option(False, "--replace", help="Store other content under a name already taken."),
    workers: int = typer.Option(0, "--workers", help="Processes decoding images and label PNGs (0: this one)."),
    fast: bool = typer.Option(False, "--fast", help=f"Skip {FAST_SKIPS}."),
) -> None:
    """Check a dataset, decode every image and label PNG (a truncated file stops it, naming the file), build the
    decode cache, and store the probe and its concepts (one transaction). Adding the same content again is a no-op.

    Example: lce probe add broden1_224 /data/broden1_224 --workers 4
    """
    started = time.perf_counter()
    with progress_bars() as update:
        added = add_probe(name, directory, replace=replace, workers=workers, progress=update, fast=fast)
    verb = {"created": "Stored", "replaced": "Replaced", "unchanged": "Already stored, unchanged:"}[added.outcome]
    cache = "built" if added.cache_built else "reused (same files)"
    console.print(f"{verb} probe {added.name!r} (id {added.probe_id}): {added.images:,} images, "
                  f"{added.concepts:,} concepts; decode cache {added.cache} {cache} "
                  f"({time.perf_counter() - started:.1f} s)", highlight=False)
    if fast:
        console.print(f"--fast: skipped {FAST_SKIPS}; `lce probe check --deep` decodes everything.", highlight=False)


@probe_app.command("list", short_help="List the stored probes.")
@user_errors
def list_probes() -> None:
    """List the stored probes.

    Example: lce probe list
    """
    print_relation(run_query(read_sql("queries/probes"), engine="postgres"), max_rows=1000)


@probe_app.command("show", short_help="Concepts and images per category of a stored probe.")
@user_errors
def show(name: str = typer.Argument(..., help="The probe's name.")) -> None:
    """Concepts and images per category of a stored probe.

    Example: lce probe show broden1_224
    """
    probe, rows = probe_categories(name)
    console.print(f"probe {name!r}: {probe['source']}, {probe['image_count'] or 0:,} images "
                  f"({probe['image_size']} px, segmentation {probe['seg_size']}), path {probe['path']}", highlight=False)
    table = Table("category", "concepts", "images", header_style="bold")
    images = probe["category_images"] or {}
    for category, concepts in rows:
        table.add_row(category, f"{concepts:,}", f"{images[category]:,}" if category in images else "-")
    console.print(table)


@probe_app.command("synth", short_help="Write a synthetic probe in the Broden format.")
@user_errors
def synth(
    out: Path = typer.Argument(..., help="Directory to write (must not exist, or be empty)."),
    images: int = typer.Option(500, "--images", help="Number of images."),
    size: int = typer.Option(224, "--size", help="Image size in pixels (segmentations are half)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed writes the same bytes."),
) -> None:
    """Write a synthetic probe in exactly the Broden format: shapes (objects) with parts, materials and colours
    drawn pixel-level, one scene and one or two textures per image, some images partially annotated.

    Example: lce probe synth synth-probe --images 500 --size 224 && lce probe add synth synth-probe
    """
    if images < 1 or size < 16:
        raise LceError(f"--images must be at least 1 and --size at least 16 (got {images} and {size}).")
    started = time.perf_counter()
    probe = synthesize(out, images=images, size=size, seed=seed)
    console.print(f"Wrote {len(probe.labels):,} images ({size} px) and {len(probe.vocabulary)} labels to {out} "
                  f"in {time.perf_counter() - started:.1f} s")
