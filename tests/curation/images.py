"""Image helpers for the curation tests: encodings and degradations with known parameters."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pyarrow as pa
from PIL import Image


def png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def grey(rgb: np.ndarray) -> np.ndarray:
    return np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)


def with_noise(rgb: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, rgb.shape)
    return np.clip(rgb + noise, 0, 255).astype(np.uint8)


def stage_input(**columns) -> pa.Table:
    """A table as a stage receives it: the given columns plus empty decision columns."""
    n = len(next(iter(columns.values())))
    decisions = {name: pa.nulls(n, pa.string()) for name in ("reject_reason", "reject_stage", "reject_detail")}
    return pa.table(columns | decisions)
