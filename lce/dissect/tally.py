"""Counting, pooled over the probe: I[u, c], A and G[c] (docs/method.md section 1), vectorised on the device.

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

import numpy as np
import torch

from lce import vocabulary
from lce.vocabulary import Variant


@dataclass(frozen=True)
class BatchLabels:
    """One batch's labels as tally columns, -1 where a pixel or image has none."""

    layers: torch.Tensor  # (L, B * S * S) column of each label layer's pixel
    whole: torch.Tensor  # (W, B) column of each whole-image label slot
    size: int  # S
    annotated: torch.Tensor  # (B, categories) int64: 1 where the image annotates the category
    block: torch.Tensor | None = None  # (B,) each image's block of the bootstrap (BlockCounts), None without one


class Tally:
    def __init__(self, units: int, categories: list[str], max_label: int, variant: str | Variant,
                 device: torch.device | str = "cpu"):
        self.units, self.categories, self.variant = units, list(categories), vocabulary.variant(variant)
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
        self.blocks: BlockCounts | None = None  # per block and per position too, for the bootstrap (count_blocks)

    def count_blocks(self, columns, block_of_image, seg_size: int) -> BlockCounts:
        """Count per block of images and per position as well from now on (see BlockCounts): `columns` the tally
        columns of the probe's concepts, block_of_image (images,) each dataset index's block."""
        self.blocks = BlockCounts(self, columns, block_of_image, seg_size)
        return self.blocks

    def column(self, category: str, label: int) -> int:
        return self.categories.index(category) * self.stride + label

    def labels(self, layers: torch.Tensor, layer_category: torch.Tensor, whole: torch.Tensor,
               whole_category: torch.Tensor, annotated: torch.Tensor, index: torch.Tensor | None = None) -> BatchLabels:
        """A batch's labels as tally columns: layers (B, L, S, S) label numbers (0 = none) with layer_category
        (L,) category indices; whole (B, W) with whole_category (W,); annotated (B, categories) bool; index (B,)
        the images' dataset indices (their blocks, when counting per block). The category indices are best made on
        the device once (a copy from the host per batch would block)."""
        # non_blocking: a batch from the host is copied without the host waiting for the device's queue.
        layers, whole = layers.to(self.device, non_blocking=True), whole.to(self.device, non_blocking=True)
        layer_columns = layer_category.to(self.device)[None, :, None, None] * self.stride + layers
        whole_columns = whole_category.to(self.device)[None, :] * self.stride + whole
        return BatchLabels(
            layers=torch.where(layers > 0, layer_columns, -1).transpose(0, 1).reshape(layers.shape[1], -1),
            whole=torch.where(whole > 0, whole_columns, -1).T, size=layers.shape[-1],
            annotated=annotated.to(self.device, non_blocking=True).to(torch.int64),
            block=None if self.blocks is None or index is None
            else self.blocks.block_of_image[index.to(self.device, non_blocking=True)])

    def add_truth(self, labels: BatchLabels) -> None:
        """G[c] of one batch (once per batch, whatever the pixels added)."""
        self.images += labels.whole.shape[1]
        present = torch.where(labels.layers >= 0, labels.layers, self.columns).flatten()  # truth's spare slot
        self.truth.index_add_(0, present, torch.ones_like(present))
        present = torch.where(labels.whole >= 0, labels.whole, self.columns).flatten()
        self.truth.index_add_(0, present, torch.full_like(present, labels.size**2))
        if self.blocks is not None:
            self.blocks.add_truth(labels)

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
        counts = self.blocks
        if counts is not None:  # the same pixels, per block of images (the concept's index among the probe's)
            block_cell = ((labels.block[image] * self.units + unit) * counts.concepts).view(-1, *trailing)
            counts.add_positions(labels, image, unit, y * labels.size + x, active, trailing)
        for columns in labels.layers:
            column = columns[pixel]
            self._count(torch.where(active & (column >= 0), cell + column, self.spare).flatten())
            if counts is not None:
                concept = counts.concept_of_column[column]  # column -1 (no label) reads the last slot: -1
                counts.add_intersection(torch.where(active & (concept >= 0), block_cell + concept, counts.spare))
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
        if counts is not None:
            counts.add_maps(labels, per_map)

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


