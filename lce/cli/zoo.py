"""`lce zoo`: the models lce knows by name."""

from __future__ import annotations

from rich.table import Table

from lce.cli.app import app, console, user_errors


@app.command("zoo", short_help="List the models lce knows by name.")
@user_errors
def zoo() -> None:
    """List the models lce knows by name: the paper's ResNet-50s, then self-supervised ViTs; architecture, layer,
    checkpoint layout, normalisation, family and where the checkpoint comes from.

    Example: lce zoo; lce ingest moco-v2 --probe broden1_224 --checkpoint moco_v2_800ep.pth.tar
    """
    from lce.models.zoo import normalization_name, zoo_entries  # here: lce.models imports torch (torchvision)

    table = Table("name", "architecture", "layer", "checkpoint layout", "normalisation", "family", "source",
                  header_style="bold")
    entries = zoo_entries()
    for entry, following in zip(entries, entries[1:] + (None,)):
        table.add_row(entry.name, entry.architecture, entry.layer, entry.layout or "none (random init)",
                      normalization_name(entry.normalization), entry.family, entry.note,
                      # a rule between the paper's models and the others
                      end_section=following is not None and following.in_paper != entry.in_paper)
    console.print(table)
