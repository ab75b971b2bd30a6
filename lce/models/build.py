"""Building the model to dissect: an architecture, then weights from a checkpoint or a seeded random init.

    model = build_model("resnet18", checkpoint=Path("resnet18_places365.pth"))
    model = build_model("resnet50", random_init=True, seed=0)           # same seed, same weights
    model = build_model("mypackage.nets:small_cnn", random_init=True)   # a function returning an nn.Module
    model = build_zoo_model(zoo_entry("swav"), Path("swav_800ep_pretrain.pth.tar"))

Architectures come from torchvision (always with weights=None: lce never downloads) or from
`package.module:function`, imported from the current directory or PYTHONPATH. The function must be a Python
function or class callable with no arguments that returns a torch.nn.Module; modules of the standard library and
built-in modules (os:system), lce's own and __main__ are refused before anything is imported, so --arch cannot be
made to run a command.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from lce.errors import LceError
from lce.models.checkpoints import CheckpointInfo, load_checkpoint
from lce.models.zoo import IMAGENET, Normalization, ZooEntry


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to dissect: `module` in eval mode, on the CPU (the caller moves it to its device).

    checkpoint_sha256 and checkpoint_layout are None for a random init; normalization is None when the model
    expects [0, 1] inputs as they are. description is one line for humans (and run records).
    """

    module: nn.Module
    architecture: str
    checkpoint_sha256: str | None
    checkpoint_layout: str | None
    normalization: Normalization | None
    description: str

    @property
    def mean(self) -> tuple[float, float, float] | None:
        return self.normalization.mean if self.normalization else None

    @property
    def std(self) -> tuple[float, float, float] | None:
        return self.normalization.std if self.normalization else None


def build_model(arch: str, *, checkpoint: Path | None = None, random_init: bool = False, seed: int = 0,
                normalization: Normalization | None = IMAGENET) -> LoadedModel:
    """Build `arch` with the weights of `checkpoint` (any layout lce.models.checkpoints knows), or with
    torchvision's random initialisation drawn from `seed` when random_init; exactly one of the two.

    The seed is also used when loading a checkpoint, so that a classifier the checkpoint lacks (never used by
    dissection) is the same from run to run. The global RNG state is left as it was.
    """
    if (checkpoint is None) == (not random_init):
        raise LceError("Give either a checkpoint file or --random-init (with --seed), exactly one of the two; "
                       f"got {'both' if random_init else 'neither'} for {arch}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = construct(arch)
    if random_init:
        module.eval()
        return LoadedModel(module=module, architecture=arch, checkpoint_sha256=None, checkpoint_layout=None,
                           normalization=normalization, description=f"{arch}, random init (seed {seed})")
    info: CheckpointInfo = load_checkpoint(module, Path(checkpoint))
    module.eval()
    dropped = f", {info.dropped} head key(s) dropped" if info.dropped else ""
    return LoadedModel(module=module, architecture=arch, checkpoint_sha256=info.sha256,
                       checkpoint_layout=info.layout, normalization=normalization,
                       description=f"{arch} from {Path(checkpoint).name} (layout {info.layout}{dropped})")


def build_zoo_model(entry: ZooEntry, checkpoint: Path | None, *, seed: int = 0) -> LoadedModel:
    """Build a zoo entry: from its checkpoint, or from `seed` for the random control (which takes no file)."""
    if entry.layout is None:
        if checkpoint is not None:
            raise LceError(f"The zoo model {entry.name!r} is a random initialisation and takes no checkpoint "
                           f"(got {checkpoint}); pass --seed to choose the draw.")
        loaded = build_model(entry.architecture, random_init=True, seed=seed, normalization=entry.normalization)
    else:
        if checkpoint is None:
            raise LceError(f"The zoo model {entry.name!r} needs its checkpoint file ({entry.note}); lce never "
                           f"downloads weights.")
        loaded = build_model(entry.architecture, checkpoint=checkpoint, seed=seed,
                             normalization=entry.normalization)
    return LoadedModel(module=loaded.module, architecture=loaded.architecture,
                       checkpoint_sha256=loaded.checkpoint_sha256, checkpoint_layout=loaded.checkpoint_layout,
                       normalization=loaded.normalization, description=f"{entry.title}: {loaded.description}")


def classification_architectures() -> list[str]:
    """torchvision's classification model names (resnet50, vit_b_16, ...)."""
    return torchvision.models.list_models(module=torchvision.models)


def construct(arch: str) -> nn.Module:
    """An untrained `arch`: a torchvision classification name, or `package.module:function`."""
    if ":" in arch:
        return _from_function(arch)
    known = classification_architectures()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=5)
        suggestion = f"did you mean {', '.join(close)}?" if close else "see torchvision.models.list_models()."
        raise LceError(f"{arch!r} is not a torchvision classification architecture nor a package.module:function "
                       f"spec; {suggestion}")
    return torchvision.models.get_model(arch, weights=None)


def _from_function(spec: str) -> nn.Module:
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
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:  # the user's own code sits in the current directory more often than on PYTHONPATH
        sys.path.insert(0, cwd)
    try:
        importlib.invalidate_caches()
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is None or not (module_name == error.name or module_name.startswith(error.name + ".")):
                raise  # the user's module itself failed an import: its traceback is the useful message
            raise LceError(f"--arch {spec!r}: module {module_name!r} is not importable from the current "
                           f"directory ({cwd}) or PYTHONPATH.") from None
        function = getattr(module, function_name, None)
        if not (inspect.isfunction(function) or inspect.isclass(function)):
            what = "has no function" if function is None or not callable(function) else \
                f"holds a {type(function).__name__}, not a Python function or class, under"
            raise LceError(f"--arch {spec!r}: {module_name} {what} {function_name!r}.")
        _check_no_arguments(spec, function, function_name)
        built = function()
    finally:
        if added:
            sys.path.remove(cwd)
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
