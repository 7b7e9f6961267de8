"""Text-rendering stages over caption-schema rows: blueprint -> Chromium render -> captions -> OCR check.

- `sample_text_blueprint`: a procedural blueprint per row, a pure function of (seed, upstream id);
- `generate_text_blueprint`: a blueprint per row from one of its captions (the prompt) through the
  captioning backends and the versioned `layout/<version>` prompt; invalid output is `layout_invalid`;
- `render_text`: glyph coverage first (a block whose font lacks a glyph is re-fonted to a family that has
  them all, or the row is `missing_glyphs`), then Chromium; a block whose measured box leaves its cell is
  `text_overflow`; the image columns, the rendered blueprint and each block's measured box are written;
- `caption_rendered_text`: captions quoting every rendered string (`captions.py`);
- `verify_rendered_text`: the pixels after rendering: each block's ink fraction and its OCR character error
  rate; `decide()` rejects `blank_block` when a block has less ink than `min_ink_fraction` (the font drew
  nothing), else `ocr_mismatch` when a block of at least `min_size_px` reads with a rate above `max_cer`
  (all three thresholds, re-decidable). Decoding the image once here keeps the render stage at Chromium's
  own speed (benchmarks/text_render.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from data_engine.captioning.backends import BackendConfig, GenerationRequest, TransformersBackendConfig
from data_engine.captioning.ocr_engines import OcrEngineName, TesseractConfig, check_tesseract, make_ocr_engine
from data_engine.captioning.prompts import caption_key_language, load_prompt_set
from data_engine.stage import (REJECT_COLUMN, REJECT_DETAIL_COLUMN, Resources, Stage, StageConfig, StageUnavailable,
                               register_stage)
from data_engine.stages.caption import CaptionSampling, GenerationStage
from data_engine.textrender.blueprint import REJECT_LAYOUT_REQUEST_FAILED, Blueprint, parse_layout_generation
from data_engine.textrender.captions import rendered_text_captions
from data_engine.textrender.chromium import CHROMIUM_PATH, ChromiumRenderer, RenderedPage
from data_engine.textrender.fonts import FONT_FAMILIES, FontCatalog
from data_engine.textrender.procedural import ProceduralLayoutConfig, sample_blueprint
from data_engine.textrender.verify import (character_error_rate, decode_rgb, ink_fraction, ocr_crop,
                                           ocr_text)

BLUEPRINT_FIELDS = (pa.field("blueprint", pa.string()),  # JSON (blueprint.py)
                    pa.field("blueprint_source", pa.string()))  # "procedural:<seed>" or "<prompt set>@<sha256>"
TEXT_BLOCKS_COLUMN = "text_blocks"  # JSON list per row: text, language, font family, size, box, chars
IMAGE_COLUMNS = ("image_bytes", "image_format", "width", "height", "md5", "sha256")

REJECT_MISSING_GLYPHS = "missing_glyphs"
REJECT_TEXT_OVERFLOW = "text_overflow"
REJECT_BLANK_BLOCK = "blank_block"
REJECT_OCR_MISMATCH = "ocr_mismatch"
_OVERFLOW_TOLERANCE_PX = 1.0


class SampleTextBlueprintConfig(StageConfig):
    layout: ProceduralLayoutConfig = Field(default_factory=ProceduralLayoutConfig)


@register_stage
class SampleTextBlueprintStage(Stage[SampleTextBlueprintConfig]):
    op = "sample_text_blueprint"
    Config = SampleTextBlueprintConfig
    default_resources = Resources(num_cpus=1, batch_size=64)

    def output_fields(self) -> tuple[pa.Field, ...]:
        return BLUEPRINT_FIELDS

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        blueprints = [sample_blueprint(key, self.config.layout).to_json()
                      for key in batch.column("upstream_id").to_pylist()]
        return {"blueprint": blueprints, "blueprint_source": [f"procedural:{self.config.layout.seed}"] * len(blueprints)}


class GenerateTextBlueprintConfig(StageConfig):
    backend: BackendConfig = Field(default_factory=lambda: TransformersBackendConfig(model="tiny:qwen3vl"))
    prompt_version: str = "layout/v1"
    source: str = "short/en"  # caption key holding the prompt; its language suffix picks the prompt language
    canvas: tuple[int, int] = (768, 512)
    max_new_tokens: int = Field(default=1024, gt=0)

    @model_validator(mode="after")
    def _source_language(self) -> GenerateTextBlueprintConfig:
        load_prompt_set(self.prompt_version).text("template", caption_key_language(self.source))
        return self


@register_stage
class GenerateTextBlueprintStage(GenerationStage, Stage[GenerateTextBlueprintConfig]):
    op = "generate_text_blueprint"
    Config = GenerateTextBlueprintConfig
    default_resources = Resources(num_cpus=1, batch_size=8, concurrency=1)

    def output_fields(self) -> tuple[pa.Field, ...]:
        return BLUEPRINT_FIELDS

    def setup(self) -> None:
        super().setup()
        self.template = self.prompts.text("template", caption_key_language(self.config.source))

    def prompt(self, text: str) -> str:
        width, height = self.config.canvas
        return self.template.format(canvas_width=width, canvas_height=height, text=text,
                                    families=", ".join(f'"{family}"' for family in FONT_FAMILIES))

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        captions = [dict(c or []) for c in batch.column("captions").to_pylist()]
        todo = [i for i, c in enumerate(captions) if c.get(self.config.source)]
        generations = self.backend.generate([GenerationRequest(self.prompt(captions[i][self.config.source]),
                                                                self.config.max_new_tokens) for i in todo])
        blueprints: list[str | None] = [None] * batch.num_rows
        rejects: list[str | None] = ["layout_source_missing"] * batch.num_rows
        details: list[str | None] = [f"no caption {self.config.source!r}"] * batch.num_rows
        for i, generation in zip(todo, generations):
            if generation.error is not None:
                rejects[i], details[i] = REJECT_LAYOUT_REQUEST_FAILED, generation.error
                continue
            blueprint, rejects[i], details[i] = parse_layout_generation(generation.text or "")
            blueprints[i] = blueprint.to_json() if blueprint is not None else None
        source = f"{self.prompts.name}@{self.prompts.sha256}"
        return {"blueprint": blueprints, "blueprint_source": [source] * batch.num_rows,
                REJECT_COLUMN: rejects, REJECT_DETAIL_COLUMN: details}


class RenderTextConfig(StageConfig):
    chromium_path: str = CHROMIUM_PATH
    refont: bool = True  # a block whose family lacks a glyph takes a fallback family that has them all


def refonted(blueprint: Blueprint, catalog: FontCatalog, refont: bool) -> tuple[Blueprint | None, str | None]:
    """The blueprint with every block in a family that has all its glyphs, or (None, what is missing)."""
    blocks = []
    for number, block in enumerate(blueprint.blocks):
        family = catalog.covering_family(block.text, block.font_family, block.language) if refont else (
            None if catalog.missing_glyphs(block.text, block.font_family) else block.font_family)
        if family is None:
            missing = "".join(catalog.missing_glyphs(block.text, block.font_family))
            return None, f"block {number}: no installed family has glyphs for {missing!r}"
        blocks.append(block if family == block.font_family else block.model_copy(update={"font_family": family}))
    return blueprint.model_copy(update={"blocks": tuple(blocks)}), None


def overflow_problem(page: RenderedPage) -> tuple[str, str] | None:
    """(text_overflow, detail) when a block's measured text box leaves its cell; None when every block fits."""
    for number, measured in enumerate(page.blocks):
        box, cell = measured["box"], measured["cell"]
        if (box[0] < cell[0] - _OVERFLOW_TOLERANCE_PX or box[1] < cell[1] - _OVERFLOW_TOLERANCE_PX
                or box[2] > cell[2] + _OVERFLOW_TOLERANCE_PX or box[3] > cell[3] + _OVERFLOW_TOLERANCE_PX):
            return REJECT_TEXT_OVERFLOW, f"block {number}: text box {_rounded(box)} outside cell {_rounded(cell)}"
    return None


