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
        # Each counter has one spare slot at the end, never read: what a batch does not count goes there (fixed-size
        # work on the device, where compacting to the counted pixels would make the host wait for their number).
        self.spare = units * self.columns
        self.intersection = torch.zeros(units * self.columns + 1, dtype=torch.int64, device=self.device)
        self.truth = torch.zeros(self.columns + 1, dtype=torch.int64, device=self.device)
        self._first_cell = torch.arange(units, device=self.device)[None, :] * self.columns  # (1, U), made once
        shape = (units, len(self.categories)) if self.per_category else (units,)
        self.activation = torch.zeros(shape, dtype=torch.int64, device=self.device)
        self.images = 0

    def column(self, category: str, label: int) -> int:
        return self.categories.index(category) * self.stride + label

    def labels(self, layers: torch.Tensor, layer_category: torch.Tensor, whole: torch.Tensor,
               whole_category: torch.Tensor, annotated: torch.Tensor) -> BatchLabels:
        """A batch's labels as tally columns: layers (B, L, S, S) label numbers (0 = none) with layer_category
        (L,) category indices; whole (B, W) with whole_category (W,); annotated (B, categories) bool. The category
        indices are best made on the device once (a copy from the host per batch would block)."""
        # non_blocking: a batch from the host is copied without the host waiting for the device's queue.
        layers, whole = layers.to(self.device, non_blocking=True), whole.to(self.device, non_blocking=True)
        layer_columns = layer_category.to(self.device)[None, :, None, None] * self.stride + layers
        whole_columns = whole_category.to(self.device)[None, :] * self.stride + whole
        return BatchLabels(
            layers=torch.where(layers > 0, layer_columns, -1).transpose(0, 1).reshape(layers.shape[1], -1),
            whole=torch.where(whole > 0, whole_columns, -1).T, size=layers.shape[-1],
            annotated=annotated.to(self.device, non_blocking=True).to(torch.int64))

    def add_truth(self, labels: BatchLabels) -> None:
        """G[c] of one batch (once per batch, whatever the pixels added)."""
        self.images += labels.whole.shape[1]
        present = torch.where(labels.layers >= 0, labels.layers, self.columns).flatten()  # truth's spare slot
        self.truth.index_add_(0, present, torch.ones_like(present))
        present = torch.where(labels.whole >= 0, labels.whole, self.columns).flatten()
        self.truth.index_add_(0, present, torch.full_like(present, labels.size**2))

    def add_pixels(self, labels: BatchLabels, image: torch.Tensor, unit: torch.Tensor, y: torch.Tensor,
                   x: torch.Tensor, active: torch.Tensor | None = None) -> None:
        """I and A from active pixels of the batch (call add_truth once per batch too): pixels (y[k, ...],
        x[k, ...]) of M_u for unit[k] in image[k] (batch positions), those where active[k, ...] (all of them when
        None); y, x and active broadcast together to (N, ...), image and unit are (N,). The engine hands each
        cell's slots, with `active` saying which of them exceed T_u, so that no count is known on the host."""
        image, unit = image.to(self.device), unit.to(self.device)
        y, x = y.to(self.device), x.to(self.device)
        trailing = (1,) * (max(y.dim(), x.dim(), 1 if active is None else active.dim()) - 1)
        pixel = (image.view(-1, *trailing) * labels.size + y) * labels.size + x  # (N, ...)
        active = torch.ones_like(pixel, dtype=torch.bool) if active is None else active.expand_as(pixel)
        cell = (unit * self.columns).view(-1, *trailing)
        for columns in labels.layers:
            column = columns[pixel]
            self._count(torch.where(active & (column >= 0), cell + column, self.spare).flatten())
        # A whole-image label covers every pixel of its image: it counts each map's active pixels at once.
        images = labels.whole.shape[1]
        per_map = torch.zeros(images * self.units, dtype=torch.int64, device=self.device)
        per_pixel = active.flatten(1).sum(dim=1) if active.dim() > 1 else active.to(torch.int64)  # (N,)
        per_map.index_add_(0, image * self.units + unit, per_pixel)
        per_map = per_map.view(images, self.units)
        for columns in labels.whole:
            cells = torch.where(columns[:, None] >= 0, self._first_cell + columns[:, None], self.spare)
            self.intersection.index_add_(0, cells.flatten(), per_map.flatten())
        if self.per_category:
            # (U, categories): active pixels in the images that annotate each category (no int64 matmul on CUDA)
            self.activation += (per_map[:, :, None] * labels.annotated[:, None, :]).sum(dim=0)
        else:
            self.activation += per_map.sum(dim=0)

    def _count(self, cells: torch.Tensor) -> None:
        self.intersection.index_add_(0, cells, torch.ones_like(cells))

    def counts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """I (U, columns), A broadcast to (U, columns), G (columns,)."""
        intersection = self.intersection[:self.spare].view(self.units, self.columns)
        if self.per_category:
            category = torch.arange(self.columns, device=self.device) // self.stride
            activation = self.activation[:, category]
        else:
            activation = self.activation[:, None].expand(self.units, self.columns)
        return intersection, activation, self.truth[:self.columns]

    def iou(self) -> torch.Tensor:
        """IoU[u, c] = I / (A + G - I), 0 where the denominator is 0; float64."""
        intersection, activation, truth = self.counts()
        union = (activation + truth[None, :] - intersection).double()
        return torch.where(union > 0, intersection.double() / union.clamp(min=1), torch.zeros_like(union))
