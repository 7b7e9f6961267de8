"""Solid borders and letterboxing: how far a uniform band reaches in from each side of an image.

A line (row or column) belongs to a side's border when nearly all of its pixels (all but
`outlier_fraction`) are within `tolerance` (max over R, G, B) of that side's border colour, the median
colour of its outermost line; the band is the run of such lines from the edge inward. The outermost line
must itself qualify, so a photo whose edge is busy has width 0 on that side. A border colour is any
colour (black letterbox bars, white frames, coloured mats).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BorderFractions:
    """Band width of each side as a fraction of the image height (top, bottom) or width (left, right)."""

    top: float
    bottom: float
    left: float
    right: float

    def largest(self) -> float:
        return max(self.top, self.bottom, self.left, self.right)


def border_fractions(rgb: np.ndarray, *, tolerance: int = 12, outlier_fraction: float = 0.02) -> BorderFractions:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
        raise ValueError(f"expected non-empty HxWx3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
    height, width = rgb.shape[:2]

    def band(lines: np.ndarray) -> int:
        """Lines ordered from the edge inward, shape (n_lines, line_length, 3)."""
        colour = np.median(lines[0], axis=0).astype(np.int16)
        off = (np.abs(lines.astype(np.int16) - colour).max(axis=2) > tolerance).mean(axis=1)
        uniform = off <= outlier_fraction
        return len(uniform) if uniform.all() else int(np.argmin(uniform))

    return BorderFractions(top=band(rgb) / height, bottom=band(rgb[::-1]) / height,
                           left=band(rgb.transpose(1, 0, 2)) / width,
                           right=band(rgb.transpose(1, 0, 2)[::-1]) / width)
