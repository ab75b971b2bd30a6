"""How a layer's output holds its units, known before dissecting and never guessed silently.

    layouts = resolve_layouts(model, ["blocks.11"], image_size=224, device="cpu")
    layouts["blocks.11"]                 # MapLayout(kind='tokens', prefix_tokens=1), origin 'the model (timm ...)'
    maps = to_units(output, layouts["blocks.11"], "blocks.11")        # (B, 384, 14, 14), a contiguous copy

A layout is one of
- `nchw`: (B, C, H, W), a conv net's maps;
- `nhwc`: (B, H, W, C), channels last in the tensor's shape (Swin's blocks, ConvNeXt's MLPs);
- `tokens`: (B, P + H * W, C), P prefix tokens (class, distillation, registers; dropped) then the patch tokens in
  row-major order on the patch grid. Probe images are square, so the grid is too: H = W = sqrt(tokens - P).
A unit is one of the C channels in each.

Where the layout comes from, in this order (resolve_layouts):
1. the user (`--layout`, `--prefix-tokens`), checked against the output's shape;
2. the model, when it says so (declared_layout): torchvision's VisionTransformer and SwinTransformer, timm's
   `num_prefix_tokens` and `output_fmt`, Hugging Face's embeddings (class, distillation and register tokens);
3. the output's shape, when it admits one reading only (from_shapes): the dimensions that double when the input's
   side doubles are the spatial ones; where the model refuses a second size, a square input's square grid;
otherwise the ingest stops before dissecting with a message naming --layout and --prefix-tokens.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from lce.errors import LceError, first_line

KINDS = ("nchw", "nhwc", "tokens")
MAX_PREFIX = 16  # prefix tokens a shape may be read with (DINOv2 with registers has 5; DeiT distilled 2)
ASK = ("pass --layout nchw|nhwc|tokens (with --prefix-tokens N for tokens: the class, distillation and register "
       "tokens before the patch tokens)")


@dataclass(frozen=True)
class MapLayout:
    """A layer output's layout; `origin` says how it was known (the user, the model, the shape) and does not take
    part in comparisons."""

    kind: str
    prefix_tokens: int = 0
    origin: str = field(default="", compare=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise LceError(f"--layout must be one of {', '.join(KINDS)}, not {self.kind!r}.")
        if self.prefix_tokens < 0 or (self.prefix_tokens and self.kind != "tokens"):
            raise LceError(f"--prefix-tokens {self.prefix_tokens}: prefix tokens are a count (0 or more) of the "
                           "tokens layout only.")

    def __str__(self) -> str:
        return f"tokens, {self.prefix_tokens} prefix" if self.kind == "tokens" else self.kind

    def units(self, shape: tuple[int, ...]) -> int:
        """The number of units (channels) in an output of `shape`, batch first."""
        return shape[1] if self.kind == "nchw" else shape[-1]

    def grid(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """(H, W) of the units' maps."""
        if self.kind == "nchw":
            return shape[2], shape[3]
        if self.kind == "nhwc":
            return shape[1], shape[2]
        side = math.isqrt(shape[1] - self.prefix_tokens)
        return side, side

    def problem(self, shape: tuple[int, ...]) -> str | None:
        """Why an output of `shape` cannot be read with this layout, or None."""
        if self.kind in ("nchw", "nhwc"):
            return None if len(shape) == 4 else f"{self.kind} needs a 4-d output, not {list(shape)}"
        if len(shape) != 3:
            return f"tokens need a 3-d output (B, tokens, C), not {list(shape)}"
        patches = shape[1] - self.prefix_tokens
        if patches < 1 or math.isqrt(patches) ** 2 != patches:
            return (f"after {self.prefix_tokens} prefix token(s), {shape[1]} tokens leave {patches} patch tokens, "
                    "not a square grid")
        return None


def first_tensor(output: object) -> object:
    """A module's output as the tensor that carries its units: the first element of a tuple or list (Hugging Face
    blocks return (hidden_states, attentions))."""
    while isinstance(output, (tuple, list)) and output:
        output = output[0]
    return output


