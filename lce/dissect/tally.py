"""Counting, pooled over the probe: I[u, c], A and G[c] (method.md section 1), vectorised on the device.

    tally = Tally(units=512, categories=[...], max_label=1196, variant="dissect", device=device)
    tally.add_truth(layers, layer_category, whole, whole_category)              # G, once per batch
    tally.add_pairs(mask, image, unit, layers, layer_category, whole, whole_category, annotated)  # I and A
    tally.iou()                                                                 # (units, columns)

A concept is a (category, label number) pair, so the same label in two categories is two concepts; its column
is category_index * (max_label + 1) + label. Only active pixels (a few in a thousand) are visited: their
(unit, column) pairs are counted with index_add_ into int64 counters; whole-image labels (scene, texture) count
as all S x S pixels of their image. `dissect` counts a unit's activation A[u] over every pixel; `netdissect` counts A[u, k]
only over images that annotate category k.
"""

from __future__ import annotations

import torch

VARIANTS = ("netdissect", "dissect")


class Tally:
    def __init__(self, units: int, categories: list[str], max_label: int, variant: str,
                 device: torch.device | str = "cpu"):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
        self.units, self.categories, self.variant = units, list(categories), variant
        self.stride = max_label + 1
        self.columns = len(self.categories) * self.stride
        self.device = torch.device(device)
        self.intersection = torch.zeros(units * self.columns, dtype=torch.int64, device=self.device)
        self.truth = torch.zeros(self.columns, dtype=torch.int64, device=self.device)
        shape = (units,) if variant == "dissect" else (units, len(self.categories))
        self.activation = torch.zeros(shape, dtype=torch.int64, device=self.device)
        self.images = 0

    def column(self, category: str, label: int) -> int:
        return self.categories.index(category) * self.stride + label

    def add_truth(self, layers: torch.Tensor, layer_category: torch.Tensor, whole: torch.Tensor,
                  whole_category: torch.Tensor) -> None:
        """G[c] of one batch (once per batch, whatever the unit chunks): layers (B, L, S, S) label numbers
        (0 = none) with layer_category (L,) category indices; whole (B, W) with whole_category (W,)."""
        self.images += layers.shape[0]
        layers = layers.to(self.device)
        columns = layer_category.to(self.device)[None, :, None, None] * self.stride + layers
        self.truth += torch.bincount(columns[layers > 0], minlength=self.columns)
        whole = whole.to(self.device)
        cols = (whole_category.to(self.device)[None, :] * self.stride + whole)[whole > 0]
        size = layers.shape[-1]
        self.truth.index_add_(0, cols, torch.full_like(cols, size * size))

    def add_pairs(self, mask: torch.Tensor, image: torch.Tensor, unit: torch.Tensor, layers: torch.Tensor,
                  layer_category: torch.Tensor, whole: torch.Tensor, whole_category: torch.Tensor,
                  annotated: torch.Tensor) -> None:
        """I and A for some (image, unit) pairs of a batch (call add_truth once per batch too): mask[k] (S x S
        bool) is M_u of unit[k] in image[k], pairs left out having no active pixel; layers (B, L, S, S) and whole
        (B, W) as in add_truth; annotated (B, categories) bool."""
        mask, image, unit = mask.to(self.device), image.to(self.device), unit.to(self.device)
        layers = layers.to(self.device)
        columns = layer_category.to(self.device)[None, :, None, None] * self.stride + layers
        pair, y, x = mask.nonzero(as_tuple=True)
        pixel_image, pixel_unit = image[pair], unit[pair]
        for layer in range(layers.shape[1]):
            hit = layers[pixel_image, layer, y, x] > 0
            cells = pixel_unit[hit] * self.columns + columns[pixel_image[hit], layer, y[hit], x[hit]]
            self.intersection.index_add_(0, cells, torch.ones_like(cells))

        active = torch.bincount(pair, minlength=len(image))  # pixels of M_u per pair
        whole = whole.to(self.device)
        whole_columns = whole_category.to(self.device)[None, :] * self.stride + whole  # (B, W)
        for slot in range(whole.shape[1]):
            present = whole[image, slot] > 0
            if present.any():
                cells = unit[present] * self.columns + whole_columns[image[present], slot]
                self.intersection.index_add_(0, cells, active[present])

        if self.variant == "dissect":
            self.activation.index_add_(0, unit, active)
        else:
            annotated = annotated.to(self.device, torch.int64)
            self.activation.index_add_(0, unit, active[:, None] * annotated[image])

    def counts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """I (U, columns), A broadcast to (U, columns), G (columns,)."""
        intersection = self.intersection.view(self.units, self.columns)
        if self.variant == "dissect":
            activation = self.activation[:, None].expand(self.units, self.columns)
        else:
            category = torch.arange(self.columns, device=self.device) // self.stride
            activation = self.activation[:, category]
        return intersection, activation, self.truth

    def iou(self) -> torch.Tensor:
        """IoU[u, c] = I / (A + G - I), 0 where the denominator is 0; float64."""
        intersection, activation, truth = self.counts()
        union = (activation + truth[None, :] - intersection).double()
        return torch.where(union > 0, intersection.double() / union.clamp(min=1), torch.zeros_like(union))
