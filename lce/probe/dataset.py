"""The probe as a torch Dataset for dissection: the image, normalised as the model expects, and its labels.

    data = ProbeDataset(Broden.open(root), seg_size=56, mean=IMAGENET_MEAN, std=IMAGENET_STD, cache=cache)
    item = data[0]
    item["image"]     # float32, 3 x H x W, normalised with the model's mean and std (None: left in [0, 1])
    item["layers"]    # int32, L x S x S: label numbers per pixel, one slot per possible label layer (0 = none)
    item["whole"]     # int64, W: whole-image label numbers (scene, texture), 0 in unused slots
    item["annotated"] # bool, C: which of data.categories the image annotates

Every item has the same shapes (slots are fixed per dataset: data.layer_categories and data.whole_categories
say which category each slot belongs to), so the default collate batches them and DataLoader workers can load
them in parallel. Labels come from the decode cache when one is given, else from the PNGs. An image that cannot
be read is an UnreadableImage naming it and its index.csv line; DataLoader workers re-raise it with their
traceback in the message, and `user_message()` gives back the one paragraph.
"""

from __future__ import annotations

import numpy as np
import torch

from lce.errors import LceError
from lce.probe.broden import Broden
from lce.probe.cache import DecodeCache
from lce.probe.labels import ImageLabels

# torchvision's ImageNet statistics, the normalisation of most of the paper's models (docs/method.md section 4).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class UnreadableImage(LceError):
    """An image of the probe that cannot be read during a pass."""

    def user_message(self) -> str:
        """The message without what DataLoader adds when a worker raised it ("Caught ... Original Traceback ...",
        ending with "...UnreadableImage: <message>")."""
        return str(self).rsplit(f"{type(self).__name__}: ", 1)[-1].strip()


