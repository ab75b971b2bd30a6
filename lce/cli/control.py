"""`lce control set|unset|list`: the runs whose units say what random weights produce.

    lce control set 'Random(R)'            # the authors' random ResNet-50 serves their other runs
    lce control set 12                     # a run by id (lce models lists them)
    lce control list                       # each control, the runs it serves, its concepts with a cut-off

A control serves the current runs with its layer, probe, variant, quantile and segmentation size (and its
architecture, when both record one): a unit of those runs beats random when its label's IoU exceeds the control's
cut-off for that concept (lce.db.controls; the view unit_label's beats_random and trusted).
"""

from __future__ import annotations

import typer

from lce.cli.app import app, console, errors, user_errors
from lce.cli.options import ListingFormat, run_choice
from lce.cli.tables import print_listing
from lce.db.controls import described, name_control, unname_control

CONTROL_FORMATS = ("table", "csv", "json")

control_app = typer.Typer(
    help="Controls: runs of random weights whose units set, per concept, the IoU a label must exceed to beat random "
    "(unit_label's beats_random and trusted).\n\nExample: lce control set 'Random(R)' && lce control list",
    no_args_is_help=True,
)
app.add_typer(control_app, name="control", short_help="Name the random-weights runs that labels must beat.")

RunLayer, RunProbe, RunVariant = run_choice("the model")
RUN_HELP = ("A run id (lce models lists them), or a model name (with --layer/--probe/--variant when it has several "
            "runs).")


@control_app.command("set", short_help="Name a run the control of runs of its kind.")
@user_errors
def set_control(
    run: str = typer.Argument(..., help=RUN_HELP),
    layer: RunLayer = None,
    probe: RunProbe = None,
    variant: RunVariant = None,
) -> None:
    """Name a stored run a control, and compute its per-concept cut-offs in the same transaction: for a dissected
    run, the 99th percentile of each concept's IoU over all its units (from the tallies); for an imported one, the
    highest IoU among its units labelled with the concept. Imported runs included: the authors' Random(R) serves
    their data. A run whose weights are not known to be random is named too, with a warning. Naming a control again
    computes its cut-offs again.

    Example: lce control set 'Random(R)'; lce control set random:resnet18:s0 --layer layer4
    """
    change = name_control(run, layer, probe, variant)  # the owner's connection: this writes
    chosen, listed = change.run, change.listed
    if not chosen["random_weights"]:
        errors.print(f"[yellow]warning:[/] run {chosen['run_id']} ({chosen['model']}) records no random weights "
                     "(no --random-init, zoo family or name saying so); it is a control anyway: its units set the "
                     "cut-offs that the runs it serves must beat.", highlight=False, soft_wrap=True)
    again = " again" if chosen["control"] else ""
    console.print(f"Run {chosen['run_id']} ({described(chosen)}) is a control{again}: cut-offs for "
                  f"{listed['concepts']} concept(s) (the others: IoU > {listed['iou_threshold']:g}); it serves "
                  f"{listed['serves']} run(s).", highlight=False, soft_wrap=True)


@control_app.command("unset", short_help="Stop a run being a control.")
@user_errors
def unset_control(
    run: str = typer.Argument(..., help=RUN_HELP),
    layer: RunLayer = None,
    probe: RunProbe = None,
    variant: RunVariant = None,
) -> None:
    """Stop a run being a control: its cut-offs go, and the runs it served are served by another control of their
    kind if one is stored, else by none (beats_random NULL). The run itself stays.

    Example: lce control unset 'Random(R)'
    """
    change = unname_control(run, layer, probe, variant)
    chosen, served = change.run, change.listed["serves"]
    console.print(f"Run {chosen['run_id']} ({described(chosen)}) is no longer a control; it served {served} run(s).",
                  highlight=False, soft_wrap=True)


@control_app.command("list", short_help="The controls, the runs each serves, its concepts with a cut-off.")
@user_errors
def list_controls(
    fmt: ListingFormat = "table",
) -> None:
    """The controls of current runs: run id, model, architecture, layer, probe, variant, source, the cut-off of
    concepts without one of their own (the run's iou_threshold), how many current runs each serves, and how many
    concepts have a cut-off of their own.

    Example: lce control list; lce control list --format csv > controls.csv
    """
    print_listing("queries/controls", fmt, CONTROL_FORMATS,
                  "No controls yet: lce control set RUN, or lce ingest MODEL --random-control.")
