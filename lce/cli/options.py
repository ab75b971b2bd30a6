"""Options that several commands share, declared once as typed aliases (Typer reads the option from Annotated):

    Layer, Probe, Variant = run_choice("the model")      # lce control set: --layer/--probe/--variant pick a run
    def set_control(run: str, layer: Layer = None, probe: Probe = None, variant: Variant = None): ...
    def models(fmt: ListingFormat = "table"): ...

Options whose help differs from command to command (--seed, --device, --model, --out ...) are each command's own:
their text says what the option does there, and --help stays as it is.
"""

from __future__ import annotations

from typing import Annotated

import typer

from lce.vocabulary import one_of


def run_choice(whose: str) -> tuple:
    """--layer, --probe and --variant as a command that picks one of a model's runs takes them (lce compare, lce
    control set|unset); `whose` ("the model", "a model") is the model their help names."""
    return (Annotated[str | None, typer.Option("--layer", help=f"Layer, when {whose} has runs on several.")],
            Annotated[str | None, typer.Option("--probe", help=f"Probe, when {whose} has runs on several.")],
            Annotated[str | None, typer.Option("--variant", help=f"{one_of()}, when {whose} has runs of several.")])


# lce models, lce control list: a listing read with the read-only login (lce.cli.tables.print_listing)
ListingFormat = Annotated[str, typer.Option("--format", help="table (terminal), csv or json (to standard output).")]

# lce embed, lce compare: the IoU a unit's label must exceed for the unit to count (default lce.vocabulary.IOU_CUTOFF)
MinIou = Annotated[float, typer.Option("--min-iou", help="A unit counts when its IoU exceeds this.")]

# lce import dissect-csv|dissect-report|netdissect-csv: where the imported units sit, and a run already stored
UnitsLayer = Annotated[str, typer.Option("--layer", help="The layer the units belong to.")]
ImportedArch = Annotated[str | None, typer.Option("--arch", help="Architecture of the model(s), e.g. resnet50 (stored "
                                                                 "with the model).")]
ImportReplace = Annotated[bool, typer.Option("--replace", help="Swap runs already stored for this file's, "
                                                               "atomically.")]
