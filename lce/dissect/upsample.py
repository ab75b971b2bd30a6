"""Upsampling a layer's activations to the segmentation size, as each published variant does (method.md section 1).

    up = upsample(activations, size=56, variant="dissect")     # (B, U, h, w) -> (B, U, 56, 56)
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def upsample(activations: torch.Tensor, size: int, variant: str) -> torch.Tensor:
    """`netdissect`: bilinear with half-pixel centres and clamped edges (F.interpolate, align_corners=False, as
    PIL's resize in NetDissect-Lite). `dissect`: davidbau/dissect's grid: feature pixel i sits at target
    coordinate i*s + (s-1)/2 with s = size/h, sampled bilinearly with zero padding, so values fade towards zero
    beyond the outer feature centres."""
    height, width = activations.shape[-2:]
    if (height, width) == (size, size):
        return activations
    if variant == "netdissect" or min(height, width) < 2:
        return F.interpolate(activations, size=(size, size), mode="bilinear", align_corners=False)
    grid = _dissect_grid(height, width, size, activations.dtype, str(activations.device))
    batch, units = activations.shape[:2]
    flat = activations.reshape(batch, units, height, width)
    return F.grid_sample(flat, grid.expand(batch, size, size, 2), mode="bilinear", padding_mode="zeros",
                         align_corners=True)


@functools.lru_cache(maxsize=16)
def _dissect_grid(height: int, width: int, size: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    def axis(source: int) -> torch.Tensor:
        scale = size / source
        offset = 0.5 * scale - 0.5
        return (torch.arange(size, dtype=dtype, device=device) - offset) * (2 / (scale * (source - 1))) - 1

    ys, xs = axis(height), axis(width)
    # grid_sample takes (x, y) pairs.
    return torch.stack((xs[None, :].expand(size, size), ys[:, None].expand(size, size)), dim=2)[None]
