"""Where an architecture comes from, as `--arch` names it: torchvision, timm, a Hugging Face directory, or a
function of the user's.

    source = parse_arch("timm:vit_small_patch16_224")      # Source(kind='timm', name='vit_small_patch16_224')
    made = make(source, image_size=224)                     # an untrained module, its normalisation, ...

- `NAME`: a torchvision classification architecture (weights=None). A ViT or MaxViT is created at the probe's
  image size (its position embeddings are resampled when a checkpoint is loaded).
- `timm:NAME`: any timm architecture, pretrained=False, created at the probe's image size where it takes one
  (img_size); a checkpoint passes through the architecture's own checkpoint_filter_fn (timm's converters for
  official releases: DINO, DINOv2, OpenAI CLIP, ...). Normalisation from timm's pretrained config.
- `hf:DIR`: a Hugging Face vision model saved in DIR (config.json and its weights; preprocessor_config.json for
  the normalisation), loaded offline and without remote code. Its weights are DIR's files.
- `package.module:function`: a function or class of the user's returning an nn.Module (from_function).
The `timm:` and `hf:` prefixes are read before the `package.module:function` form. timm and transformers are
optional (pip install 'lce[timm,hf]'); nothing is ever downloaded.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import inspect
import json
import os
import pickle
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torchvision
from torch import nn

from lce.errors import LceError, first_line
from lce.models.zoo import IMAGENET, Normalization

KINDS = ("torchvision", "timm", "hf", "function")
HF_WEIGHTS = ("*.safetensors", "*.bin")


@dataclass(frozen=True)
class Source:
    kind: str  # one of KINDS
    name: str  # the architecture, the directory (hf) or package.module:function

    @property
    def spec(self) -> str:
        """As --arch spells it."""
        return {"timm": f"timm:{self.name}", "hf": f"hf:{self.name}"}.get(self.kind, self.name)


@dataclass(frozen=True)
class Conversion:
    """A source's own converter of checkpoints into its key names, applied before lce's key matching."""

    name: str
    apply: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass
class Made:
    """An architecture ready for its weights: `module` (random init from the caller's seed, or a Hugging Face
    directory's weights when `weights_sha256` is set), the normalisation its source gives and where it comes
    from, a warning when the source gives none, and the converter for checkpoints."""

    module: nn.Module
    normalization: Normalization | None
    normalization_source: str
    warning: str | None = None
    conversion: Conversion | None = None
    weights_sha256: str | None = None
    weights_layout: str | None = None


def parse_arch(arch: str) -> Source:
    """The source that `arch` names; LceError for an empty name."""
    for kind in ("timm", "hf"):
        if arch.startswith(f"{kind}:"):
            name = arch[len(kind) + 1:]
            if not name:
                raise LceError(f"--arch {arch!r} names no {'architecture' if kind == 'timm' else 'directory'}; "
                               f"write {kind}:{'NAME' if kind == 'timm' else 'DIR'}.")
            # A directory is recorded absolute, so that a run names it again from anywhere (lce report).
            return Source(kind, str(Path(name).expanduser().resolve()) if kind == "hf" else name)
    return Source("function" if ":" in arch else "torchvision", arch)


def make(source: Source, image_size: int | None = None, random_init: bool = True) -> Made:
    """The untrained architecture of `source` (for hf, with DIR's weights unless random_init), created at
    `image_size` where the architecture takes one. Call under a seeded RNG: random initialisation draws from it."""
    if source.kind == "torchvision":
        return _torchvision(source.name, image_size)
    if source.kind == "timm":
        return _timm(source.name, image_size)
    if source.kind == "hf":
        return _hugging_face(Path(source.name), random_init)
    return Made(from_function(source.name), IMAGENET, "ImageNet's mean/std (a default: the function gives none)",
                warning=f"--arch {source.name} says nothing of its input normalisation: ImageNet's mean and std "
                        "are used; pass --mean R,G,B --std R,G,B if the model expects others.")


def from_function(spec: str) -> nn.Module:
    """The nn.Module that `package.module:function` returns, called with no arguments."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise LceError(f"--arch {spec!r} should read package.module:function.")
    top = module_name.split(".")[0]
    refused = {"lce": "this program's own package", "__main__": "the running program"}.get(top)
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        refused = "a module of Python's standard library"
    if refused:
        raise LceError(f"--arch {spec!r}: {top} is {refused}, not a package of models; give package.module:function "
                       "from your own code or an installed package, a function that returns a torch.nn.Module.")
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is None or not (module_name == error.name or module_name.startswith(error.name + ".")):
            raise  # the user's module itself failed an import: its traceback is the useful message
        # The current directory is not searched: a file lying there (a download, a colleague's folder) must not run.
        raise LceError(f"--arch {spec!r}: module {module_name!r} is not importable from PYTHONPATH or the "
                       "installed packages (the current directory is not searched: for a module there, run "
                       "PYTHONPATH=. lce ...).") from None
    function = getattr(module, function_name, None)
    if not (inspect.isfunction(function) or inspect.isclass(function)):
        what = "has no function" if function is None or not callable(function) else \
            f"holds a {type(function).__name__}, not a Python function or class, under"
        raise LceError(f"--arch {spec!r}: {module_name} {what} {function_name!r}.")
    _check_no_arguments(spec, function, function_name)
    built = function()
    if not isinstance(built, nn.Module):
        raise LceError(f"--arch {spec!r}: {function_name}() returned a {type(built).__name__}, not a "
                       f"torch.nn.Module.")
    return built


def _check_no_arguments(spec: str, function, function_name: str) -> None:
    try:
        inspect.signature(function).bind()
    except TypeError as error:
        raise LceError(f"--arch {spec!r}: {function_name} cannot be called without arguments ({error}); lce calls "
                       "it with none.") from None
    except ValueError:  # no signature to read (some classes written in C): calling it will tell
        pass


def classification_architectures() -> list[str]:
    """torchvision's classification model names (resnet50, vit_b_16, ...)."""
    return torchvision.models.list_models(module=torchvision.models)


def _torchvision(arch: str, image_size: int | None) -> Made:
    known = classification_architectures()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=5)
        suggestion = f"did you mean {', '.join(close)}?" if close else "see torchvision.models.list_models()."
        raise LceError(f"{arch!r} is not a torchvision classification architecture, nor timm:NAME, hf:DIR or a "
                       f"package.module:function spec; {suggestion}")
    builder = torchvision.models.get_model_builder(arch)
    options = {}
    if image_size is not None:
        # ViTs and MaxViTs are built for one input size: built at the probe's, their position embeddings (ViT)
        # are resampled from a checkpoint's.
        parameters = inspect.signature(builder).parameters
        if arch.startswith("vit_"):
            options["image_size"] = image_size
        elif arch.startswith("maxvit") or "input_size" in parameters:
            options["input_size"] = (image_size, image_size)
    try:
        module = builder(weights=None, **options)
    except (ValueError, AssertionError, RuntimeError) as error:
        raise LceError(f"torchvision's {arch} cannot be built for {image_size}-px images: {first_line(error)}") \
            from None
    conversion = None
    if isinstance(module, torchvision.models.VisionTransformer):
        conversion = Conversion("torchvision's interpolate_embeddings", partial(_vit_embeddings, module))
    return Made(module, IMAGENET, "torchvision's ImageNet mean/std", conversion=conversion)


def _vit_embeddings(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from torchvision.models.vision_transformer import interpolate_embeddings

    key = "encoder.pos_embedding"
    if key in state and state[key].shape != model.encoder.pos_embedding.shape:
        return interpolate_embeddings(model.image_size, model.patch_size, state)
    return state


def _timm(name: str, image_size: int | None) -> Made:
    timm = _optional("timm", "timm")
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models()."
        raise LceError(f"--arch timm:{name}: timm {timm.__version__} has no architecture {name!r}; {hint}")
    try:
        try:
            module = timm.create_model(name, pretrained=False, **({"img_size": image_size} if image_size else {}))
        except TypeError as error:  # an architecture without an input size (a CNN): built as it is
            if "img_size" not in str(error):
                raise
            module = timm.create_model(name, pretrained=False)
    except (ValueError, AssertionError, RuntimeError, TypeError) as error:
        raise LceError(f"--arch timm:{name} cannot be built for {image_size}-px images: {first_line(error)}") \
            from None
    config = dict(getattr(module, "pretrained_cfg", None) or {})
    filter_fn = getattr(sys.modules.get(type(module).__module__), "checkpoint_filter_fn", None)
    conversion = None
    if callable(filter_fn):
        conversion = Conversion(f"timm's {type(module).__module__}.checkpoint_filter_fn",
                                lambda state: filter_fn(state, module))
    if config.get("mean") and config.get("std"):
        tag = config.get("tag")
        normalization = Normalization(tuple(config["mean"]), tuple(config["std"]))
        return Made(module, normalization, f"timm's pretrained config ({name}{'.' + tag if tag else ''})",
                    conversion=conversion)
    return Made(module, IMAGENET, "ImageNet's mean/std (a default: timm's config gives none)", conversion=conversion,
                warning=f"timm's {name} has no pretrained config with a mean and std: ImageNet's are used; pass "
                        "--mean R,G,B --std R,G,B if the model expects others.")


def _hugging_face(directory: Path, random_init: bool) -> Made:
    if not (directory / "config.json").is_file():
        raise LceError(f"--arch hf:{directory}: {directory} is not a saved Hugging Face model (no config.json "
                       "in it); save one with model.save_pretrained(DIR).")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded, whatever the directory's config says
    transformers = _optional("transformers", "hf")
    try:
        config = transformers.AutoConfig.from_pretrained(directory, local_files_only=True, trust_remote_code=False)
        model_class = transformers.CLIPVisionModel if config.model_type == "clip" else transformers.AutoModel
        if random_init:
            if config.model_type == "clip":
                config = config.vision_config
            module, files = model_class.from_config(config), []
        else:
            files = sorted(path for pattern in HF_WEIGHTS for path in directory.glob(pattern))
            if not files:
                raise LceError(f"--arch hf:{directory}: the directory holds no weights (*.safetensors or *.bin); "
                               "pass --random-init for its architecture alone.")
            module = model_class.from_pretrained(directory, local_files_only=True, trust_remote_code=False)
    except LceError:
        raise
    except pickle.UnpicklingError as error:  # transformers reads a pickled *.bin with torch.load(weights_only=True)
        refused = re.search(r"GLOBAL (\S+)", str(error))
        first = f" (first one: {refused.group(1)})" if refused else ""
        raise LceError(f"--arch hf:{directory}: its weights file holds Python objects besides tensors{first}, and "
                       "lce loads weights only, so that a file never runs code. If you trust the file, save the "
                       "model again as safetensors (model.save_pretrained(DIR), transformers' default) and pass "
                       "that directory.") from None
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise LceError(f"--arch hf:{directory} cannot be loaded: {first_line(error)}") from None
    forward = inspect.signature(module.forward).parameters
    if "interpolate_pos_encoding" in forward:  # a ViT fine-tuned at 224 px reads a probe of another size
        module.forward = partial(module.forward, interpolate_pos_encoding=True)
    normalization, origin, warning = _preprocessor_normalization(directory)
    made = Made(module, normalization, origin, warning=warning)
    if files:
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.name.encode() + b"\0")
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        made.weights_sha256 = digest.hexdigest()
        made.weights_layout = f"Hugging Face ({', '.join(path.name for path in files)})"
    return made


def _preprocessor_normalization(directory: Path) -> tuple[Normalization | None, str, str | None]:
    path = directory / "preprocessor_config.json"
    if not path.is_file():
        return IMAGENET, "ImageNet's mean/std (a default: no preprocessor_config.json)", (
            f"{directory} has no preprocessor_config.json: ImageNet's mean and std are used; pass --mean R,G,B "
            "--std R,G,B if the model expects others.")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise LceError(f"{path} is not readable JSON: {first_line(error)}") from None
    if config.get("do_normalize") is False:
        return None, f"{path.name}: do_normalize false ([0, 1] inputs)", None
    mean, std = config.get("image_mean"), config.get("image_std")
    if not (isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == 3):
        return IMAGENET, f"ImageNet's mean/std (a default: {path.name} gives no image_mean/image_std)", (
            f"{path} gives no 3-channel image_mean and image_std: ImageNet's are used; pass --mean/--std to change.")
    return Normalization(tuple(map(float, mean)), tuple(map(float, std))), path.name, None


def _optional(module: str, extra: str):
    try:
        return __import__(module)
    except ImportError:
        raise LceError(f"--arch {extra}:... needs the optional package {module}, which is not installed: pip "
                       f"install 'lce[{extra}]' (scripts/install installs it).") from None
