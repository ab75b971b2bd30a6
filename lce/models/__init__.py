"""The models to dissect: named zoo entries, checkpoint layouts, building, and capturing a layer's units.

    entry = zoo_entry("moco-v2")
    model = build_zoo_model(entry, Path("moco_v2_800ep_pretrain.pth.tar"))
    with LayerCapture(model.module, [entry.layer]) as capture: model.module(images)
"""

from lce.models.build import LoadedModel, build_model, build_zoo_model, classification_architectures, construct
from lce.models.checkpoints import LAYOUTS, CheckpointInfo, Layout, file_sha256, load_checkpoint
from lce.models.layers import LayerCapture, output_shapes, resolve_layer
from lce.models.layout import MapLayout, resolve_layouts, to_units
from lce.models.zoo import IMAGENET, Normalization, ZooEntry, zoo_entries, zoo_entry

__all__ = [
    "IMAGENET", "LAYOUTS", "CheckpointInfo", "LayerCapture", "Layout", "LoadedModel", "Normalization", "ZooEntry",
    "MapLayout", "build_model", "build_zoo_model", "classification_architectures", "construct", "file_sha256",
    "load_checkpoint", "output_shapes", "resolve_layer", "resolve_layouts", "to_units", "zoo_entries", "zoo_entry",
]