def to_units(output: object, layout: MapLayout, name: str) -> torch.Tensor:
    """A layer's output as (B, C, H, W) float maps of its units: always a contiguous copy (the rest of the forward
    pass may change the output in place, and permuted or channels-last outputs would not flatten as maps)."""
    output = first_tensor(output)
    if not isinstance(output, torch.Tensor):
        raise LceError(f"Layer {name!r} returns a {type(output).__name__}, not a tensor; choose a layer that "
                       f"returns a feature map.")
    problem = layout.problem(tuple(output.shape))
    if problem:
        raise LceError(f"Layer {name!r} cannot be read as {layout}: {problem}; {ASK}.")
    values = output.detach()
    if layout.kind == "nhwc":
        values = values.permute(0, 3, 1, 2)
    elif layout.kind == "tokens":
        side = layout.grid(tuple(output.shape))[0]
        values = values[:, layout.prefix_tokens:, :].transpose(1, 2).unflatten(2, (side, side))
    return values.to(torch.float32, memory_format=torch.contiguous_format, copy=True)


def declared_layout(model: nn.Module, name: str, module: nn.Module, shape: tuple[int, ...],
                    image_size: int) -> MapLayout | None:
    """The layout the model itself says for `name`'s output of `shape` (batch first) at `image_size`, or None."""
    for declare in (_torchvision_vit, _torchvision_swin, _timm, _hugging_face):
        layout = declare(model, name, module, shape, image_size)
        if layout is not None:
            return layout
    return None


def from_shapes(shape: tuple[int, ...], image_size: int, doubled: tuple[int, ...] | None) -> MapLayout | None:
    """The one layout that the output's `shape` at `image_size` (and `doubled`, its shape at twice that size, when
    the model accepts it) admits, or None when it admits none or several."""
    if len(shape) == 4:
        if doubled is not None and len(doubled) == 4:
            kept = {axis for axis in (1, 2, 3) if doubled[axis] == shape[axis]}
            grown = {axis for axis in (1, 2, 3) if axis not in kept and abs(doubled[axis] - 2 * shape[axis]) <= 1}
            if (grown, kept) == ({2, 3}, {1}):
                return MapLayout("nchw", origin="the shape (H, W double with the input's side)")
            if (grown, kept) == ({1, 2}, {3}):
                return MapLayout("nhwc", origin="the shape (H, W double with the input's side)")
            if kept != {1, 2, 3}:
                return None  # it changed, but not as a map does (attention over all tokens)
            # Nothing changed (adaptive pooling): the one shape must say it.
        # A square input gives a square grid: exactly one pair of equal dimensions, whose side divides the image's
        # (a stride; 17 x 17 attention weights over 1 + 16 tokens are no map of a 64-px image).
        square_nchw = shape[2] == shape[3] and image_size % shape[2] == 0 and shape[1] != shape[2]
        square_nhwc = shape[1] == shape[2] and image_size % shape[1] == 0 and shape[3] != shape[2]
        if square_nchw != square_nhwc:
            return MapLayout("nchw" if square_nchw else "nhwc", origin="the shape (the one square pair of sides)")
        return None
    if len(shape) == 3:
        tokens = shape[1]
        if doubled is not None and len(doubled) == 3 and doubled[1] > tokens:
            # tokens = P + g*g, doubled = P + 4*g*g: both give g and P at once.
            area, rest = divmod(doubled[1] - tokens, 3)
            side = math.isqrt(area)
            if not rest and side * side == area and 0 <= tokens - area <= MAX_PREFIX:
                return MapLayout("tokens", tokens - area, origin="the shape (the tokens that grow with the input)")
            return None
        readings = [prefix for prefix in range(min(MAX_PREFIX, tokens - 1) + 1)
                    if math.isqrt(tokens - prefix) ** 2 == tokens - prefix
                    and image_size % math.isqrt(tokens - prefix) == 0]
        if len(readings) == 1:
            return MapLayout("tokens", readings[0], origin="the shape (prefix + a square patch grid)")
    return None


