"""Finding a layer by name and capturing its output as a (B, C, H, W) map of units.

    with LayerCapture(model, ["layer4"]) as capture:
        model(images)
    capture.outputs["layer4"]            # (B, 2048, 7, 7) float tensor, on the model's device

A unit is one channel of a conv layer's output; for a vision-transformer block, one hidden dimension, with the
class token dropped and the L patch tokens laid out on their sqrt(L) x sqrt(L) grid (method.md section 1).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable

import torch
from torch import nn

from lce.errors import LceError

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


def feature_map(output: object, name: str) -> torch.Tensor:
    """A layer's output as a (B, C, H, W) float tensor: conv maps as they are, ViT tokens (B, 1 + L, D) without
    the class token on a sqrt(L) x sqrt(L) grid, the first element of a tuple; always a contiguous copy."""
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise LceError(f"Layer {name!r} returns a {type(output).__name__}, not a tensor; choose a layer that "
                       f"returns a feature map.")
    if output.dim() == 4:
        # A copy: the rest of the forward pass may change the output in place (a ReLU(inplace=True) after it),
        # and a contiguous one: a block may return a permuted view (ConvNeXt) or channels-last memory.
        return output.detach().to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    if output.dim() == 3:
        batch, tokens, width = output.shape
        side = math.isqrt(tokens - 1) if tokens > 1 else 0
        if side * side != tokens - 1 or side == 0:
            raise LceError(f"Layer {name!r} returns {tokens} tokens: after the class token, {tokens - 1} patch "
                           f"tokens do not make a square grid, so they cannot be laid out as units' maps.")
        # Patch tokens are in row-major order (torchvision's ViT flattens its (h, w) patch grid). The transposed
        # tokens would reshape into a view with a channel stride of 1: copied into contiguous maps instead.
        grid = output[:, 1:, :].detach().float().transpose(1, 2)
        return grid.reshape(batch, width, side, side).contiguous()
    raise LceError(f"Layer {name!r} returns a tensor of shape {list(output.shape)}; dissection needs a spatial "
                   f"map (B, C, H, W) or vision-transformer tokens (B, 1 + L, D). Choose an earlier layer.")


class LayerCapture:
    """Forward hooks that keep the outputs of the named layers, as feature_map() lays them out.

    Used as a context manager: hooks are registered on entry and removed on exit; `outputs` keeps the last
    forward pass's maps after exit. Unknown names fail on entry, before any hook is registered.
    """

    def __init__(self, model: nn.Module, names: Iterable[str]):
        self.model = model
        self.names = list(names)
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
            self.outputs[name] = feature_map(output, name)
        return store


def output_shapes(model: nn.Module, names: Iterable[str], input_size: int | tuple[int, int],
                  device: torch.device | str) -> dict[str, tuple[int, int, int]]:
    """(C, H, W) of each named layer's units for `input_size` images (an int for square ones), from one zero image
    on `device`, where the model must already be. The model's train/eval mode is left as it was."""
    height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
    names = list(names)
    was_training = model.training
    model.eval()  # batch statistics of a single zero image would be meaningless (and would update BN's)
    try:
        with LayerCapture(model, names) as capture, torch.no_grad():
            model(torch.zeros(1, 3, height, width, device=device))
    finally:
        model.train(was_training)
    idle = [name for name in names if name not in capture.outputs]
    if idle:
        raise LceError(f"Layer(s) {', '.join(idle)} did not run in a forward pass of this {type(model).__name__}; "
                       f"choose layers that its forward() calls.")
    return {name: tuple(capture.outputs[name].shape[1:]) for name in names}
