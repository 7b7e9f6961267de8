"""Image encoding, compositing and layout shared by the multi-view and spatial-edit builders."""

from __future__ import annotations

import hashlib
import io
import math
from typing import Any

import numpy as np
from PIL import Image

DEPTH_PNG_SCALE = 1000.0  # depth PNGs store millimetres in 16 bits (0 = no surface; up to 65.5 m)


def image_ref(image: Image.Image, *, format: str = "PNG") -> dict[str, Any]:
    """An IMAGE_REF struct value (schemas.py): encoded bytes, size, SHA-256 of the bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **({"compress_level": 6} if format == "PNG" else {"quality": 92}))
    data = buffer.getvalue()
    return {"bytes": data, "uri": None, "width": image.width, "height": image.height,
            "sha256": hashlib.sha256(data).hexdigest()}


def decode_ref(ref: dict[str, Any]) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(ref["bytes"])))


def over_background(rgba: np.ndarray, background: np.ndarray | tuple[int, int, int]) -> np.ndarray:
    """Composite a straight-alpha RGBA render over a colour or an RGB image of the same size."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    base = np.broadcast_to(np.asarray(background, dtype=np.float32), rgba[..., :3].shape)
    return np.round(rgba[..., :3] * alpha + base * (1.0 - alpha)).astype(np.uint8)


def depth_png(depth: np.ndarray) -> Image.Image:
    millimetres = np.clip(np.round(depth * DEPTH_PNG_SCALE), 0, 65535).astype(np.uint16)
    return Image.fromarray(millimetres)


def depth_from_png(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float32) / DEPTH_PNG_SCALE


def object_mask_png(index_mask: np.ndarray, pass_index: int) -> Image.Image:
    return Image.fromarray(np.where(index_mask == pass_index, 255, 0).astype(np.uint8), "L")


def grid_shape(n_images: int) -> tuple[int, int]:
    """(rows, cols) of the most square grid holding n images, wider than tall."""
    cols = math.ceil(math.sqrt(n_images))
    return math.ceil(n_images / cols), cols


def collage(images: list[np.ndarray], *, gutter: int, background: tuple[int, int, int]) -> Image.Image:
    """Images (all the same size) in reading order on a grid; blank slots keep the background."""
    rows, cols = grid_shape(len(images))
    height, width = images[0].shape[:2]
    canvas = Image.new("RGB", (cols * width + (cols + 1) * gutter, rows * height + (rows + 1) * gutter), background)
    for index, image in enumerate(images):
        row, col = divmod(index, cols)
        canvas.paste(Image.fromarray(image), (gutter + col * (width + gutter), gutter + row * (height + gutter)))
    return canvas