def block_ink(pixels: np.ndarray, boxes: Sequence[Sequence[float]], background: str) -> list[float]:
    return [round(ink_fraction(pixels, box, background), 4) for box in boxes]


def blank_problem(ink: Sequence[float], min_ink_fraction: float) -> tuple[str, str] | None:
    """(blank_block, detail) for the first block with less ink than `min_ink_fraction`; None otherwise."""
    for number, fraction in enumerate(ink):
        if fraction < min_ink_fraction:
            return REJECT_BLANK_BLOCK, f"block {number}: ink fraction {fraction:.4f} < {min_ink_fraction}"
    return None


def _rounded(box: Sequence[float]) -> list[float]:
    return [round(value, 1) for value in box]


def text_blocks_json(blueprint: Blueprint, page: RenderedPage) -> str:
    return json.dumps([{"text": block.text, "language": block.language, "font_family": block.font_family,
                        "size_px": block.size_px, "writing_mode": block.writing_mode,
                        "box": _rounded(measured["box"]),
                        "chars": [_rounded(c) for c in measured["chars"]] if measured["chars"] else None}
                       for block, measured in zip(blueprint.blocks, page.blocks)], ensure_ascii=False)


class ChromiumStage(Stage):
    """A stage holding one headless Chromium per worker (an actor), started in setup()."""

    uses_model = True

    def setup(self) -> None:
        self.catalog = FontCatalog()
        self.renderer = ChromiumRenderer(self.config.chromium_path)

    def preflight(self) -> None:
        if not Path(self.config.chromium_path).is_file():
            raise StageUnavailable(f"{self.name}: {self.config.chromium_path} not found "
                                   "(install the Debian package chromium: make system-deps)")
        FontCatalog()  # every family installed, or a one-line error naming the package


