"""Rendering in Debian's Chromium: DOM boxes against the ink in the pixels, glyph coverage (re-font or
reject), blank and overflowing blocks, captions, the OCR round trip in English and Chinese, edit pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_engine.captioning.ocr_check import quoted_spans
from data_engine.captioning.ocr_engines import RapidOcrEngine
from data_engine.textrender.blueprint import Blueprint
from data_engine.textrender.captions import rendered_text_captions
from data_engine.textrender.chromium import CHROMIUM_PATH, ChromiumRenderer
from data_engine.textrender.edit import RenderTextEditConfig, RenderTextEditStage, pixels_changed_outside
from data_engine.textrender.fonts import FontCatalog
from data_engine.textrender.procedural import ProceduralLayoutConfig, sample_blueprint
from data_engine.textrender.stages import (REJECT_BLANK_BLOCK, REJECT_TEXT_OVERFLOW, blank_problem, block_ink,
                                           overflow_problem, refonted)
from data_engine.textrender.verify import (INK_THRESHOLD, character_error_rate, decode_rgb, hex_rgb, ocr_crop,
                                           ocr_text)

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM_PATH).exists(),
                                reason=f"{CHROMIUM_PATH} missing: make system-deps installs Debian chromium")


@pytest.fixture(scope="module")
def renderer():
    launched = ChromiumRenderer()
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def catalog():
    return FontCatalog()


def blueprint(*blocks: dict, background: str = "#ffffff", rows: int = 2, cols: int = 1) -> Blueprint:
    return Blueprint.model_validate({"canvas": {"width": 480, "height": 320, "background": background},
                                     "grid": {"rows": rows, "cols": cols}, "blocks": list(blocks)})


def block(text: str, row: int = 0, **fields) -> dict:
    return {"text": text, "language": "en", "font_family": "Liberation Sans", "size_px": 40,
            "cell": {"row": row, "col": 0}} | fields


def ink_box(pixels: np.ndarray, background: str, area: list[float]) -> tuple[int, int, int, int]:
    """Bounding box of the pixels that differ from the background inside `area` (left, top, right, bottom)."""
    left, top, right, bottom = (int(v) for v in area)
    region = np.abs(pixels[top:bottom, left:right].astype(int) - hex_rgb(background)).max(axis=2) > INK_THRESHOLD
    ys, xs = np.nonzero(region)
    return left + xs.min(), top + ys.min(), left + xs.max() + 1, top + ys.max() + 1


def test_dom_boxes_enclose_the_ink_of_each_block(renderer):
    page_blueprint = blueprint(block("Grand Opening"), block("开业大吉", row=1, language="zh",
                                                             font_family="Noto Sans CJK SC", align="right"))
    page = renderer.render(page_blueprint)
    pixels = decode_rgb(page.png)
    assert pixels.shape == (320, 480, 3)
    for measured in page.blocks:
        box = measured["box"]
        left, top, right, bottom = ink_box(pixels, "#ffffff", measured["cell"])
        # Ink lies inside the text box, and fills it horizontally (side bearings only) and most of it vertically.
        assert box[0] - 1 <= left and right <= box[2] + 1 and box[1] - 1 <= top and bottom <= box[3] + 1
        assert (right - left) >= 0.85 * (box[2] - box[0]) and (bottom - top) >= 0.5 * (box[3] - box[1])
    assert page.blocks[1]["box"][2] > 0.9 * 480  # right-aligned


def test_missing_glyphs_refont_or_reject(catalog):
    chinese_in_latin_font = blueprint(block("你好 world"))
    fixed, problem = refonted(chinese_in_latin_font, catalog, refont=True)
    assert problem is None and fixed.blocks[0].font_family == "Noto Sans CJK SC"
    assert catalog.missing_glyphs("你好", "Liberation Sans") == ["你", "好"]
    kept, problem = refonted(chinese_in_latin_font, catalog, refont=False)
    assert kept is None and "你" in problem
    private_use = blueprint(block("A\ue000B"))
    rejected, problem = refonted(private_use, catalog, refont=True)
    assert rejected is None and "\\ue000" in problem


def _ink(renderer, page_blueprint: Blueprint) -> list[float]:
    page = renderer.render(page_blueprint)
    return block_ink(decode_rgb(page.png), [m["box"] for m in page.blocks], page_blueprint.canvas.background)


def test_blank_and_overflowing_blocks_are_rejected(renderer):
    invisible = blueprint(block("Hidden", color="#fefefe"), block("Shown", row=1))  # first in the background colour
    ink = _ink(renderer, invisible)
    assert ink[0] == 0 and ink[1] > 0.05
    assert blank_problem(ink, 0.01)[0] == REJECT_BLANK_BLOCK
    too_big = blueprint(block("Overflowing headline text", size_px=200))
    assert overflow_problem(renderer.render(too_big))[0] == REJECT_TEXT_OVERFLOW
    fine = blueprint(block("Fits"))
    assert overflow_problem(renderer.render(fine)) is None and blank_problem(_ink(renderer, fine), 0.01) is None


def test_captions_quote_every_rendered_string_verbatim(renderer):
    page_blueprint = sample_blueprint("procedural/0/000003", ProceduralLayoutConfig())
    page = renderer.render(page_blueprint)
    captions = rendered_text_captions(page_blueprint, [m["box"] for m in page.blocks])
    texts = sorted(b.text for b in page_blueprint.blocks)
    for key in ("short/en", "short/zh", "long/en", "long/zh"):
        assert sorted(quoted_spans(captions[key])) == texts, key


@pytest.mark.timeout(1200)  # ~50 OCR crops: about a minute on 2 idle cores, ten on an oversubscribed one
def test_ocr_round_trip_in_english_and_chinese(renderer):
    """CER <= 0.05 on at least 90% of the blocks of 32 px and larger, per language."""
    engine = RapidOcrEngine()
    config = ProceduralLayoutConfig()
    rates: dict[str, list[float]] = {"en": [], "zh": []}
    index = 0
    while min(len(v) for v in rates.values()) < 20:
        page_blueprint = sample_blueprint(f"procedural/7/{index:06d}", config)
        index += 1
        page = renderer.render(page_blueprint)
        pixels = decode_rgb(page.png)
        blocks = [(b, m) for b, m in zip(page_blueprint.blocks, page.blocks) if b.size_px >= 32]
        crops = [ocr_crop(pixels, m, page_blueprint.canvas.background, b.size_px) for b, m in blocks]
        for (b, _), lines in zip(blocks, engine.read_lines(crops)):
            rates[b.language].append(character_error_rate(b.text, ocr_text(lines)))
    for language, values in rates.items():
        passing = sum(rate <= 0.05 for rate in values) / len(values)
        assert passing >= 0.9, (language, passing, values)


def test_text_edit_pairs_change_only_the_edited_block(renderer, catalog):
    stage = RenderTextEditStage(RenderTextEditConfig())
    stage.renderer, stage.catalog = renderer, catalog
    for index in range(3):
        row = stage.edit_row(f"procedural/0/{index:06d}")
        assert row.get("_reject") is None, row.get("_reject_detail")
        metadata = json.loads(row["metadata"])
        assert row["instruction"] == f'Replace "{metadata["old_text"]}" with "{metadata["new_text"]}"'
        source, target = decode_rgb(row["source_image"]["bytes"]), decode_rgb(row["target_image"]["bytes"])
        left, top, right, bottom = metadata["changed_region"]
        outside = np.ones(source.shape[:2], bool)
        outside[top:bottom, left:right] = False
        assert np.array_equal(source[outside], target[outside])
        assert not np.array_equal(source[~outside], target[~outside])
        # The check itself: a region that misses the edited block finds the changed pixels.
        assert pixels_changed_outside(source, target, [0, 0, 1, 1]) > 0
