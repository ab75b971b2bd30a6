"""The concept labels of one probe image, as the reader returns them and the synthetic generator draws them.

    labels.pixel["part"]   # [layer, layer, ...]: (sh, sw) int32 arrays of global label numbers, 0 = unlabeled
    labels.whole["texture"]  # [47, 12]: whole-image label numbers (scene, texture)

A category the image does not annotate is absent from both dicts (Broden annotates images partially).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ImageLabels:
    pixel: dict[str, list[np.ndarray]] = field(default_factory=dict)
    whole: dict[str, list[int]] = field(default_factory=dict)

    @property
    def categories(self) -> set[str]:
        """The categories this image annotates."""
        return set(self.pixel) | set(self.whole)

    def same_as(self, other: ImageLabels) -> bool:
        """Exactly the same categories, layers (in order) and label numbers."""
        if self.whole != other.whole or self.pixel.keys() != other.pixel.keys():
            return False
        return all(
            len(mine) == len(theirs) and all(np.array_equal(a, b) for a, b in zip(mine, theirs))
            for mine, theirs in ((self.pixel[c], other.pixel[c]) for c in self.pixel)
        )