@register_stage
class RenderTextStage(ChromiumStage, Stage[RenderTextConfig]):
    op = "render_text"
    Config = RenderTextConfig
    default_resources = Resources(num_cpus=1, batch_size=16, concurrency=1)

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field(TEXT_BLOCKS_COLUMN, pa.string()),)

    def replaced_columns(self) -> tuple[str, ...]:
        return IMAGE_COLUMNS + ("blueprint",)

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        columns: dict[str, list[Any]] = {name: [] for name in self.result_columns()}
        for text in batch.column("blueprint").to_pylist():
            row = self.render_row(Blueprint.from_json(text))
            for name in columns:
                columns[name].append(row.get(name))
        return columns

    def render_row(self, blueprint: Blueprint) -> dict[str, Any]:
        rendered, problem = refonted(blueprint, self.catalog, self.config.refont)
        if rendered is None:
            return {REJECT_COLUMN: REJECT_MISSING_GLYPHS, REJECT_DETAIL_COLUMN: problem}
        page = self.renderer.render(rendered)
        found = overflow_problem(page)
        row = {"image_bytes": page.png, "image_format": "png", "width": rendered.canvas.width,
               "height": rendered.canvas.height, "md5": hashlib.md5(page.png).hexdigest(),
               "sha256": hashlib.sha256(page.png).hexdigest(), "blueprint": rendered.to_json(),
               TEXT_BLOCKS_COLUMN: text_blocks_json(rendered, page)}
        if found is not None:
            row[REJECT_COLUMN], row[REJECT_DETAIL_COLUMN] = found
        return row


class CaptionRenderedTextConfig(StageConfig):
    sampling: CaptionSampling = Field(default_factory=lambda: CaptionSampling(types={"short": 0.3, "long": 0.7}))


