"""Counting, pooled over the probe: I[u, c], A and G[c] (method.md section 1), vectorised on the device.

    tally = Tally(units=512, categories=[...], max_label=1196, variant="dissect", device=device)
    labels = tally.labels(layers, layer_category, whole, whole_category, annotated)   # once per batch
    tally.add_truth(labels)                                                             # G
    tally.add_pixels(labels, image, unit, y, x)        # I and A, from the active pixels of M_u
    tally.iou()                                                                         # (units, columns)

A concept is a (category, label number) pair, so the same label in two categories is two concepts; its column
is category_index * (max_label + 1) + label. Only active pixels (a few in a thousand) are visited: their
(unit, column) pairs are counted with index_add_ into int64 counters; whole-image labels (scene, texture) count
as all S x S pixels of their image, so they take each map's count of active pixels at once. A variant counts a
unit's activation A[u] over every pixel (dissect), or, with activation_per_category (netdissect), A[u, k] only
over images that annotate category k.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lce.dissect import variants
from lce.dissect.variants import Variant


@dataclass(frozen=True)
class BatchLabels:
    """One batch's labels as tally columns, -1 where a pixel or image has none."""

    layers: torch.Tensor  # (L, B * S * S) column of each label layer's pixel
    whole: torch.Tensor  # (W, B) column of each whole-image label slot
    size: int  # S
    annotated: torch.Tensor  # (B, categories) int64: 1 where the image annotates the category


class Tally:
    def __init__(self, units: int, categories: list[str], max_label: int, variant: str | Variant,
                 device: torch.device | str = "cpu"):
        self.units, self.categories, self.variant = units, list(categories), variants.variant(variant)
        self.per_category = self.variant.activation_per_category  # A[u, k] rather than A[u]
        self.stride = max_label + 1
        self.columns = len(self.categories) * self.stride
        self.device = torch.device(device)
        self.intersection = torch.zeros(units * self.columns, dtype=torch.int64, device=self.device)
        self.truth = torch.zeros(self.columns, dtype=torch.int64, device=self.device)
        shape = (units, len(self.categories)) if self.per_category else (units,)
        self.activation = torch.zeros(shape, dtype=torch.int64, device=self.device)
        self.images = 0

    def column(self, category: str, label: int) -> int:
        return self.categories.index(category) * self.stride + label

    def labels(self, layers: torch.Tensor, layer_category: torch.Tensor, whole: torch.Tensor,
               whole_category: torch.Tensor, annotated: torch.Tensor) -> BatchLabels:
        """A batch's labels as tally columns: layers (B, L, S, S) label numbers (0 = none) with layer_category
        (L,) category indices; whole (B, W) with whole_category (W,); annotated (B, categories) bool."""
        layers, whole = layers.to(self.device), whole.to(self.device)
        layer_columns = layer_category.to(self.device)[None, :, None, None] * self.stride + layers
        whole_columns = whole_category.to(self.device)[None, :] * self.stride + whole
        return BatchLabels(
            layers=torch.where(layers > 0, layer_columns, -1).transpose(0, 1).reshape(layers.shape[1], -1),
            whole=torch.where(whole > 0, whole_columns, -1).T, size=layers.shape[-1],
            annotated=annotated.to(self.device, torch.int64))

    def add_truth(self, labels: BatchLabels) -> None:
        """G[c] of one batch (once per batch, whatever the pixels added)."""
        self.images += labels.whole.shape[1]
        present = labels.layers[labels.layers >= 0]
        self.truth += torch.bincount(present, minlength=self.columns)
        present = labels.whole[labels.whole >= 0]
        self.truth.index_add_(0, present, torch.full_like(present, labels.size**2))

    def add_pixels(self, labels: BatchLabels, image: torch.Tensor, unit: torch.Tensor, y: torch.Tensor,
                   x: torch.Tensor) -> None:
        """I and A from active pixels of the batch (call add_truth once per batch too): pixel k is (y[k], x[k])
        of M_u for unit[k] in image[k] (batch positions)."""
        image, unit = image.to(self.device), unit.to(self.device)
        pixel = (image * labels.size + y.to(self.device)) * labels.size + x.to(self.device)
        cell = unit * self.columns
        for columns in labels.layers:
            column = columns[pixel]
            hit = column >= 0
            self._count((cell + column)[hit])
        # A whole-image label covers every pixel of its image: it counts each map's active pixels at once.
        images = labels.whole.shape[1]
        per_map = torch.bincount(image * self.units + unit, minlength=images * self.units).view(images, self.units)
        first_cell = torch.arange(self.units, device=self.device)[None, :] * self.columns
        for columns in labels.whole:
            hit = columns >= 0
            self.intersection.index_add_(0, (first_cell + columns[hit, None]).flatten(), per_map[hit].flatten())
        if self.per_category:
            # (U, categories): active pixels in the images that annotate each category (no int64 matmul on CUDA)
            self.activation += (per_map[:, :, None] * labels.annotated[:, None, :]).sum(dim=0)
        else:
            self.activation += per_map.sum(dim=0)

    def _count(self, cells: torch.Tensor) -> None:
        self.intersection.index_add_(0, cells, torch.ones_like(cells))

    def counts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """I (U, columns), A broadcast to (U, columns), G (columns,)."""
        intersection = self.intersection.view(self.units, self.columns)
        if self.per_category:
            category = torch.arange(self.columns, device=self.device) // self.stride
            activation = self.activation[:, category]
        else:
            activation = self.activation[:, None].expand(self.units, self.columns)
        return intersection, activation, self.truth

    def iou(self) -> torch.Tensor:
        """IoU[u, c] = I / (A + G - I), 0 where the denominator is 0; float64."""
        intersection, activation, truth = self.counts()
        union = (activation + truth[None, :] - intersection).double()
        return torch.where(union > 0, intersection.double() / union.clamp(min=1), torch.zeros_like(union))
