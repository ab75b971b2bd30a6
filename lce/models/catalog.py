"""What a model offers to dissect: every module's output at one input size, and how lce would read its units.

    loaded, entry = listed_model("resnet18", checkpoint=None, image_size=224)   # random init (seed 0)
    rows = layer_table(loaded.module, image_size=224)
    [(row.name, str(row.layout), row.units, row.grid) for row in rows if row.readable]
    # [('conv1', 'nchw', 64, (112, 112)), ..., ('layer4', 'nchw', 512, (7, 7)), ('avgpool', 'nchw', 512, (1, 1))]

A row's layout is the one `lce ingest --layer NAME` would use (lce.models.layout, same order, same functions):
declared by the model, else read from the output's shapes at the size and at twice it, else ambiguous (the ingest
then needs --layout). A module gives no row a layout when it returns no tensor, did not run, folds windows or heads
into the batch dimension, or returns something other than 4-d maps or 3-d tokens (a classifier's logits).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lce.errors import LceError
from lce.models.build import LoadedModel, build_model, build_zoo_model
from lce.models.layout import (
    MapLayout, declared_layout, doubled_shapes, from_shapes, output_shapes_of, unreadable,
)
from lce.models.zoo import ZooEntry, zoo_entries

AMBIGUOUS = "ambiguous: needs --layout"
LISTING_SEED = 0  # shapes do not depend on the weights; a fixed draw keeps the listing (and its timing) the same


@dataclass(frozen=True)
class LayerRow:
    """One module: `shape` is its raw output's (batch first), None when it gave no tensor; `layout` is how lce
    reads it, None when it cannot without help, and then `reason` says why (AMBIGUOUS when --layout would do)."""

    name: str
    module_type: str
    shape: tuple[int, ...] | None
    layout: MapLayout | None
    reason: str | None = None

    @property
    def depth(self) -> int:
        """Dots in the name: 0 for the model's children."""
        return self.name.count(".")

    @property
    def readable(self) -> bool:
        return self.layout is not None

    @property
    def gave_tensor(self) -> bool:
        """False for a module that returned no tensor or did not run in the forward pass."""
        return self.shape is not None

    @property
    def units(self) -> int | None:
        return self.layout.units(self.shape) if self.layout is not None else None

    @property
    def grid(self) -> tuple[int, int] | None:
        """(H, W) of each unit's map."""
        return self.layout.grid(self.shape) if self.layout is not None else None


def layer_table(model: nn.Module, image_size: int, device: torch.device | str = "cpu") -> list[LayerRow]:
    """A row for every named module of `model` (already on `device`), in named_modules() order, from one forward
    pass of a zero image of `image_size` (and one at twice the size for the modules whose layout only the shapes
    tell; a model that refuses that size is read at one size). LceError when the model refuses `image_size`."""
    modules = {name: module for name, module in model.named_modules() if name}
    shapes = output_shapes_of(model, modules, image_size, device)
    rows: dict[str, LayerRow] = {}
    undecided = []
    for name, module in modules.items():
        shape = shapes[name]
        kind = type(module).__name__
        reason = unreadable(shape)
        if reason:
            rows[name] = LayerRow(name, kind, None if isinstance(shape, str) else shape, None, reason)
        else:
            declared = declared_layout(model, name, module, shape, image_size)
            if declared is not None:
                rows[name] = LayerRow(name, kind, shape, declared)
            else:
                undecided.append(name)
    if undecided:
        doubled = doubled_shapes(model, undecided, image_size, device)
        for name in undecided:
            read = from_shapes(shapes[name], image_size, doubled.get(name))
            rows[name] = LayerRow(name, type(modules[name]).__name__, shapes[name], read,
                                  None if read is not None else AMBIGUOUS)
    return [rows[name] for name in modules]


def listed_model(arch: str, checkpoint: Path | None, image_size: int) -> tuple[LoadedModel, ZooEntry | None]:
    """The model `lce layers ARCH` lists, built for `image_size`, and its zoo entry when ARCH names one (a zoo
    name is looked up first). With a checkpoint, its weights (so that a bad file is found now); without, a random
    init from LISTING_SEED; hf:DIR, its own weights."""
    entry = next((entry for entry in zoo_entries() if entry.name == arch.strip().lower()), None)
    hugging_face = arch.startswith("hf:")
    if checkpoint is not None and (hugging_face or (entry is not None and entry.layout is None)):
        what = "the zoo's random control" if entry is not None else "a Hugging Face directory with its own weights"
        raise LceError(f"{arch} is {what}: it takes no --checkpoint (got {checkpoint}).")
    if entry is not None:
        return build_zoo_model(entry, checkpoint, seed=LISTING_SEED, random_init=checkpoint is None,
                               image_size=image_size), entry
    return build_model(arch, checkpoint=checkpoint, random_init=checkpoint is None and not hugging_face,
                       seed=LISTING_SEED, image_size=image_size), None
