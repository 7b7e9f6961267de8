"""Layout blueprints: a canvas, a poster-style grid and text blocks placed in its cells.

A blueprint is JSON (stored in the `blueprint` column). Every block names its text, language, font family,
size, weight, colour, writing mode, alignment and grid cell; cells never overlap, so one block's text cannot
move another's (the text-edit pairs rely on that). A model's layout output becomes a blueprint through
`parse_layout_generation`: think blocks and code fences removed, typography tokens stripped from the texts
(the typography lives in the fields, never in the rendered string), then validation; anything else is a
reason with the offending field.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from data_engine.captioning.parsing import clean_generation
from data_engine.textrender.fonts import FONT_FAMILIES

Language = Literal["en", "zh"]
_HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
_CODE_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_MAX_DETAIL = 200

REJECT_LAYOUT_INVALID = "layout_invalid"
REJECT_LAYOUT_REQUEST_FAILED = "layout_request_failed"

# Typography a model tends to write into the text itself: markup, markdown emphasis and bracketed style
# notes such as "(bold, 48px)" or "[font: serif]". The words alone ("Bold Coffee") are content and stay.
_TYPOGRAPHY_WORD = re.compile(r"\b(?:bold|italic|underline|font|serif|sans|size|weight|colou?r|\d+\s*(?:px|pt))\b"
                              r"|#[0-9a-f]{3,6}\b|粗体|斜体|字体|字号|颜色|加粗", re.IGNORECASE)
_BRACKETED = re.compile(r"[\(\[\{（【]([^\(\)\[\]\{\}（）【】]*)[\)\]\}）】]")
_MARKUP = re.compile(r"</?[a-zA-Z][^>]*>|\*\*|__|~~|`|^#+\s*", re.MULTILINE)
_CSS_DECLARATION = re.compile(r"\b(?:font(?:-[a-z]+)?|color|colour|text-[a-z]+)\s*:\s*[^;,\)\]\}）】]+;?", re.IGNORECASE)


def strip_typography(text: str) -> str:
    """The text without typography tokens, whitespace collapsed."""
    text = _MARKUP.sub(" ", text)
    text = _BRACKETED.sub(lambda match: " " if _TYPOGRAPHY_WORD.search(match[1]) else match[0], text)
    text = _CSS_DECLARATION.sub(" ", text)
    return " ".join(text.split())


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Canvas(_Model):
    width: int = Field(ge=64, le=4096)
    height: int = Field(ge=64, le=4096)
    background: str = "#ffffff"

    @field_validator("background")
    @classmethod
    def _colour(cls, value: str) -> str:
        if not _HEX_COLOUR.match(value):
            raise ValueError(f"expected #rrggbb, got {value!r}")
        return value.lower()


class Grid(_Model):
    rows: int = Field(ge=1, le=12)
    cols: int = Field(ge=1, le=12)
    margin_px: int = Field(default=24, ge=0)
    gap_px: int = Field(default=16, ge=0)


class Cell(_Model):
    row: int = Field(ge=0)
    col: int = Field(ge=0)
    row_span: int = Field(default=1, ge=1)
    col_span: int = Field(default=1, ge=1)


class TextBlock(_Model):
    text: str = Field(min_length=1, max_length=200)
    language: Language
    font_family: str
    size_px: int = Field(ge=8, le=512)
    weight: Literal[400, 700] = 400
    color: str = "#111111"
    writing_mode: Literal["horizontal-tb", "vertical-rl"] = "horizontal-tb"
    align: Literal["left", "center", "right"] = "center"
    cell: Cell

    @field_validator("text")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.strip() or any(ord(c) < 32 for c in value):
            raise ValueError("text must be non-blank and hold no control characters")
        return value

    @field_validator("font_family")
    @classmethod
    def _known_family(cls, value: str) -> str:
        if value not in FONT_FAMILIES:
            raise ValueError(f"unknown font family {value!r}; allowed: {', '.join(FONT_FAMILIES)}")
        return value

    @field_validator("color")
    @classmethod
    def _colour(cls, value: str) -> str:
        return Canvas._colour(value)


class Blueprint(_Model):
    version: Literal[1] = 1
    canvas: Canvas
    grid: Grid
    blocks: tuple[TextBlock, ...] = Field(min_length=1, max_length=32)

    @model_validator(mode="after")
    def _cells_fit_and_do_not_overlap(self) -> Blueprint:
        taken: dict[tuple[int, int], int] = {}
        for number, block in enumerate(self.blocks):
            cell = block.cell
            if cell.row + cell.row_span > self.grid.rows or cell.col + cell.col_span > self.grid.cols:
                raise ValueError(f"blocks.{number}.cell: {cell.model_dump()} is outside the "
                                 f"{self.grid.rows}x{self.grid.cols} grid")
            for row in range(cell.row, cell.row + cell.row_span):
                for col in range(cell.col, cell.col + cell.col_span):
                    if (row, col) in taken:
                        raise ValueError(f"blocks.{number}.cell overlaps blocks.{taken[row, col]}.cell")
                    taken[row, col] = number
        if min(self.cell_size()) < 8:
            raise ValueError("grid: margins and gaps leave cells under 8 px")
        return self

    def cell_size(self) -> tuple[float, float]:
        grid = self.grid
        width = (self.canvas.width - 2 * grid.margin_px - (grid.cols - 1) * grid.gap_px) / grid.cols
        height = (self.canvas.height - 2 * grid.margin_px - (grid.rows - 1) * grid.gap_px) / grid.rows
        return width, height

    def cell_box(self, cell: Cell) -> tuple[float, float, float, float]:
        """The cell's pixel rectangle (left, top, right, bottom) on the canvas."""
        width, height = self.cell_size()
        grid = self.grid
        left = grid.margin_px + cell.col * (width + grid.gap_px)
        top = grid.margin_px + cell.row * (height + grid.gap_px)
        return (left, top, left + cell.col_span * width + (cell.col_span - 1) * grid.gap_px,
                top + cell.row_span * height + (cell.row_span - 1) * grid.gap_px)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> Blueprint:
        return cls.model_validate_json(text)


def parse_layout_generation(raw: str) -> tuple[Blueprint | None, str | None, str | None]:
    """(blueprint, None, None) from a model's layout output, or (None, reason, detail)."""
    text = clean_generation(raw)
    fenced = _CODE_FENCE.match(text)
    body = fenced.group(1) if fenced else text
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        return None, REJECT_LAYOUT_INVALID, f"not JSON ({exc.msg} at char {exc.pos}): {body[:_MAX_DETAIL]!r}"
    if not isinstance(data, dict) or not isinstance(data.get("blocks"), list):
        return None, REJECT_LAYOUT_INVALID, f"expected an object with a blocks list: {body[:_MAX_DETAIL]!r}"
    blocks = []
    for block in data["blocks"]:
        if isinstance(block, dict) and isinstance(block.get("text"), str):
            block = block | {"text": strip_typography(block["text"])}
            if not block["text"]:
                continue  # the block held only typography
        blocks.append(block)
    try:
        return Blueprint.model_validate(data | {"blocks": blocks}), None, None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "<root>"
        return None, REJECT_LAYOUT_INVALID, f"{where}: {first['msg'].removeprefix('Value error, ')}"[:_MAX_DETAIL * 2]
