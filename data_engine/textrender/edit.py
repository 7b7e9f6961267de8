"""Text-edit pairs: a blueprint rendered twice, one block's text replaced, as an edit triplet.

Per row: the procedural blueprint of its upstream id, one block chosen, a replacement text of the same
language drawn until it fits the block's cell at the same size, both versions rendered by the same Chromium.
The instruction is `Replace "A" with "B"`; the metadata records the block, both texts and the changed
region (the union of the two text boxes). Blocks sit in their own absolutely positioned cells, so pixels
outside that region plus `EDIT_MARGIN_PX` must be identical; a pair where they are not is `edit_leak`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from data_engine.stage import REJECT_COLUMN, REJECT_DETAIL_COLUMN, Resources, Stage, StageConfig, register_stage
from data_engine.textrender.blueprint import Blueprint
from data_engine.textrender.charfreq import BalancedCharacterSampler
from data_engine.textrender.chromium import CHROMIUM_PATH, RenderedPage
from data_engine.textrender.procedural import (ProceduralLayoutConfig, english_words, procedural_rng,
                                               sample_blueprint, text_width_em)
from data_engine.textrender.stages import (REJECT_MISSING_GLYPHS, ChromiumStage, blank_problem, block_ink,
                                          overflow_problem, refonted)
from data_engine.textrender.verify import decode_rgb

EDIT_MARGIN_PX = 2
REJECT_EDIT_LEAK = "edit_leak"
REJECT_NO_REPLACEMENT = "edit_no_replacement"


def edit_instruction(old: str, new: str) -> str:
    return f'Replace "{old}" with "{new}"'


def changed_region(first: Sequence[float], second: Sequence[float], margin: int, size: tuple[int, int]) -> list[int]:
    """The union of two boxes grown by `margin` px, in whole pixels clipped to the canvas (width, height)."""
    left = max(0, int(np.floor(min(first[0], second[0]))) - margin)
    top = max(0, int(np.floor(min(first[1], second[1]))) - margin)
    right = min(size[0], int(np.ceil(max(first[2], second[2]))) + margin)
    bottom = min(size[1], int(np.ceil(max(first[3], second[3]))) + margin)
    return [left, top, right, bottom]


def pixels_changed_outside(source: np.ndarray, target: np.ndarray, region: Sequence[int]) -> int:
    left, top, right, bottom = region
    differs = (source != target).any(axis=2)
    differs[top:bottom, left:right] = False
    return int(differs.sum())


class RenderTextEditConfig(StageConfig):
    layout: ProceduralLayoutConfig = Field(default_factory=ProceduralLayoutConfig)
    chromium_path: str = CHROMIUM_PATH
    refont: bool = True
    min_ink_fraction: float = Field(default=0.01, ge=0, le=1)
    replacement_attempts: int = Field(default=20, gt=0)


def _image_ref(page: RenderedPage, blueprint: Blueprint) -> dict[str, Any]:
    return {"bytes": page.png, "uri": None, "width": blueprint.canvas.width, "height": blueprint.canvas.height,
            "sha256": hashlib.sha256(page.png).hexdigest()}


@register_stage
class RenderTextEditStage(ChromiumStage, Stage[RenderTextEditConfig]):
    op = "render_text_edit"
    Config = RenderTextEditConfig
    default_resources = Resources(num_cpus=1, batch_size=16, concurrency=1)

    def output_fields(self) -> tuple[pa.Field, ...]:
        return ()

    def replaced_columns(self) -> tuple[str, ...]:
        return ("source_image", "reference_images", "instruction", "target_image", "metadata")

    def replacement(self, key: str, blueprint: Blueprint, number: int) -> str | None:
        """A different text of the block's language that fits its cell on one line at the block's size."""
        rng = procedural_rng(self.config.layout.seed, f"edit\x00{key}")
        block = blueprint.blocks[number]
        left, top, right, bottom = blueprint.cell_box(block.cell)
        room = (bottom - top if block.writing_mode == "vertical-rl" else right - left) * 0.92 / block.size_px
        sampler = BalancedCharacterSampler(rng, self.config.layout.bucket_edges)
        for _ in range(self.config.replacement_attempts):
            if block.language == "zh":
                text = sampler.text(max(1, len(block.text) + rng.randint(-1, 1)))
            else:
                words = [rng.choice(english_words()) for _ in range(max(1, len(block.text.split())))]
                text = " ".join(w.upper() if block.text.isupper() else w.capitalize() for w in words)
            if text != block.text and text_width_em(text) <= room:
                return text
        return None

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        columns: dict[str, list[Any]] = {name: [] for name in self.result_columns()}
        for key in batch.column("upstream_id").to_pylist():
            row = self.edit_row(key)
            for name in columns:
                columns[name].append(row.get(name))
        return columns

    def edit_row(self, key: str) -> dict[str, Any]:
        blueprint = sample_blueprint(key, self.config.layout)
        number = procedural_rng(self.config.layout.seed, f"block\x00{key}").randrange(len(blueprint.blocks))
        new_text = self.replacement(key, blueprint, number)
        if new_text is None:
            return {REJECT_COLUMN: REJECT_NO_REPLACEMENT,
                    REJECT_DETAIL_COLUMN: f"block {number}: no text fit its cell in {self.config.replacement_attempts} draws"}
        old_block = blueprint.blocks[number]
        edited_blocks = list(blueprint.blocks)
        edited_blocks[number] = old_block.model_copy(update={"text": new_text})
        # One family for both versions: the one that covers the old and the new text.
        both = blueprint.model_copy(update={"blocks": tuple(
            b.model_copy(update={"text": b.text + new_text}) if i == number else b for i, b in enumerate(blueprint.blocks))})
        fonted, problem = refonted(both, self.catalog, self.config.refont)
        if fonted is None:
            return {REJECT_COLUMN: REJECT_MISSING_GLYPHS, REJECT_DETAIL_COLUMN: problem}
        family = fonted.blocks[number].font_family
        source = fonted.model_copy(update={"blocks": tuple(
            old_block.model_copy(update={"font_family": family}) if i == number else b
            for i, b in enumerate(fonted.blocks))})
        target = source.model_copy(update={"blocks": tuple(
            b.model_copy(update={"text": new_text}) if i == number else b for i, b in enumerate(source.blocks))})
        pages = [self.renderer.render(source), self.renderer.render(target)]
        pixels = [decode_rgb(page.png) for page in pages]
        for page, page_pixels in zip(pages, pixels):
            found = overflow_problem(page) or blank_problem(
                block_ink(page_pixels, [m["box"] for m in page.blocks], source.canvas.background),
                self.config.min_ink_fraction)
            if found is not None:
                return {REJECT_COLUMN: found[0], REJECT_DETAIL_COLUMN: found[1]}
        size = (source.canvas.width, source.canvas.height)
        region = changed_region(pages[0].blocks[number]["box"], pages[1].blocks[number]["box"], EDIT_MARGIN_PX, size)
        row = {"source_image": _image_ref(pages[0], source), "target_image": _image_ref(pages[1], target),
               "reference_images": [], "instruction": edit_instruction(old_block.text, new_text),
               "metadata": json.dumps({"task": "text_edit", "block": number, "old_text": old_block.text,
                                       "new_text": new_text, "language": old_block.language,
                                       "changed_region": region, "blueprint": json.loads(source.to_json())},
                                      ensure_ascii=False)}
        leaked = pixels_changed_outside(pixels[0], pixels[1], region)
        if leaked:
            row[REJECT_COLUMN] = REJECT_EDIT_LEAK
            row[REJECT_DETAIL_COLUMN] = f"{leaked} pixels changed outside the edited block's region {region}"
        return row