@register_stage
class CaptionRenderedTextStage(Stage[CaptionRenderedTextConfig]):
    op = "caption_rendered_text"
    Config = CaptionRenderedTextConfig
    default_resources = Resources(num_cpus=1, batch_size=256)

    def output_fields(self) -> tuple[pa.Field, ...]:
        return ()

    def replaced_columns(self) -> tuple[str, ...]:
        return ("captions", "caption_sampling")

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        captions = []
        for blueprint, blocks in zip(batch.column("blueprint").to_pylist(),
                                     batch.column(TEXT_BLOCKS_COLUMN).to_pylist()):
            boxes = [block["box"] for block in json.loads(blocks)]
            captions.append(sorted(rendered_text_captions(Blueprint.from_json(blueprint), boxes).items()))
        sampling = json.dumps(self.config.sampling.model_dump(mode="json"), sort_keys=True)
        return {"captions": captions, "caption_sampling": [sampling] * batch.num_rows}


class VerifyRenderedTextConfig(StageConfig):
    engine: OcrEngineName = "rapidocr"
    tesseract: TesseractConfig = Field(default_factory=TesseractConfig)
    max_cer: float = Field(default=0.05, ge=0)  # threshold
    min_size_px: int = Field(default=32, gt=0)  # threshold: smaller blocks are measured but never reject
    min_ink_fraction: float = Field(default=0.01, ge=0, le=1)  # threshold: of a block's text box; below: blank


@register_stage
class VerifyRenderedTextStage(Stage[VerifyRenderedTextConfig]):
    op = "verify_rendered_text"
    Config = VerifyRenderedTextConfig
    default_resources = Resources(num_cpus=1, batch_size=16, concurrency=1)
    uses_model = True
    decision_reasons = frozenset({REJECT_BLANK_BLOCK, REJECT_OCR_MISMATCH})
    threshold_fields = frozenset({"max_cer", "min_size_px", "min_ink_fraction"})

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("block_ink", pa.list_(pa.float64())), pa.field("ocr_block_texts", pa.list_(pa.string())),
                pa.field("block_cer", pa.list_(pa.float64())))

    def preflight(self) -> None:
        if self.config.engine == "tesseract":
            check_tesseract(self.config.tesseract)

    def setup(self) -> None:
        self.engine = make_ocr_engine(self.config.engine, self.config.tesseract)

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        inks, texts, rates = [], [], []
        for image, blueprint, blocks in zip(batch.column("image_bytes").to_pylist(),
                                            batch.column("blueprint").to_pylist(),
                                            batch.column(TEXT_BLOCKS_COLUMN).to_pylist()):
            background = Blueprint.from_json(blueprint).canvas.background
            pixels = decode_rgb(image)
            measured = json.loads(blocks)
            inks.append(block_ink(pixels, [block["box"] for block in measured], background))
            crops = [ocr_crop(pixels, block, background, block["size_px"]) for block in measured]
            read = [ocr_text(lines) for lines in self.engine.read_lines(crops)]
            texts.append(read)
            rates.append([round(character_error_rate(block["text"], text), 4) for block, text in zip(measured, read)])
        return {"block_ink": inks, "ocr_block_texts": texts, "block_cer": rates}

    def decide(self, scores: pa.Table) -> list[str | None]:
        decisions: list[str | None] = []
        for blocks, ink, rates in zip(scores.column(TEXT_BLOCKS_COLUMN).to_pylist(),
                                      scores.column("block_ink").to_pylist(), scores.column("block_cer").to_pylist()):
            sizes = [block["size_px"] for block in json.loads(blocks)]
            failed = any(size >= self.config.min_size_px and rate > self.config.max_cer
                         for size, rate in zip(sizes, rates or []))
            blank = blank_problem(ink or [], self.config.min_ink_fraction)
            decisions.append(blank[0] if blank else REJECT_OCR_MISMATCH if failed else None)
        return decisions

