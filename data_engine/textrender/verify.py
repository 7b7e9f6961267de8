"""Checks on a rendered page: blank blocks, and the OCR round trip's character error rate per block.

- Blank block: under `min_ink_fraction` of the block's text box differs from the background by more than
  `INK_THRESHOLD` in some channel (the font drew nothing: missing glyphs, or text in the background colour).
- OCR crop: the block's text box plus a margin, on the background colour, inverted when the background is
  dark (both engines read dark text on light best). Vertical text is re-laid as one line: its characters'
  boxes, cut out and placed left to right.
- Character error rate: Levenshtein distance over the reference length, both NFKC-normalised with all
  whitespace removed (OCR engines disagree on spaces, which are not what the check is about).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image, ImageOps

from data_engine.text_distance import edit_distance

INK_THRESHOLD = 48  # per-channel difference from the background that counts as ink


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def decode_rgb(png: bytes) -> np.ndarray:
    """RGB pixels of an encoded image."""
    bgr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("not a decodable image")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _pixel_box(box: Sequence[float], shape: tuple[int, ...], pad: float = 0) -> tuple[int, int, int, int]:
    left, top, right, bottom = box
    return (max(0, int(np.floor(left - pad))), max(0, int(np.floor(top - pad))),
            min(shape[1], int(np.ceil(right + pad))), min(shape[0], int(np.ceil(bottom + pad))))


def ink_fraction(pixels: np.ndarray, box: Sequence[float], background: str) -> float:
    left, top, right, bottom = _pixel_box(box, pixels.shape)
    region = pixels[top:bottom, left:right]
    if region.size == 0:
        return 0.0
    difference = cv2.absdiff(region, np.full_like(region, hex_rgb(background))).max(axis=2)
    return float((difference > INK_THRESHOLD).mean())


def ocr_crop(pixels: np.ndarray, block: dict, background: str, size_px: int) -> Image.Image:
    """The block's text as one line, padded with the background, dark text on light."""
    pad = max(6.0, 0.3 * size_px)
    if block.get("chars"):
        pieces = [Image.fromarray(pixels[t:b, l:r]) for l, t, r, b in
                  (_pixel_box(char, pixels.shape, 1) for char in block["chars"])]
        height = max(p.height for p in pieces)
        line = Image.new("RGB", (sum(p.width for p in pieces), height), hex_rgb(background))
        x = 0
        for piece in pieces:
            line.paste(piece, (x, (height - piece.height) // 2))
            x += piece.width
    else:
        left, top, right, bottom = _pixel_box(block["box"], pixels.shape, 2)
        line = Image.fromarray(pixels[top:bottom, left:right])
    line = ImageOps.expand(line, border=int(pad), fill=hex_rgb(background))
    dark_background = sum(hex_rgb(background)) < 3 * 128
    return ImageOps.invert(line) if dark_background else line


def normalise_for_cer(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


def character_error_rate(reference: str, hypothesis: str) -> float:
    reference, hypothesis = normalise_for_cer(reference), normalise_for_cer(hypothesis)
    if not reference:
        return 0.0 if not hypothesis else 1.0
    return edit_distance(reference, hypothesis) / len(reference)


def ocr_text(lines: Sequence[dict]) -> str:
    """The lines of one crop in reading order: rows by vertical centre (a box whose centre lies within half
    a row's height of the row's belongs to it), boxes in a row from left to right."""
    def extent(line: dict) -> tuple[float, float, float]:
        box = line["box"]
        return (min(box[1::2]) + max(box[1::2])) / 2, max(box[1::2]) - min(box[1::2]), min(box[0::2])

    rows: list[list[tuple[float, float, float, str]]] = []
    for centre, height, left, text in sorted((*extent(line), line["text"]) for line in lines):
        if rows and abs(centre - rows[-1][0][0]) <= max(height, rows[-1][0][1]) / 2:
            rows[-1].append((centre, height, left, text))
        else:
            rows.append([(centre, height, left, text)])
    return " ".join(text for row in rows for *_, text in sorted(row, key=lambda item: item[2]))
