"""The models to dissect: named zoo entries, checkpoint layouts, building, and capturing a layer's units.

    entry = zoo_entry("moco-v2")
    model = build_zoo_model(entry, Path("moco_v2_800ep_pretrain.pth.tar"))
    with LayerCapture(model.module, [entry.layer]) as capture: model.module(images)

The names below are loaded from their modules when first asked for (PEP 562), so that `lce.models.layers`, all the
engine needs, does not load torchvision with lce.models.build.
"""

from importlib import import_module

_MODULES = {
    "build": ("LoadedModel", "build_model", "build_zoo_model", "classification_architectures", "construct"),
    "checkpoints": ("LAYOUTS", "CheckpointInfo", "Layout", "file_sha256", "load_checkpoint"),
    "layers": ("LayerCapture", "output_shapes", "resolve_layer"),
    "layout": ("MapLayout", "resolve_layouts", "to_units"),
    "zoo": ("IMAGENET", "Normalization", "ZooEntry", "zoo_entries", "zoo_entry"),
}
_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'lce.models' has no attribute {name!r}")
    return getattr(import_module(f"lce.models.{_MODULE_OF[name]}"), name)


def __dir__() -> list[str]:
    """The names loaded on demand as well, as dir() listed them when the package imported them all."""
    return sorted(set(globals()) | set(__all__))