class ProbeDataset(torch.utils.data.Dataset):
    def __init__(self, probe: Broden, *, image_size: int | None = None, seg_size: int | None = None,
                 mean: tuple[float, float, float] | None = IMAGENET_MEAN,
                 std: tuple[float, float, float] | None = IMAGENET_STD, cache: DecodeCache | None = None,
                 images: bool = True, uint8: bool = False):
        self.probe = probe
        self.load_images = images  # False: labels only (a second pass over cached activations)
        # uint8: images leave the workers as 3 x H x W uint8 (a quarter of the bytes to pass between processes);
        # the consumer calls normalize() on them, on its device.
        self.uint8 = uint8
        self.image_size = image_size or probe.rows[0].ih
        self.seg_size = seg_size or probe.rows[0].sh
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.levels = _levels(self.mean, self.std)  # (3 * 256,): every channel's input for every uint8 value
        self._levels_on: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # (levels, offsets) on each device
        self.cache = cache
        self.positions = cache.positions(probe) if cache is not None else None
        self.categories = list(probe.categories)
        layers = probe.max_layers()
        self.layer_categories = [c for c in self.categories for _ in range(layers[c])]
        whole = {c: max((len(row.whole_labels(c)) for row in probe.rows), default=0) for c in self.categories}
        self.whole_categories = [c for c in self.categories for _ in range(whole[c])]

    def __len__(self) -> int:
        return len(self.probe)

    @property
    def concepts(self) -> list[tuple[str, int]]:
        """The probe's concepts, (category, label number) of each member of its c_<category>.csv files in its
        categories, sorted: what `lce probe add` stores as concepts, the bootstrap's counters' columns (and what the
        memory plan counts for them)."""
        return sorted({(category, member.number) for category, members in self.probe.members.items()
                       if category in self.categories for member in members})

    def __getstate__(self) -> dict:
        # DataLoader workers get the dataset without the device copies (CUDA tensors do not cross processes).
        return {**self.__dict__, "_levels_on": {}}

    def labels_of(self, index: int) -> ImageLabels:
        if self.cache is not None:
            return self.cache.labels_of(self.positions[index])
        return self.probe.labels_of(index)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        labels = self.labels_of(index)
        return {
            "index": torch.tensor(index),
            "image": self.image(index) if self.load_images else torch.zeros(0),
            "layers": torch.from_numpy(self._layers(labels)),
            "whole": torch.tensor([n or 0 for n in _slots(self.whole_categories, labels.whole)], dtype=torch.int64),
            "annotated": torch.tensor([c in labels.categories for c in self.categories], dtype=torch.bool),
        }

    def image(self, index: int) -> torch.Tensor:
        from PIL import Image

        path = self.probe.image_path(index)
        try:
            with Image.open(path) as picture:
                picture = picture.convert("RGB")
        except (OSError, SyntaxError, ValueError) as error:
            raise UnreadableImage(f"{path} (index.csv line {self.probe.rows[index].line}) cannot be read ({error}). "
                                  "`lce probe check --deep` lists every such file; nothing was written.") from None
        if picture.size != (self.image_size, self.image_size):
            picture = picture.resize((self.image_size, self.image_size), Image.BILINEAR)
        pixels = torch.from_numpy(np.array(picture, dtype=np.uint8)).permute(2, 0, 1)
        return pixels.contiguous() if self.uint8 else self.normalize(pixels)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (3 x H x W or B x 3 x H x W, any device) to the model's input: x / 255, then mean and std;
        float images are taken as already normalised.

        The same bits on every device: each channel's 256 possible inputs are computed once on the host (CUDA
        would divide by 255.0 as a multiplication by its reciprocal) and looked up on the device, where they are
        kept (no host-to-device copy per batch)."""
        if images.dtype != torch.uint8:
            return images
        key = str(images.device)
        if key not in self._levels_on:
            self._levels_on[key] = (self.levels.to(images.device), _CHANNEL_OFFSETS.to(images.device))
        levels, offsets = self._levels_on[key]
        index = images.int()  # int32: half the bytes of int64 indices, and as fast as the division on the CPU
        index += offsets  # channel c's levels start at c * 256
        return levels.index_select(0, index.reshape(-1)).view(images.shape)

    def _layers(self, labels: ImageLabels) -> np.ndarray:
        size = self.seg_size
        out = np.zeros((len(self.layer_categories), size, size), dtype=np.int32)  # half the IPC of int64
        for slot, layer in enumerate(_slots(self.layer_categories, labels.pixel)):
            if layer is not None:
                out[slot] = resize_nearest(layer, size)
        return out


# (3, 1, 1): where each channel's 256 levels start in ProbeDataset.levels.
_CHANNEL_OFFSETS = torch.arange(0, 3 * 256, 256, dtype=torch.int32).view(3, 1, 1)


def _levels(mean: torch.Tensor | None, std: torch.Tensor | None) -> torch.Tensor:
    """(3 * 256,) float32: the model's input for each channel and uint8 value, computed as normalize() did pixel by
    pixel before (x / 255, minus mean, over std, in float32 on the CPU), so that its results did not change."""
    pixels = (torch.arange(256, dtype=torch.float32) / 255.0).expand(3, 256)
    if mean is not None:
        pixels = pixels - mean.view(3, 1)
    if std is not None:
        pixels = pixels / std.view(3, 1)
    return pixels.contiguous().view(-1)


def _slots(slot_categories: list[str], values: dict[str, list]) -> list:
    """Each slot's item: the k-th item of its category for the category's k-th slot, None where it has none."""
    taken: dict[str, int] = {}
    out = []
    for category in slot_categories:
        items, k = values.get(category, []), taken.get(category, 0)
        out.append(items[k] if k < len(items) else None)
        taken[category] = k + 1
    return out


def resize_nearest(layer: np.ndarray, size: int) -> np.ndarray:
    """A label map resized to size x size by nearest neighbour (pixel centres; labels must not be blended)."""
    height, width = layer.shape
    if (height, width) == (size, size):
        return layer
    rows = np.minimum(((np.arange(size) + 0.5) * height / size).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(size) + 0.5) * width / size).astype(np.int64), width - 1)
    return layer[rows[:, None], cols[None, :]]
