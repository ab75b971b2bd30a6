"""Building the model to dissect: an architecture (lce.models.sources), then weights from a checkpoint or a seeded
random init.

    model = build_model("resnet18", checkpoint=Path("resnet18_places365.pth"))
    model = build_model("resnet50", random_init=True, seed=0)           # same seed, same weights
    model = build_model("timm:vit_small_patch16_224", checkpoint=Path("dino_deitsmall16_pretrain.pth"),
                        image_size=224)
    model = build_model("hf:./my-dinov2", image_size=224)               # the directory's own weights
    model = build_model("mypackage.nets:small_cnn", random_init=True)   # a function returning an nn.Module
    model = build_zoo_model(zoo_entry("swav"), Path("swav_800ep_pretrain.pth.tar"))

`package.module:function` is imported from PYTHONPATH or the installed packages; the current directory is not
searched (PYTHONPATH=. for a module there), so that a file lying in it is never run by accident. The function must
be a Python function or class callable with no arguments that returns a torch.nn.Module; modules of the standard
library and built-in modules (os:system), lce's own and __main__ are refused before anything is imported, so --arch
cannot be made to run a command.

A stored run names its architecture in its settings, which anyone who may write runs wrote (a shared owner login,
`lce sql --write`, a --resume file). So ModelSpec.recorded, the one way back from stored settings to a model,
builds torchvision, timm:, hf: (never remote code) and zoo architectures only, and a package.module:function only
when the user named it (`lce report --allow-arch package.module:function`):

    spec = ModelSpec.recorded(run.settings, allowed=("mynets:small",))   # ArchitectureNotAllowed otherwise
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lce.errors import LceError
from lce.models import sources
from lce.models.checkpoints import CheckpointInfo, load_checkpoint
from lce.models.zoo import Normalization, ZooEntry, zoo_entry

FROM_SOURCE = "from the source"  # build_model's default normalisation: the one the architecture's source gives


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to dissect: `module` in eval mode, on the CPU (the caller moves it to its device).

    architecture is the --arch spec and source its kind (lce.models.sources.KINDS). checkpoint_sha256 and
    checkpoint_layout are None for a random init; normalization is None when the model expects [0, 1] inputs as
    they are, and normalization_source says where it comes from (warning: when that is a default). image_size is
    the input size the architecture was built for, when it takes one. description is one line for humans (and
    run records).
    """

    module: nn.Module
    architecture: str
    checkpoint_sha256: str | None
    checkpoint_layout: str | None
    normalization: Normalization | None
    description: str
    source: str = "torchvision"
    normalization_source: str = ""
    warning: str | None = None
    image_size: int | None = None

    @property
    def mean(self) -> tuple[float, float, float] | None:
        return self.normalization.mean if self.normalization else None

    @property
    def std(self) -> tuple[float, float, float] | None:
        return self.normalization.std if self.normalization else None


def build_model(arch: str, *, checkpoint: Path | None = None, random_init: bool = False, seed: int = 0,
                normalization: Normalization | None | str = FROM_SOURCE, image_size: int | None = None,
                normalization_source: str = "given") -> LoadedModel:
    """Build `arch` with the weights of `checkpoint` (any layout lce.models.checkpoints knows), or with its random
    initialisation drawn from `seed` when random_init; exactly one of the two, except for hf:DIR, whose weights are
    DIR's own (neither: those; --random-init: its architecture alone).

    normalization: FROM_SOURCE takes the source's (timm's pretrained config, the directory's
    preprocessor_config.json, torchvision's ImageNet statistics); a Normalization (or None, [0, 1] inputs) is
    used as given and recorded with `normalization_source`. image_size: the probe's, for architectures built for
    one input size (ViTs). The seed is also used when loading a checkpoint, so that a classifier the checkpoint
    lacks (never used by dissection) is the same from run to run. The global RNG state is left as it was.
    """
    source = sources.parse_arch(arch)
    if source.kind == "hf":
        if checkpoint is not None:
            raise LceError(f"--arch {arch} takes its weights from the directory; --checkpoint {checkpoint} is not "
                           "used with hf:DIR (pass --random-init for the architecture alone).")
    elif (checkpoint is None) == (not random_init):
        raise LceError("Give either a checkpoint file or --random-init (with --seed), exactly one of the two; "
                       f"got {'both' if random_init else 'neither'} for {arch}.")
    with _seeded(seed):
        made = sources.make(source, image_size=image_size, random_init=random_init)
    module = made.module
    if normalization == FROM_SOURCE:
        normalization, normalization_source, warning = made.normalization, made.normalization_source, made.warning
        if source.kind == "timm" and checkpoint is not None and warning is None:
            # timm's config is that of the name's default pretrained weights, perhaps not the checkpoint's.
            warning = (f"the input normalisation is {normalization_source}: mean {normalization.mean}, std "
                       f"{normalization.std}; if {Path(checkpoint).name} was trained with others, pass --mean R,G,B "
                       "--std R,G,B (the zoo's ViT entries carry their own).")
    else:
        warning = None
    common = dict(module=module, architecture=source.spec, normalization=normalization, source=source.kind,
                  normalization_source=normalization_source, warning=warning, image_size=image_size)
    if made.weights_sha256 is not None:
        module.eval()
        return LoadedModel(checkpoint_sha256=made.weights_sha256, checkpoint_layout=made.weights_layout,
                           description=f"{source.spec} ({made.weights_layout})", **common)
    if random_init:
        module.eval()
        return LoadedModel(checkpoint_sha256=None, checkpoint_layout=None,
                           description=f"{arch}, random init (seed {seed})", **common)
    with _seeded(seed):
        info: CheckpointInfo = load_checkpoint(module, Path(checkpoint), convert=made.conversion)
    module.eval()
    dropped = f", {info.dropped} head key(s) dropped" if info.dropped else ""
    return LoadedModel(checkpoint_sha256=info.sha256, checkpoint_layout=info.layout,
                       description=f"{arch} from {Path(checkpoint).name} (layout {info.layout}{dropped})", **common)


