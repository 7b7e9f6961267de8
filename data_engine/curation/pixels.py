"""Pixels for analysis: the stored (already normalised) image bytes decoded at a bounded working size.

Quality indicators that depend on scale (Laplacian variance, NIQE, border widths in pixels) are measured at
one working size so images of different resolutions compare; JPEGs are decoded with libjpeg's DCT scaling
(`Image.draft`) when that lands at or above the working size, which is several times cheaper than a full
decode followed by a resize.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image


def working_rgb(data: bytes, max_side: int) -> np.ndarray:
    """HxWx3 uint8 RGB whose long side is at most `max_side` (0: native size). The bytes are those a
    decode stage stored, so they open as RGB (or as grey/RGBA only through an upstream bug: converted)."""
    with Image.open(io.BytesIO(data)) as image:
        if max_side and image.format == "JPEG":
            scale = max_side / max(image.size)
            image.draft("RGB", (int(image.width * scale), int(image.height * scale)))
        rgb = np.asarray(image.convert("RGB"))
    return resize_long_side(rgb, max_side)


def resize_long_side(rgb: np.ndarray, max_side: int) -> np.ndarray:
    height, width = rgb.shape[:2]
    if not max_side or max(height, width) <= max_side:
        return rgb
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
