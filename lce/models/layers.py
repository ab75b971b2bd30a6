"""Finding a layer by name and capturing its output as a (B, C, H, W) map of units.

    layouts = resolve_layouts(model, ["layer4"], image_size=224, device="cpu")    # lce.models.layout
    with LayerCapture(model, ["layer4"], layouts) as capture:
        model(images)
    capture.outputs["layer4"]            # (B, 2048, 7, 7) float tensor, on the model's device

A unit is one channel of a conv layer's output; for a vision-transformer block, one hidden dimension, with the
prefix tokens dropped and the patch tokens laid out on their grid (docs/method.md section 1). How each output holds
its units is a MapLayout (lce.models.layout).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from lce.errors import LceError
from lce.models.layout import MapLayout, resolve_layouts, to_units

NCHW = MapLayout("nchw", origin="a conv net's default")

NEAREST = 5  # valid names suggested for an unknown one


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called `name` (dotted, as in model.named_modules(): "layer4", "layer4.2.conv3",
    "encoder.layers.encoder_layer_11"); LceError listing the nearest valid names otherwise."""
    modules = dict(model.named_modules())
    if name and name in modules:
        return modules[name]
    names = [candidate for candidate in modules if candidate]
    close = difflib.get_close_matches(name, names, n=NEAREST)
    if close:
        hint = f"the nearest are {', '.join(close)}"
    else:  # nothing alike: show the top level, where a reader starts looking
        hint = f"its top-level layers are {', '.join(child for child, _ in model.named_children())}"
    raise LceError(f"Layer {name!r} is not a module of this {type(model).__name__}; {hint}.")


class LayerCapture:
    """Forward hooks that keep the outputs of the named layers as (B, C, H, W) maps (lce.models.layout.to_units),
    read with `layouts` (name -> MapLayout; a layer left out is read as nchw).

    Used as a context manager: hooks are registered on entry and removed on exit; `outputs` keeps the last
    forward pass's maps after exit. Unknown names fail on entry, before any hook is registered.
    """

    def __init__(self, model: nn.Module, names: Iterable[str], layouts: Mapping[str, MapLayout] | None = None):
        self.model = model
        self.names = list(names)
        self.layouts = {name: (layouts or {}).get(name, NCHW) for name in self.names}
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> LayerCapture:
        layers = {name: resolve_layer(self.model, name) for name in self.names}
        for name, layer in layers.items():
            self._handles.append(layer.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc_info) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str):
        def store(module: nn.Module, inputs: tuple, output: object) -> None:
            self.outputs[name] = to_units(output, self.layouts[name], name)
        return store


def output_shapes(model: nn.Module, names: Iterable[str], input_size: int,
                  device: torch.device | str) -> dict[str, tuple[int, int, int]]:
    """(C, H, W) of each named layer's units for square `input_size` images, read with the layout
    resolve_layouts finds, from zero images on `device`, where the model must already be."""
    names = list(names)
    layouts = resolve_layouts(model, names, input_size, device)
    was_training = model.training
    model.eval()
    try:
        with LayerCapture(model, names, layouts) as capture, torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size, device=device))
    finally:
        model.train(was_training)
    return {name: tuple(capture.outputs[name].shape[1:]) for name in names}
