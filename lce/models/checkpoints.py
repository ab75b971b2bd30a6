"""Loading a checkpoint in any of the layouts the paper's models come in (docs/method.md section 4).

    model = torchvision.models.resnet50(weights=None)
    info = load_checkpoint(model, Path("moco_v2_800ep_pretrain.pth.tar"))
    info.layout, info.dropped       # 'moco', 322  (fc, encoder_k.* and the queue are not backbone weights)

One loader recognises every layout: it unwraps the container key ("state_dict", "model" or DINO's "teacher"), strips
the known prefix under which most keys match the model ("module.encoder_q.", "module.encoder.", "backbone.",
"module.", ...), drops training heads (fc, projection_head, prototypes, encoder_k, queue, DINO's head, MAE's
decoder, ...), and then insists that every remaining key is a weight of the model with the model's shape, and that
every weight of the model is there (its classifier aside). The self-supervised ViTs' releases (DINO, DINOv2, MAE,
DeiT, OpenAI CLIP) reach the model's key names through the architecture's own converter (timm's
checkpoint_filter_fn), and are matched as strictly after it. Files are read with weights_only=True: a checkpoint
never runs code.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from lce.errors import LceError, first_line
from lce.input_files import check_input

if TYPE_CHECKING:
    from lce.models.sources import Conversion


@dataclass(frozen=True)
class Layout:
    """How a checkpoint wraps a backbone's weights: the dict key they sit under (None: the top level) and the
    prefix of every backbone key. `marker`: a key (container and prefix taken off) that the release's files hold
    and that tells them apart from another layout of the same container and prefix (DINOv2's mask_token)."""

    name: str
    container: str | None
    prefix: str
    description: str
    marker: str | None = None


LAYOUTS = {layout.name: layout for layout in (
    Layout("torchvision", None, "", "a plain torchvision state dict (supervised; ssl-transfer's converted files: "
           "SimCLR, BYOL, ...)"),
    Layout("moco", "state_dict", "module.encoder_q.", '{"state_dict": ...} with module.encoder_q. keys (MoCo, PCL)'),
    Layout("npid", "state_dict", "module.", '{"state_dict": ...} with module. keys (InsDis/NPID, SeLa-v1)'),
    Layout("swav", None, "module.", "a bare dict with module. keys and projection_head/prototypes "
           "(SwAV, DeepCluster-v2, SeLa-v2)"),
    Layout("pycontrast", "model", "module.encoder.", '{"model": ...} with module.encoder. keys (InfoMin, PIRL)'),
    # The self-supervised ViTs' releases, read through timm's checkpoint_filter_fn (lce.models.sources). A layout
    # whose marker a file holds is named before one without; of two, the first listed (dinov2 before dino).
    Layout("dinov2", None, "", "a bare dict with DINOv2's mask_token (and register_tokens, for the models with "
           "registers) beside the ViT (e.g. dinov2_vits14_pretrain.pth, dinov2_vits14_reg4_pretrain.pth)",
           marker="mask_token"),
    Layout("dino", None, "", "a bare dict of a ViT in DeiT's (and timm's) key names, cls_token, blocks.N.attn.qkv "
           "(DINO's released backbones, e.g. dino_deitsmall16_pretrain.pth)", marker="cls_token"),
    Layout("dino-train", "teacher", "backbone.", 'a DINO training checkpoint, {"teacher": ..., "student": ...} '
           "with backbone. keys beside the DINO head; the teacher's backbone is read, as DINO releases it "
           "(e.g. dino_deitsmall16_pretrain_full_checkpoint.pth; DINOv2's teacher_checkpoint.pth too)"),
    Layout("deit", "model", "", '{"model": ...} with DeiT\'s (and timm\'s) ViT key names (DeiT, e.g. '
           "deit_small_patch16_224-cd65a155.pth; MAE's pretrained encoders, e.g. mae_pretrain_vit_base.pth)",
           marker="cls_token"),
    Layout("clip", None, "", "OpenAI CLIP's state dict: the image tower under visual. (conv1, class_embedding, "
           "transformer.resblocks.N) beside the text tower, whose keys are dropped", marker="visual.class_embedding"),
)}

# Dict keys a state dict may sit under, tried in this order. "teacher": DINO's training checkpoints hold a student
# and a teacher; the teacher is what DINO releases and evaluates.
CONTAINERS = ("state_dict", "model", "teacher")
# Prefixes that training wrappers (DataParallel's module., MoCo's encoder_q, PyContrast's encoder, DINO's
# multi-crop backbone) put on backbone keys, longest first so that the most specific wins a tie.
PREFIXES = ("module.encoder_q.", "module.encoder.", "module.backbone.", "module.", "encoder_q.", "encoder.",
            "backbone.", "")
# A key with one of these components belongs to a training head, a momentum copy, a memory or a decoder, not to
# the backbone (dino_head, ibot_head: DINOv2's; decoder_*: MAE's pixel decoder, in its full checkpoints).
HEAD_NAMES = frozenset({
    "fc", "head", "heads", "classifier", "projection_head", "projector", "predictor", "prototypes", "top_layer",
    "head_jig", "encoder_k", "momentum_encoder", "target_encoder", "queue", "queue_ptr", "memory", "lemniscate",
    "dino_head", "ibot_head", "decoder_embed", "decoder_blocks", "decoder_norm", "decoder_pred", "decoder_pos_embed",
})
# The model's own classifier, first component of its keys: it may be absent from a checkpoint, since dissection
# (layer4 and earlier) never runs it; the model then keeps its own (seeded) classifier.
CLASSIFIER_NAMES = frozenset({"fc", "head", "heads", "classifier"})
# Checkpoints saved before PyTorch 0.4.1 (InsDis, SeLa-v1) lack BatchNorm's counter; eval mode never reads it.
OPTIONAL_SUFFIX = ".num_batches_tracked"
SHOWN = 10  # keys listed in an error message
# Keys of position embeddings, which a converter may resample to the model's input size (pos_embed,
# encoder.pos_embedding, positional_embedding, position_embeddings).
POSITION_EMBEDDING = re.compile(r"pos(ition|itional)?_emb")
# Weights a converter renames and may resample on the way (OpenAI CLIP's patch embedding), by their new name: the
# check against resampling compares them with the release's own.
RENAMED = {"patch_embed.proj.weight": ("visual.conv1.weight", "conv1.weight")}


@dataclass(frozen=True)
class CheckpointInfo:
    """What load_checkpoint did: sha256 of the file, the layout it recognised (a LAYOUTS name, or a description of
    an unnamed container/prefix combination), how many keys it loaded and how many head keys it dropped."""

    sha256: str
    layout: str
    loaded: int
    dropped: int


@dataclass(frozen=True)
class KeyMatch:
    """Checkpoint keys sorted against a model's state dict (see match_keys)."""

    prefix: str
    loaded: dict[str, torch.Tensor]     # model key -> checkpoint tensor
    dropped: tuple[str, ...]            # checkpoint keys of heads that do not fit the model
    unexpected: tuple[str, ...]         # checkpoint keys that are neither model weights nor heads
    missing: tuple[str, ...]            # model keys the checkpoint lacks (classifier and BN counters excepted)
    mismatched: tuple[str, ...]         # "key: checkpoint [shape] vs model [shape]"


def file_sha256(path: Path) -> str:
    """Hex sha256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_checkpoint(model: nn.Module, path: Path, convert: Conversion | None = None) -> CheckpointInfo:
    """Load the backbone weights in `path` into `model` (in place), whatever its layout; LceError naming the file
    and listing the keys at fault when they do not fit.

    `convert` is the architecture's own converter (timm's checkpoint_filter_fn: official releases' key names,
    position embeddings resampled to the model's input size). It receives the state dict with its container and
    prefix taken off, and its output is matched as strictly as any checkpoint."""
    path = Path(path)
    check_input(path, "Checkpoint")  # a regular file: /dev/zero or a FIFO is refused before torch opens it
    sha256 = file_sha256(path)
    container, weights = _unwrap(_read(path), path)
    target = model.state_dict()
    converted = ""
    if convert is not None:
        prefix = _choose_prefix(target, weights)
        weights = {key[len(prefix):] if key.startswith(prefix) else key: value for key, value in weights.items()}
        released = set(weights)  # the release's own key names, which tell its layout (a converter may rename them)
        shapes = {key: value.shape for key, value in weights.items()}
        try:
            weights = _tensors(convert.apply(dict(weights)))  # a copy: timm's converters pop keys from their input
        except Exception as error:  # noqa: BLE001 - a converter's own failure on a file it does not know
            raise LceError(f"Checkpoint {path} could not be converted by {convert.name} for this "
                           f"{type(model).__name__}: {first_line(error)}. Is it a checkpoint of another architecture "
                           "(another patch size, or another number of class and register tokens)?") from None
        converted = f", converted by {convert.name}"
        # Position embeddings are resampled to the model's input size; a converter that resizes any other weight
        # (timm resamples a patch embedding of another patch size) would load another model into this one.
        before = {key: shapes.get(key, next((shapes[old] for old in RENAMED.get(key, ()) if old in shapes), None))
                  for key in weights}
        resized = [f"{key} {list(before[key])} to {list(value.shape)}" for key, value in weights.items()
                   if before[key] is not None and before[key].numel() != value.numel()
                   and not POSITION_EMBEDDING.search(key)]
        if resized:
            raise LceError(f"Checkpoint {path} does not fit this {type(model).__name__}: {convert.name} would "
                           f"resample {_shown(tuple(resized))} to fit it. Is it a checkpoint of another patch size "
                           "or another architecture?")
    else:
        prefix = None
    match = match_keys(target, weights)
    if prefix is None:
        prefix = match.prefix
        released = {key[len(prefix):] for key in weights if key.startswith(prefix)}
    layout = layout_name(container, prefix, released) + converted
    problems = []
    if match.missing:
        problems.append(f"{len(match.missing)} weight(s) of the model are missing from it: {_shown(match.missing)}")
    if match.unexpected:
        problems.append(f"{len(match.unexpected)} key(s) are neither weights of the model nor a known head: "
                        f"{_shown(match.unexpected)}")
    if match.mismatched:
        problems.append(f"{len(match.mismatched)} weight(s) have another shape: {_shown(match.mismatched)}")
    if problems:
        hint = (" None of its keys matches the model: is it a checkpoint of another architecture?"
                if not match.loaded else "")
        raise LceError(f"Checkpoint {path} does not fit this {type(model).__name__} (layout read as {layout}): "
                       f"{'; '.join(problems)}.{hint}")
    state = dict(target)  # weights the checkpoint may lack (classifier, BN counters) keep the model's values
    state.update(match.loaded)
    model.load_state_dict(state, strict=True)
    return CheckpointInfo(sha256=sha256, layout=layout, loaded=len(match.loaded), dropped=len(match.dropped))


def layout_name(container: str | None, prefix: str, keys: Iterable[str] = ()) -> str:
    """The LAYOUTS name of a container/prefix combination, or a description of an unnamed one. `keys`: the
    checkpoint's keys with the prefix taken off; a layout whose marker is among them wins over one without."""
    keys = set(keys)
    candidates = [layout for layout in LAYOUTS.values() if (layout.container, layout.prefix) == (container, prefix)
                  and (layout.marker is None or layout.marker in keys)]
    if candidates:
        return min(candidates, key=lambda layout: layout.marker is None).name
    where = f'{{"{container}": ...}}' if container else "a bare dict"
    return f"{where} with prefix {prefix!r}" if prefix else f"{where} without prefix"


def match_keys(target: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> KeyMatch:
    """Sort checkpoint keys against the model's: strip the known prefix under which most keys are model keys,
    set heads aside, and list what is missing, unexpected or of another shape.

    A head (the keys under a HEAD_NAMES component, e.g. "module.encoder_q.fc") is loaded only when it is exactly
    one of the model's (same keys, same shapes: a supervised classifier); otherwise it is dropped whole, so a
    projection head never half-fills the model's classifier.
    """
    prefix = _choose_prefix(target, weights)

    def model_key(key: str) -> str | None:
        return key[len(prefix):] if key.startswith(prefix) else None

    loaded, dropped, unexpected, mismatched = {}, [], [], []
    heads: dict[str, list[str]] = defaultdict(list)
    for key, tensor in weights.items():
        head = _head_of(key)
        name = model_key(key)
        if head is not None:
            heads[head].append(key)
        elif name is None or name not in target:
            unexpected.append(key)
        elif tuple(tensor.shape) != tuple(target[name].shape):
            mismatched.append(f"{key} {list(tensor.shape)} vs {list(target[name].shape)}")
        else:
            loaded[name] = tensor
    for head, keys in heads.items():
        names = {model_key(key): key for key in keys}
        stem = model_key(head)
        own = {name for name in target if stem is not None and (name == stem or name.startswith(stem + "."))}
        if None not in names and set(names) == own and all(
                tuple(weights[key].shape) == tuple(target[name].shape) for name, key in names.items()):
            loaded.update({name: weights[key] for name, key in names.items()})
        else:
            dropped.extend(keys)
    missing = [name for name in target if name not in loaded
               and name.split(".")[0] not in CLASSIFIER_NAMES and not name.endswith(OPTIONAL_SUFFIX)]
    return KeyMatch(prefix=prefix, loaded=loaded, dropped=tuple(dropped), unexpected=tuple(unexpected),
                    missing=tuple(missing), mismatched=tuple(mismatched))


def _read(path: Path) -> object:
    try:
        # PyContrast (InfoMin, PIRL) stores its argparse options beside the weights: plain data, safe to allow.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises KeyError, EOFError, RuntimeError, ... on a file it cannot read
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if refused:
            raise LceError(
                f"Checkpoint {path} holds Python objects besides tensors (first one: {refused.group(1)}), and lce "
                f"loads checkpoints with weights_only=True so that a file never runs code. If you trust the file, "
                f"save its state dict alone (torch.save(torch.load(file, weights_only=False)['state_dict'], "
                f"'weights.pth')) and pass that.") from None
        if "TorchScript" in str(error):  # OpenAI CLIP's releases (ViT-B-16.pt) are TorchScript archives
            raise LceError(
                f"Checkpoint {path} is a TorchScript archive (a model with its code, as OpenAI's CLIP files are), and "
                f"lce loads checkpoints with weights_only=True so that a file never runs code. If you trust the file, "
                f"save its state dict alone (torch.save(torch.jit.load(file, map_location='cpu').state_dict(), "
                f"'weights.pth')) and pass that.") from None
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise LceError(f"Checkpoint {path} is not a readable PyTorch checkpoint (truncated, or another kind of "
                       f"file): {detail}") from None


def _unwrap(checkpoint: object, path: Path) -> tuple[str | None, dict[str, torch.Tensor]]:
    if isinstance(checkpoint, dict):
        for container in CONTAINERS:
            inner = checkpoint.get(container)
            if isinstance(inner, dict) and any(isinstance(value, torch.Tensor) for value in inner.values()):
                return container, _tensors(inner)
        if any(isinstance(value, torch.Tensor) for value in checkpoint.values()):
            return None, _tensors(checkpoint)
        keys = ", ".join(repr(key) for key in list(checkpoint)[:SHOWN])
        raise LceError(f"Checkpoint {path} holds no state dict: its top-level keys are {keys}, and none of them "
                       f"({', '.join(CONTAINERS)}) holds tensors.")
    raise LceError(f"Checkpoint {path} holds a {type(checkpoint).__name__}, not a state dict; lce reads state "
                   f"dicts (torch.save(model.state_dict(), file)), not pickled models.")


def _tensors(state: dict) -> dict[str, torch.Tensor]:
    # Trainers keep counters such as "epoch" beside the weights; only tensors are weights.
    return {str(key): value for key, value in state.items() if isinstance(value, torch.Tensor)}


def _choose_prefix(target: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> str:
    def matches(prefix: str) -> int:
        return sum(1 for key in weights if key.startswith(prefix) and key[len(prefix):] in target)

    best = max(PREFIXES, key=lambda prefix: (matches(prefix), len(prefix)))
    if matches(best):
        return best
    # Nothing matches (another architecture): report keys under the prefix they all share, for a readable error.
    backbone = [key for key in weights if _head_of(key) is None]
    return next(prefix for prefix in PREFIXES if all(key.startswith(prefix) for key in backbone))


def _head_of(key: str) -> str | None:
    """The key up to its first HEAD_NAMES component ("module.encoder_k.conv1.weight" -> "module.encoder_k")."""
    parts = key.split(".")
    for index, part in enumerate(parts):
        if part in HEAD_NAMES:
            return ".".join(parts[: index + 1])
    return None


def _shown(keys: tuple[str, ...]) -> str:
    shown = ", ".join(keys[:SHOWN])
    return f"{shown} (and {len(keys) - SHOWN} more)" if len(keys) > SHOWN else shown