def output_shapes_of(model: nn.Module, names: Iterable[str], image_size: int,
                     device: torch.device | str) -> dict[str, tuple[int, ...] | str]:
    """Each named module's raw output shape (batch first) for one zero image of `image_size`, or why it has none
    (not a tensor, did not run). LceError when the model refuses the image; the train/eval mode is kept."""
    names = list(names)
    modules = dict(model.named_modules())
    shapes: dict[str, tuple[int, ...] | str] = {}
    handles = []

    def hook(name):
        def keep(module, inputs, output):
            output = first_tensor(output)
            shapes[name] = (tuple(output.shape) if isinstance(output, torch.Tensor)
                            else f"returns a {type(output).__name__}, not a tensor")
        return keep

    was_training = model.training
    model.eval()  # batch statistics of a single zero image would be meaningless (and would update BN's)
    try:
        for name in names:
            handles.append(modules[name].register_forward_hook(hook(name)))
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=device))
    except Exception as error:  # noqa: BLE001 - the model's own refusal (an assertion, a shape mismatch)
        raise LceError(f"This {type(model).__name__} does not run on a {image_size} x {image_size} image: "
                       f"{first_line(error)}. Build it for that size, or use a probe (or --size) it takes.") \
            from None
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {name: shapes.get(name, "did not run in the forward pass") for name in names}


def unreadable(shape: tuple[int, ...] | str) -> str | None:
    """Why an output of `shape` (for one image; a string: why there is none) has no units to read, or None."""
    if isinstance(shape, str):
        return shape
    if len(shape) not in (3, 4):
        return f"{len(shape)}-d: no map (lce reads 4-d maps, 3-d tokens)"
    if shape[0] != 1:
        return f"batch dim folded ({shape[0]} for one image: windows or heads)"
    return None


def resolve_layouts(model: nn.Module, names: Iterable[str], image_size: int, device: torch.device | str,
                    given: MapLayout | None = None, given_kind: str | None = None) -> dict[str, MapLayout]:
    """The layout of every named layer's output at `image_size`, from the user, the model or the shape (see the
    module docstring); LceError naming the layer and the options when one cannot be known.

    `given` is a full layout from the user; `given_kind` alone is --layout tokens without --prefix-tokens, whose
    prefix is then the model's or the shape's."""
    names = list(names)
    modules = dict(model.named_modules())
    shapes = output_shapes_of(model, names, image_size, device)
    layouts: dict[str, MapLayout] = {}
    undecided = []
    for name in names:
        shape = shapes[name]
        reason = unreadable(shape)
        if reason:
            returns = "" if isinstance(shape, str) else f" returns {list(shape)}:"
            raise LceError(f"Layer {name!r}{returns} {reason}; choose a layer that returns a feature map (lce "
                           "layers lists them).")
        if given is not None:
            layouts[name] = _checked(given, name, shape)
            continue
        if given_kind == "tokens" and len(shape) != 3:  # no prefix count can make a 4-d output tokens
            raise LceError(f"Layer {name!r} returns {list(shape)}, which cannot be read as --layout tokens: tokens "
                           f"need a 3-d output (B, tokens, C), not {list(shape)}.")
        declared = declared_layout(model, name, modules[name], shape, image_size)
        if declared is not None and (given_kind is None or declared.kind == given_kind):
            layouts[name] = declared
        else:
            undecided.append(name)
    if undecided:
        doubled = doubled_shapes(model, undecided, image_size, device)
        for name in undecided:
            shape = shapes[name]
            read = from_shapes(shape, image_size, doubled.get(name))
            if given_kind is not None:
                if read is None or read.kind != given_kind:
                    raise LceError(f"Layer {name!r} returns {list(shape)}: --layout {given_kind} needs "
                                   "--prefix-tokens N too, since neither the model nor the shape says how many "
                                   "tokens precede the patches.")
                read = MapLayout(given_kind, read.prefix_tokens, origin=f"--layout {given_kind}, {read.origin}")
            if read is None:
                raise LceError(f"Layer {name!r} returns {list(shape)} at {image_size} px, and neither the model nor "
                               f"the shape says which dimensions are its units and its map; {ASK}.")
            layouts[name] = read
    return layouts


def _checked(given: MapLayout, name: str, shape: tuple[int, ...]) -> MapLayout:
    problem = given.problem(shape)
    if problem:
        raise LceError(f"Layer {name!r} returns {list(shape)}, which cannot be read as --layout {given}: {problem}.")
    return MapLayout(given.kind, given.prefix_tokens, origin="--layout")


