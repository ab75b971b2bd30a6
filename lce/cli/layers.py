"""`lce layers`: the modules of a model that can be dissected, with their output shapes and how lce reads them."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from lce.cli.app import app, console, user_errors
from lce.errors import LceError
from lce.names import check_options
from lce.probe.registry import registered_image_size

DEFAULT_SIZE = 224
MIN_SIZE = 8  # a smaller side leaves a stride-8 stage without a pixel: a typo, not a probe's size


@app.command("layers", short_help="List the modules of a model that lce ingest --layer can name.")
@user_errors
def layers(
    arch: str = typer.Argument(..., help="A zoo model (lce zoo), or any --arch of lce ingest: a torchvision "
                                         "architecture (resnet50), timm:NAME, hf:DIR or package.module:function."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Load these weights (a file that does not "
                                                                      "load is found now; default: random init, "
                                                                      "seed 0, since shapes do not depend on "
                                                                      "weights)."),
    size: int | None = typer.Option(None, "--size", help=f"Input image side in pixels (default {DEFAULT_SIZE})."),
    probe: str | None = typer.Option(None, "--probe", help="Use this registered probe's image size (the size lce "
                                                           "ingest feeds it at); not with --size."),
    depth: int | None = typer.Option(None, "--depth", help="Only modules at most N dots deep (0: the model's "
                                                           "children; default: all)."),
    show_all: bool = typer.Option(False, "--all", help="Also list the modules that return no tensor or do not "
                                                       "run in the forward pass (hidden by default)."),
) -> None:
    """List the modules of a model that lce ingest --layer can name: each one's type and raw output shape for one
    image at the input size, the layout lce reads it with (nchw, nhwc, or tokens with their prefix tokens; from
    the model or the shape, else ambiguous: then lce ingest needs --layout), its units and the H x W of each
    unit's map. Rows lce cannot read are dimmed, with the reason. A zoo model's default layer is marked.

    Example: lce layers resnet50 --probe broden1_224 --depth 0; lce layers timm:vit_small_patch16_224 --size 224
    """
    from lce.models.catalog import layer_table, listed_model  # here: building a model imports torch

    check_options(architecture=arch, probe=probe)
    if size is not None and probe is not None:
        raise LceError(f"Give --size or --probe, not both: --probe {probe} already says the size (its images').")
    if size is not None and size < MIN_SIZE:
        raise LceError(f"--size {size} is too small: give an image side of at least {MIN_SIZE} pixels.")
    if depth is not None and depth < 0:
        raise LceError(f"--depth {depth}: a number of dots, 0 or more.")
    if probe is not None:
        size = registered_image_size(probe)
    image_size = size or DEFAULT_SIZE
    loaded, entry = listed_model(arch, checkpoint, image_size)
    rows = layer_table(loaded.module, image_size)
    default_layer = entry.layer if entry is not None else None
    within = [row for row in rows if depth is None or row.depth <= depth]
    shown = [row for row in within if row.gave_tensor or show_all]

    # Names and shapes whole on one line (a cut name cannot be pasted into --layer); a reason may wrap.
    table = Table(header_style="bold")
    for column in ("module", "type", "output shape"):
        table.add_column(column, no_wrap=True)
    table.add_column("layout", overflow="fold")
    table.add_column("units", justify="right", no_wrap=True)
    table.add_column("map", no_wrap=True)
    for row in shown:
        name = escape(row.name) + (" [bold](default)[/]" if row.name == default_layer else "")
        shape = str(row.shape) if row.shape is not None else "-"
        if row.readable:
            height, width = row.grid
            table.add_row(name, row.module_type, shape, str(row.layout), str(row.units), f"{height}x{width}")
        else:
            table.add_row(name, row.module_type, shape, escape(row.reason), "-", "-", style="dim")
    where = f"probe {probe}'s {image_size} px" if probe is not None else f"{image_size} px"
    console.print(f"{escape(loaded.description)} at {where}: {sum(row.readable for row in shown)} of "
                  f"{len(shown)} module(s) listed are readable", highlight=False)
    console.print(table)
    if len(shown) < len(within):
        console.print(f"{len(within) - len(shown)} module(s) that return no tensor or do not run are hidden; --all "
                      "lists them.", highlight=False)
    console.print(_ingest_hint(arch, entry, checkpoint, probe, default_layer), highlight=False)


def _ingest_hint(arch: str, entry, checkpoint: Path | None, probe: str | None, default_layer: str | None) -> str:
    """The lce ingest command that dissects a listed module."""
    model = entry.name if entry is not None else f"MODEL --arch {arch}"
    if arch.startswith("hf:"):
        weights = ""
    elif checkpoint is not None:
        weights = f" --checkpoint {checkpoint}"
    elif entry is not None:
        weights = " --checkpoint PATH" if entry.layout is not None else ""  # the random control takes none
    else:
        weights = " (--checkpoint PATH | --random-init)"
    layer = default_layer or "NAME"
    return escape(f"Dissect one: lce ingest {model}{weights} --probe {probe or 'NAME'} --layer {layer} ...")