@contextlib.contextmanager
def _seeded(seed: int):
    """The CPU's generator seeded with `seed` inside the block (models are built on the CPU), and as it was
    afterwards; torch.manual_seed would also reseed every CUDA generator, which fork_rng(devices=[]) leaves
    reseeded."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def build_zoo_model(entry: ZooEntry, checkpoint: Path | None, *, seed: int = 0, random_init: bool = False,
                    image_size: int | None = None, normalization: Normalization | None | str = FROM_SOURCE,
                    normalization_source: str = "--mean/--std") -> LoadedModel:
    """Build a zoo entry: from its checkpoint, or from `seed` for the random control (which takes no file) or
    when random_init asks for the entry's architecture untrained. normalization: the entry's unless given."""
    if entry.layout is None and checkpoint is not None:
        raise LceError(f"The zoo model {entry.name!r} is a random initialisation and takes no checkpoint "
                       f"(got {checkpoint}); pass --seed to choose the draw.")
    untrained = random_init or entry.layout is None
    if not untrained and checkpoint is None:
        raise LceError(f"The zoo model {entry.name!r} needs its checkpoint file ({entry.note}); lce never "
                       f"downloads weights.")
    if normalization == FROM_SOURCE:
        normalization, origin = entry.normalization, f"the zoo ({entry.name})"
    else:
        origin = normalization_source
    loaded = build_model(entry.architecture, checkpoint=None if untrained else checkpoint, random_init=untrained,
                         seed=seed, normalization=normalization, normalization_source=origin,
                         image_size=image_size)
    return LoadedModel(module=loaded.module, architecture=loaded.architecture,
                       checkpoint_sha256=loaded.checkpoint_sha256, checkpoint_layout=loaded.checkpoint_layout,
                       normalization=loaded.normalization, description=f"{entry.title}: {loaded.description}",
                       source=loaded.source, normalization_source=origin, image_size=image_size)


@dataclass(frozen=True)
class ModelSpec:
    """How a model is made: what lce ingest asks for and what a run records (settings()), so that one build()
    serves the ingest and lce report, which builds a stored run's model again (ModelSpec.recorded).

    architecture: an --arch spec; zoo: the zoo entry it comes from (its normalisation and description), if any;
    normalization: FROM_SOURCE (the source's or the zoo entry's), or as given (None: [0, 1] inputs).
    """

    architecture: str
    checkpoint: Path | None = None
    random_init: bool = False
    seed: int = 0
    image_size: int | None = None
    normalization: Normalization | None | str = FROM_SOURCE
    normalization_source: str = "given"
    zoo: str | None = None

    def build(self) -> LoadedModel:
        if self.zoo is not None:
            return build_zoo_model(zoo_entry(self.zoo), self.checkpoint, seed=self.seed, random_init=self.random_init,
                                   image_size=self.image_size, normalization=self.normalization,
                                   normalization_source=self.normalization_source)
        return build_model(self.architecture, checkpoint=self.checkpoint, random_init=self.random_init, seed=self.seed,
                           normalization=self.normalization, normalization_source=self.normalization_source,
                           image_size=self.image_size)

    def settings(self, loaded: LoadedModel) -> dict:
        """What a run records of its model (the keys ModelSpec.recorded reads), with what building it found."""
        drawn = loaded.checkpoint_sha256 is None  # weights drawn from the seed (--random-init, the zoo's control)
        return {
            "architecture": loaded.architecture, "source": loaded.source, "zoo": self.zoo,
            "model_image_size": loaded.image_size,
            # Absolute, so that lce report finds the file again from any directory.
            "checkpoint": str(self.checkpoint.resolve()) if self.checkpoint else None,
            "checkpoint_layout": loaded.checkpoint_layout, "random_init": drawn, "seed": self.seed if drawn else None,
            "mean": list(loaded.mean) if loaded.mean else None, "std": list(loaded.std) if loaded.std else None,
            "normalization_source": loaded.normalization_source,
        }

    @classmethod
    def recorded(cls, settings: dict, allowed: Collection[str] = ()) -> ModelSpec:
        """The model of a stored run, from its settings: its normalisation exactly as recorded.
        ArchitectureNotAllowed when it would run code that the settings name (a package.module:function, not in
        `allowed`: the architectures the user named on the command line); nothing is imported to tell."""
        architecture, zoo = _setting(settings, "architecture", str, required=True), _setting(settings, "zoo", str)
        checkpoint, seed = _setting(settings, "checkpoint", str), _setting(settings, "seed", int)
        image_size = _setting(settings, "model_image_size", int)
        mean, std = _setting(settings, "mean", list), _setting(settings, "std", list)
        if zoo is None:  # a zoo entry builds its own architecture, never the stored one
            check_recorded_architecture(architecture, allowed)
        if image_size is not None and not 0 < image_size <= 8192:
            raise LceError(f"the run's settings give model_image_size {image_size}, not a size in pixels.")
        normalization = None
        if mean and std:
            if not all(len(values) == 3 and all(type(value) in (int, float) and math.isfinite(value)
                                                 for value in values) for values in (mean, std)) or 0 in std:
                raise LceError(f"the run's settings give mean {mean} and std {std}, not three finite numbers each "
                               "(std not 0).")
            normalization = Normalization(tuple(map(float, mean)), tuple(map(float, std)))
        return cls(architecture=architecture, checkpoint=Path(checkpoint) if checkpoint else None,
                   random_init=bool(_setting(settings, "random_init", bool)), seed=seed or 0, image_size=image_size,
                   normalization=normalization, normalization_source="the run's settings", zoo=zoo)


def _setting(settings: dict, key: str, kind: type, required: bool = False):
    """settings[key] when it is a `kind` (None when absent); LceError otherwise. Stored settings are anyone's JSON
    (whoever could write runs): a number where a name belongs must be a message, not a traceback in lce report."""
    value = settings.get(key)
    if value is None and not required:
        return None
    if type(value) is not kind:  # exactly: JSON's true is no seed, and 1 is no random_init
        raise LceError(f"the run's settings give {key} = {json.dumps(value)[:80]}, not a {kind.__name__}.")
    return value


class ArchitectureNotAllowed(LceError):
    """A stored run's architecture is code of someone's (package.module:function) that the user did not name."""


def check_recorded_architecture(architecture: str, allowed: Collection[str] = ()) -> None:
    """Nothing when a stored run's `architecture` may be built again: a torchvision name, timm:, hf: (loaded
    without remote code), or a package.module:function among `allowed`; ArchitectureNotAllowed otherwise."""
    source = sources.parse_arch(architecture)
    if source.kind == "function" and source.name not in set(allowed):
        raise ArchitectureNotAllowed(
            f"the run's architecture {source.name!r} is a function of Python code that the stored run names, and "
            "lce runs code named by stored data only when you name it yourself: if you trust it (whoever could "
            f"write this run chose it), pass --allow-arch {source.name}, with its module importable "
            "(PYTHONPATH).")


def classification_architectures() -> list[str]:
    """torchvision's classification model names (resnet50, vit_b_16, ...)."""
    return sources.classification_architectures()


def construct(arch: str, image_size: int | None = None) -> nn.Module:
    """An untrained `arch` (any --arch spec; hf:DIR with the directory's weights), drawn from the current RNG."""
    return sources.make(sources.parse_arch(arch), image_size=image_size, random_init=False).module