def doubled_shapes(model: nn.Module, names: list[str], image_size: int,
                   device: torch.device | str) -> dict[str, tuple[int, ...]]:
    """The outputs' shapes at twice the side, or {} when the model refuses that size (a fixed-size ViT)."""
    try:
        shapes = output_shapes_of(model, names, 2 * image_size, device)
    except Exception:  # noqa: BLE001 - any refusal (an assertion, a shape error) means: one size only
        return {}
    return {name: shape for name, shape in shapes.items() if isinstance(shape, tuple)}


def _tokens(prefix: int, shape: tuple[int, ...], patch_side: int | None, origin: str) -> MapLayout | None:
    """tokens with `prefix` when `shape` is (1, prefix + g*g, C) (and g is `patch_side`, when known), else None."""
    layout = MapLayout("tokens", prefix, origin=origin)
    if len(shape) != 3 or layout.problem(shape):
        return None
    if patch_side is not None and layout.grid(shape)[0] != patch_side:
        return None
    return layout


def _conv(module: nn.Module) -> bool:
    return isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.BatchNorm2d))


def _torchvision_vit(model, name, module, shape, image_size):
    from torchvision.models import VisionTransformer

    if not isinstance(model, VisionTransformer):
        return None
    origin = "the model (torchvision VisionTransformer: a class token, then the patch grid)"
    if len(shape) == 4 and _conv(module):
        return MapLayout("nchw", origin=origin)
    return _tokens(1, shape, image_size // model.patch_size, origin)


def _torchvision_swin(model, name, module, shape, image_size):
    from torchvision.models import SwinTransformer

    if not isinstance(model, SwinTransformer) or len(shape) != 4:
        return None
    origin = "the model (torchvision SwinTransformer: (B, H, W, C) blocks)"
    if _conv(module) or name in ("permute", "avgpool"):
        return MapLayout("nchw", origin=origin)
    if name == "norm" or name.startswith("features"):
        return MapLayout("nhwc", origin=origin)
    return None


def _timm(model, name, module, shape, image_size):
    if not type(model).__module__.startswith("timm."):
        return None
    prefix = getattr(model, "num_prefix_tokens", None)
    if name == "patch_embed" or name.startswith("patch_embed."):
        prefix = 0  # the patches alone: the prefix tokens join them after the patch embedding
    if len(shape) == 3 and isinstance(prefix, int):
        grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
        side = grid[0] if grid and grid[0] == grid[1] else None
        said = "the patch embedding, no prefix" if name.startswith("patch_embed") else f"num_prefix_tokens={prefix}"
        return _tokens(prefix, shape, side, f"the model (timm {type(model).__name__}: {said})")
    if len(shape) == 4:
        if _conv(module):
            return MapLayout("nchw", origin=f"the model (timm {type(model).__name__}: a conv layer)")
        if str(getattr(model, "output_fmt", "")).upper() == "NHWC":
            return MapLayout("nhwc", origin=f"the model (timm {type(model).__name__}: output_fmt NHWC)")
    return None


def _hugging_face(model, name, module, shape, image_size):
    if not type(model).__module__.startswith("transformers.") or len(shape) != 3:
        return None
    embeddings = getattr(model, "embeddings", None) or getattr(getattr(model, "vision_model", None),
                                                                "embeddings", None)
    prefix, parts = 0, []
    if "patch_embeddings" in name.split("."):  # the patches alone, before the prefix tokens join them
        embeddings, parts = None, ["the patch embedding"]
    for attribute in ("cls_token", "class_embedding", "distillation_token", "register_tokens"):
        tokens = getattr(embeddings, attribute, None)
        if isinstance(tokens, torch.Tensor):
            count = 1 if tokens.dim() == 1 else tokens.shape[-2]
            prefix += count
            parts.append(f"{attribute} {count}")
    config = getattr(model, "config", None)
    patch = getattr(getattr(config, "vision_config", config), "patch_size", None)
    side = image_size // patch if isinstance(patch, int) and parts else None  # Swin's grid shrinks per stage
    detail = ", ".join(parts) or "no prefix tokens"
    return _tokens(prefix, shape, side, f"the model (Hugging Face {type(model).__name__}: {detail})")