class BlockCounts:
    """Pass 2's counts for the bootstrap and the chance IoU (lce.dissect.uncertainty), kept beside a Tally's
    pooled ones from the same pixels: per block of images I_b (blocks, units, concepts), A_b (blocks, units), or
    (blocks, units, categories) for activation_per_category, and G_b (blocks, concepts); per position p of the
    S x S grid A_p (units, S*S), or (categories, units, S*S) over the images annotating each category, and G_p
    (concepts, S*S), a whole-image label counting at every position; and N_k, the images annotating each
    category. Only the probe's concepts have columns (Broden: 1,197 of the tally's 7,188); counters are int32
    (a block's counts stay far below 2**31), each with a spare slot at the end like the Tally's. Summed over the
    blocks they are the pooled I, A and G of those columns."""

    def __init__(self, tally: Tally, columns, block_of_image, seg_size: int):
        device = tally.device
        self.columns = np.asarray(sorted(set(int(c) for c in columns)), dtype=np.int64)
        self.concepts, self.units, self.per_category = len(self.columns), tally.units, tally.per_category
        self.categories = len(tally.categories)
        self.seg_size, self.positions = seg_size, seg_size**2
        block_of_image = np.asarray(block_of_image, dtype=np.int64)
        self.blocks = int(block_of_image.max()) + 1 if len(block_of_image) else 1
        concept_of_column = np.full(tally.columns + 1, -1, dtype=np.int64)  # the last slot: column -1, no label
        concept_of_column[self.columns] = np.arange(self.concepts)
        self.concept_category = self.columns // tally.stride
        # Made on the host and copied once per run (torch.from_numpy: no per-batch copy).
        self.concept_of_column = torch.from_numpy(concept_of_column).to(device)
        self.block_of_image = torch.from_numpy(block_of_image).to(device)
        counter = dict(dtype=torch.int32, device=device)
        self.spare = self.blocks * self.units * self.concepts
        self.intersection = torch.zeros(self.spare + 1, **counter)
        self.activation = torch.zeros((self.blocks, self.units, self.categories) if self.per_category
                                      else (self.blocks, self.units), **counter)
        self.truth = torch.zeros(self.blocks * self.concepts + 1, **counter)
        self.position_spare = (self.categories if self.per_category else 1) * self.units * self.positions
        self.active_by_position = torch.zeros(self.position_spare + 1, **counter)
        self.truth_by_position = torch.zeros(self.concepts * self.positions + 1, **counter)
        self.whole_images = torch.zeros(self.concepts + 1, **counter)  # images with the concept as a whole label
        self.annotating = torch.zeros(self.categories, dtype=torch.int64, device=device)
        self.images = 0

    def add_truth(self, labels: BatchLabels) -> None:
        """G_b, G_p, N_k of one batch (Tally.add_truth calls it)."""
        images, positions = labels.whole.shape[1], self.positions
        self.images += images
        block = labels.block
        concept = self.concept_of_column[labels.layers]  # (L, B * S * S)
        pixel = torch.arange(images * positions, device=block.device)
        present = concept >= 0
        cells = torch.where(present, block[pixel // positions] * self.concepts + concept, len(self.truth) - 1)
        self.truth.index_add_(0, cells.flatten(), torch.ones_like(cells.flatten(), dtype=torch.int32))
        cells = torch.where(present, concept * positions + pixel % positions, len(self.truth_by_position) - 1)
        self.truth_by_position.index_add_(0, cells.flatten(), torch.ones_like(cells.flatten(), dtype=torch.int32))
        whole = self.concept_of_column[labels.whole]  # (W, B)
        cells = torch.where(whole >= 0, block[None, :] * self.concepts + whole, len(self.truth) - 1).flatten()
        self.truth.index_add_(0, cells, torch.full_like(cells, positions, dtype=torch.int32))
        cells = torch.where(whole >= 0, whole, self.concepts).flatten()
        self.whole_images.index_add_(0, cells, torch.ones_like(cells, dtype=torch.int32))
        self.annotating += labels.annotated.sum(dim=0)

    def add_intersection(self, cells: torch.Tensor) -> None:
        cells = cells.flatten()
        self.intersection.index_add_(0, cells, torch.ones_like(cells, dtype=torch.int32))

    def add_positions(self, labels: BatchLabels, image: torch.Tensor, unit: torch.Tensor, position: torch.Tensor,
                      active: torch.Tensor, trailing: tuple) -> None:
        """A_p from active pixels (Tally.add_pixels' arguments: position = y * S + x broadcast with active)."""
        unit = unit.view(-1, *trailing)
        if not self.per_category:
            cells = torch.where(active, unit * self.positions + position, self.position_spare)
            self.add_position_cells(cells)
            return
        annotated = labels.annotated[image].bool()  # (N, categories)
        for category in range(self.categories):  # per category, over the images annotating it
            cells = torch.where(active & annotated[:, category].view(-1, *trailing),
                                (category * self.units + unit) * self.positions + position, self.position_spare)
            self.add_position_cells(cells)

    def add_position_cells(self, cells: torch.Tensor) -> None:
        cells = cells.flatten()
        self.active_by_position.index_add_(0, cells, torch.ones_like(cells, dtype=torch.int32))

    def add_maps(self, labels: BatchLabels, per_map: torch.Tensor) -> None:
        """I_b of whole-image labels and A_b, from each map's count of active pixels, per_map (B, units)."""
        block = labels.block
        first = (block[:, None] * self.units + torch.arange(self.units, device=block.device)[None, :]) * self.concepts
        counts = per_map.to(torch.int32)
        for columns in labels.whole:
            concept = self.concept_of_column[columns]  # (B,)
            cells = torch.where(concept[:, None] >= 0, first + concept[:, None], self.spare)
            self.intersection.index_add_(0, cells.flatten(), counts.flatten())
        if self.per_category:
            self.activation.index_add_(0, block, counts[:, :, None] * labels.annotated[:, None, :].to(torch.int32))
        else:
            self.activation.index_add_(0, block, counts)

    def block_tallies(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """I_b (blocks, units, concepts), A_b (blocks, units) or (blocks, units, categories), G_b (blocks,
        concepts): views of the int32 counters."""
        return (self.intersection[:self.spare].view(self.blocks, self.units, self.concepts), self.activation,
                self.truth[:-1].view(self.blocks, self.concepts))

    def positions_of(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A_p (units, S*S) or (categories, units, S*S), G_p (concepts, S*S) with whole-image labels at every
        position, and N_k: the images (a 0-d tensor), or per concept those annotating its category."""
        active = self.active_by_position[:-1]
        active = active.view(self.categories, self.units, self.positions) if self.per_category \
            else active.view(self.units, self.positions)
        truth = self.truth_by_position[:-1].view(self.concepts, self.positions) + self.whole_images[:-1, None]
        if self.per_category:
            annotating = self.annotating[torch.from_numpy(self.concept_category).to(self.annotating.device)]
        else:
            annotating = torch.tensor(float(self.images))
        return active, truth, annotating
