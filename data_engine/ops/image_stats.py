"""Cheap statistical image-quality indicators (the "statistical" group of the report's IQA cascade).

All are computed on OpenCV's 8-bit BT.601 luma ``Y = round(0.299 R + 0.587 G + 0.114 B)`` (saturation on
HSV) and are per-pixel averages or normalised histograms, so none scales with width or height: tiling an
image 2 x 2 leaves brightness, contrast, entropy and saturation unchanged, and sharpness changes only
through the one-pixel border.

- ``brightness``: mean luma, 0..255.
- ``contrast``: standard deviation of luma, 0..127.5 (free with the mean; separates washed-out images).
- ``entropy``: Shannon entropy in bits of the 256-bin luma histogram, 0 (one grey level) .. 8 (uniform).
- ``saturation``: mean HSV saturation ``(max - min) / max`` of R, G, B (0 where max is 0), 0..1, as OpenCV
  computes it in 8 bits (quantised to 1/255).
- ``sharpness``: variance of ``cv2.Laplacian(luma, CV_64F)`` (3x3 kernel, reflected border). It depends
  on scale: the same scene downsampled looks sharper, so compare it between images at similar resolution
  (or resize to a working size first).
"""

from __future__ import annotations

import cv2
import numpy as np


def basic_image_stats(rgb: np.ndarray) -> dict[str, float]:
    """Brightness, contrast, entropy, saturation and sharpness of an HxWx3 uint8 RGB image."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
        raise ValueError(f"expected non-empty HxWx3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
    luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    luma_probabilities = _luma_histogram(luma)
    brightness = float(luma_probabilities @ _LUMA_LEVELS)
    # From the histogram rather than cv2.meanStdDev, whose one-pass formula leaves ~1e-6 on a constant image.
    contrast = float(np.sqrt(luma_probabilities @ (_LUMA_LEVELS - brightness) ** 2))
    _, laplacian_std = cv2.meanStdDev(cv2.Laplacian(luma, cv2.CV_64F))
    return {
        "brightness": brightness,
        "contrast": contrast,
        "entropy": _entropy_bits(luma_probabilities),
        "saturation": _mean_saturation(rgb),
        "sharpness": float(laplacian_std[0, 0]) ** 2,
    }


_LUMA_LEVELS = np.arange(256, dtype=np.float64)


def _luma_histogram(luma: np.ndarray) -> np.ndarray:
    """Probability of each of the 256 luma levels."""
    # calcHist counts in float32 (exact below 2**24 pixels); normalising by the counts' own sum keeps the
    # probabilities summing to 1 above that.
    counts = cv2.calcHist([luma], [0], None, [256], [0, 256]).ravel().astype(np.float64)
    return counts / counts.sum()


def _entropy_bits(probabilities: np.ndarray) -> float:
    present = probabilities[probabilities > 0]
    # max(0, ...) turns the -0.0 of a single grey level into 0.0.
    return max(0.0, float(-(present * np.log2(present)).sum()))


def _mean_saturation(rgb: np.ndarray) -> float:
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    return cv2.mean(hsv)[1] / 255.0
