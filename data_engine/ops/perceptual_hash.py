"""Perceptual hash (pHash): 64 bits from the low-frequency DCT of a 32 x 32 grey thumbnail.

Bit i is set when DCT coefficient i of the top-left 8 x 8 block (row-major) is above the block's median,
so re-encoding, resizing and small colour shifts keep most bits while different images differ in about
half of them. As a vector of +-1 values (`hash_vectors`) the cosine similarity of two hashes is
``1 - 2 * hamming / 64``, which is what the near-duplicate search compares.
"""

from __future__ import annotations

import cv2
import numpy as np

HASH_BITS = 64


def perceptual_hash(rgb: np.ndarray) -> str:
    """16 hex digits of the 64-bit pHash of an HxWx3 uint8 RGB image."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    thumbnail = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(thumbnail)[:8, :8].ravel()
    bits = low > np.median(low)
    return f"{int(''.join('1' if bit else '0' for bit in bits), 2):016x}"


def hash_vectors(hashes: list[str]) -> np.ndarray:
    """(n, 64) float32 array of +-1, one row per hex hash, bits most significant first."""
    values = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    bits = (values[:, None] >> np.arange(HASH_BITS - 1, -1, -1, dtype=np.uint64)) & np.uint64(1)
    return bits.astype(np.float32) * 2 - 1
