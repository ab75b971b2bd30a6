"""Upsampling a layer's activations to the segmentation size, as each published variant does (docs/method.md section 1).

    up = upsample(activations, size=56, variant="dissect")     # (B, U, h, w) -> (B, U, 56, 56)

    cells = Upsampler.of(activations, size=56, variant="dissect").cells(activations)
    bounds = cells.bounds()                                    # (B, U, h+1, w+1): no value of a cell exceeds it
    values = cells.values(image, unit, cell_y, cell_x)         # only the cells asked for

Both variants are bilinear, so every upsampled value is a convex combination of the four feature pixels around
it (zero padding beyond the edge). The map, padded with one zero pixel on each side, splits into (h+1) x (w+1)
cells between neighbouring feature pixels; a cell's values never exceed its largest corner. The engine uses that
to compute only the cells that can reach a threshold: most of a unit's 56 x 56 values are far below it. A cell's
values are computed with exactly the operations of the whole map (x first, then y, from the same weights), so the
two give bit-identical values.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lce import vocabulary
from lce.vocabulary import ZERO_PADDED, Variant

# Bilinear weights are rounded to the dtype: a computed value may exceed its cell's largest corner by a few ulps
# of the map's largest magnitude. Cell bounds add this share of it, which keeps them bounds.
_ROUNDING_MARGIN = 2.0**-20


def upsample(activations: torch.Tensor, size: int, variant: str | Variant) -> torch.Tensor:
    """The variant's grid (a Variant or its name; lce.vocabulary). `netdissect`, CLAMPED: bilinear with
    half-pixel centres and clamped edges (F.interpolate, align_corners=False, as PIL's resize in
    NetDissect-Lite). `dissect`, ZERO_PADDED: davidbau/dissect's grid: feature pixel i sits at target
    coordinate i*s + (s-1)/2 with s = size/h, sampled bilinearly with zero padding (grid_sample,
    align_corners=True), so values fade towards zero beyond the outer feature centres. A side of one feature
    pixel is constant in both variants."""
    if activations.shape[-2:] == (size, size):
        return activations
    return Upsampler.of(activations, size, variant).upsample(activations)


@dataclass(frozen=True)
class _Axis:
    """Where each of the `size` target samples of one axis falls in the zero-padded feature axis: between padded
    pixels `left` and `left + 1`, with weights `w_left` and `w_right`; and the samples of every cell."""

    left: torch.Tensor  # (size,) int64, 0..h
    w_left: torch.Tensor  # (size,)
    w_right: torch.Tensor  # (size,)
    samples: torch.Tensor  # (h+1, m) int64: target samples in cell c (between padded pixels c and c+1), padded
    valid: torch.Tensor  # (h+1, m) bool: which of `samples` are real
    cell_w_left: torch.Tensor  # (h+1, m): w_left[samples]
    cell_w_right: torch.Tensor  # (h+1, m): w_right[samples]
    widest: int  # m: the most target samples in one cell (known on the host)


def _axis(source: int, size: int, grid: str, dtype: torch.dtype, device: torch.device) -> _Axis:
    target = torch.arange(size, dtype=torch.float64)
    scale = size / source
    if source == 1:
        position = torch.zeros(size, dtype=torch.float64)
    elif grid == ZERO_PADDED:
        position = (target - (0.5 * scale - 0.5)) / scale  # may fall outside [0, h-1]: zero padding
    else:  # CLAMPED
        position = ((target + 0.5) / scale - 0.5).clamp(0, source - 1)  # F.interpolate's clamped edges
    padded = position + 1  # padded pixel p is feature pixel p - 1
    left = padded.floor().to(torch.int64).clamp(0, source)
    fraction = padded - left
    cells = torch.arange(source + 1)
    members = [torch.nonzero(left == cell).flatten() for cell in cells]
    width = max(1, max(len(m) for m in members))
    samples = torch.zeros(source + 1, width, dtype=torch.int64)
    valid = torch.zeros(source + 1, width, dtype=torch.bool)
    for cell, member in zip(cells, members):
        samples[cell, :len(member)] = member
        valid[cell, :len(member)] = True
    w_left, w_right = (1 - fraction).to(dtype), fraction.to(dtype)
    return _Axis(left.to(device), w_left.to(device), w_right.to(device), samples.to(device), valid.to(device),
                 w_left[samples].to(device), w_right[samples].to(device), width)


class Upsampler:
    """One grid's upsampling of (h, w) maps to (size, size), whole or by cells (see the module docstring); `of`
    gives the one of a variant."""

    def __init__(self, height: int, width: int, size: int, grid: str, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu"):
        if grid not in vocabulary.GRIDS:
            raise ValueError(f"grid must be one of {vocabulary.GRIDS}, not {grid!r}")
        self.height, self.width, self.size, self.grid = height, width, size, grid
        device = torch.device(device)
        self.y = _axis(height, size, grid, dtype, device)
        self.x = _axis(width, size, grid, dtype, device)
        self.samples_in_cells = self.y.valid.sum(1)[:, None] * self.x.valid.sum(1)[None, :]  # (h+1, w+1)
        # A cell with no target sample (the padding's side of a clamped edge) can never be active.
        self.empty = self.samples_in_cells == 0
        # (h+1, w+1, my, mx): the slots of each cell beyond its samples.
        self.invalid = ~(self.y.valid[:, None, :, None] & self.x.valid[None, :, None, :])
        # Target samples in the largest cell: the widest of each axis (every axis has a cell with samples), known
        # on the host, so that the engine reads no device tensor for it.
        self.samples_per_cell = self.y.widest * self.x.widest

    @staticmethod
    def of(activations: torch.Tensor, size: int, variant: str | Variant) -> Upsampler:
        height, width = activations.shape[-2:]
        grid = vocabulary.variant(variant).upsampling
        return _cached(height, width, size, grid, activations.dtype, str(activations.device))

    def upsample(self, activations: torch.Tensor) -> torch.Tensor:
        """(B, U, h, w) -> (B, U, size, size)."""
        padded = F.pad(activations, (1, 1, 1, 1))
        rows = padded[..., self.x.left] * self.x.w_left + padded[..., self.x.left + 1] * self.x.w_right
        return (rows[..., self.y.left, :] * self.y.w_left[:, None]
                + rows[..., self.y.left + 1, :] * self.y.w_right[:, None])

    def cells(self, activations: torch.Tensor) -> Cells:
        """(B, U, h, w) maps, seen cell by cell."""
        return Cells(self, activations)


class Cells:
    """A batch of maps split into the (h+1) x (w+1) cells of their upsampling (see the module docstring)."""

    def __init__(self, sampler: Upsampler, activations: torch.Tensor):
        self.sampler = sampler
        self.padded = F.pad(activations, (1, 1, 1, 1))
        self._margin = _ROUNDING_MARGIN * activations.abs().amax(dim=(2, 3))[:, :, None, None]

    def bounds(self) -> torch.Tensor:
        """(B, U, h+1, w+1): no upsampled value in a cell exceeds its bound (-inf for cells with no sample)."""
        padded = self.padded
        top_left, top_right = padded[..., :-1, :-1], padded[..., :-1, 1:]
        bottom_left, bottom_right = padded[..., 1:, :-1], padded[..., 1:, 1:]
        largest = torch.maximum(torch.maximum(top_left, top_right), torch.maximum(bottom_left, bottom_right))
        return (largest + self._margin).masked_fill(self.sampler.empty, -math.inf)

    def values(self, image: torch.Tensor, unit: torch.Tensor, cell_y: torch.Tensor,
               cell_x: torch.Tensor) -> torch.Tensor:
        """(N, my, mx) upsampled values of N cells (cell k of map (image[k], unit[k])), -inf where a cell has
        fewer samples than the widest one; `positions` maps them back to target pixels."""
        padded, x, y = self.padded, self.sampler.x, self.sampler.y
        height, width = padded.shape[-2:]
        corner = ((image * padded.shape[1] + unit) * height + cell_y) * width + cell_x  # top left, flat
        flat = padded.reshape(-1)  # a view of contiguous maps; row-major indices stay right for any other
        x_left, x_right = x.cell_w_left[cell_x], x.cell_w_right[cell_x]  # (N, mx)
        top = flat[corner][:, None] * x_left  # the rows of the whole map's upsample(), in place where it can
        top += flat[corner + 1][:, None] * x_right
        bottom = flat[corner + width][:, None] * x_left
        bottom += flat[corner + width + 1][:, None] * x_right
        values = top[:, None, :] * y.cell_w_left[cell_y][:, :, None]
        values += bottom[:, None, :] * y.cell_w_right[cell_y][:, :, None]
        return values.masked_fill_(self.sampler.invalid[cell_y, cell_x], -math.inf)

    def positions(self, cell_y: torch.Tensor, cell_x: torch.Tensor, slot_y: torch.Tensor,
                  slot_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Target pixels (y, x) of slots (slot_y, slot_x) of cells (cell_y, cell_x), as `values` lays them."""
        return self.sampler.y.samples[cell_y, slot_y], self.sampler.x.samples[cell_x, slot_x]


@functools.lru_cache(maxsize=16)
def _cached(height: int, width: int, size: int, grid: str, dtype: torch.dtype, device: str) -> Upsampler:
    return Upsampler(height, width, size, grid, dtype, device)
