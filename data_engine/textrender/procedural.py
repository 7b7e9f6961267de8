"""Blueprints sampled from a seed: a poster-style grid, a title row, text blocks sized to fit their cells.

English blocks are words from `wordfreq`'s English list; Chinese blocks are characters from the balanced
sampler (`charfreq.py`), so rare characters are covered as often as common ones. Sizes are estimated so
the text fits its cell on one line (one column for vertical text); a block that would need a size under
`size_px[0]` is shortened, or the cell stays empty. Text and background colours keep a contrast ratio of at
least `min_contrast` (WCAG's definition). A blueprint is a pure function of (seed, key).
"""

from __future__ import annotations

import hashlib
import random
from functools import cache

from pydantic import BaseModel, ConfigDict, Field, model_validator

from data_engine.textrender.blueprint import Blueprint, Canvas, Cell, Grid, TextBlock
from data_engine.textrender.charfreq import DEFAULT_BUCKET_EDGES, BalancedCharacterSampler
from data_engine.textrender.fonts import FALLBACK_FAMILIES, FONT_FAMILIES

_LATIN_FAMILIES = tuple(f for f in FONT_FAMILIES if "CJK" not in f)
_PALETTE = ("#ffffff", "#f5f0e6", "#fff8dc", "#e8f1fb", "#1b1b1b", "#0d2b45", "#3b1f2b", "#123524",
            "#c62828", "#1565c0", "#2e7d32", "#f9a825", "#6a1b9a", "#111111", "#ef6c00", "#00838f")
# Advance width per character in em, generous so that estimated lines fit: CJK is one em, Latin capitals and
# digits up to ~0.72 (Liberation Sans Bold "W" is 0.94, but words average below), other Latin ~0.62.
_WIDE_EM, _CAPITAL_EM, _NARROW_EM = 1.0, 0.72, 0.62


class ProceduralLayoutConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    canvases: tuple[tuple[int, int], ...] = ((768, 512), (512, 768), (640, 640))
    rows: tuple[int, int] = (2, 4)
    cols: tuple[int, int] = (1, 3)
    title_row_probability: float = Field(default=0.6, ge=0, le=1)  # first row one block across the columns
    empty_cell_probability: float = Field(default=0.15, ge=0, le=1)
    languages: dict[str, float] = Field(default_factory=lambda: {"en": 0.5, "zh": 0.5})
    size_px: tuple[int, int] = (24, 96)
    bold_probability: float = Field(default=0.4, ge=0, le=1)
    vertical_probability: float = Field(default=0.15, ge=0, le=1)  # Chinese blocks only
    english_words: tuple[int, int] = (1, 4)
    chinese_characters: tuple[int, int] = (2, 8)
    min_contrast: float = Field(default=4.5, ge=1)
    bucket_edges: tuple[int, ...] = DEFAULT_BUCKET_EDGES
    seed: int = 0

    @model_validator(mode="after")
    def _ranges(self) -> ProceduralLayoutConfig:
        for name in ("rows", "cols", "size_px", "english_words", "chinese_characters"):
            low, high = getattr(self, name)
            if not 1 <= low <= high:
                raise ValueError(f"{name}: expected 1 <= low <= high, got {(low, high)}")
        if set(self.languages) - {"en", "zh"} or abs(sum(self.languages.values()) - 1) > 1e-6:
            raise ValueError(f"languages: probabilities over en/zh summing to 1, got {self.languages}")
        return self


def _luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(first: str, second: str) -> float:
    high, low = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@cache
def english_words() -> tuple[str, ...]:
    from wordfreq import top_n_list

    return tuple(w for w in top_n_list("en", 6000) if w.isascii() and w.isalpha() and len(w) >= 3)


def text_width_em(text: str) -> float:
    return sum(_WIDE_EM if "\u2e80" <= c <= "\uffef" else _CAPITAL_EM if c.isupper() or c.isdigit() else _NARROW_EM
               for c in text)


def _english_text(rng: random.Random, config: ProceduralLayoutConfig) -> list[str]:
    words = [rng.choice(english_words()) for _ in range(rng.randint(*config.english_words))]
    style = rng.choice(("title", "upper", "lower", "sentence"))
    if style == "title":
        return [w.capitalize() for w in words]
    if style == "upper":
        return [w.upper() for w in words]
    return [words[0].capitalize(), *words[1:]] if style == "sentence" else words


def _fit_size(text: str, vertical: bool, cell: tuple[float, float], config: ProceduralLayoutConfig) -> int:
    width, height = cell
    if vertical:
        return int(min(config.size_px[1], 0.8 * width, 0.9 * height / len(text)))
    return int(min(config.size_px[1], 0.7 * height, 0.92 * width / text_width_em(text)))


def _block(rng: random.Random, sampler: BalancedCharacterSampler, config: ProceduralLayoutConfig,
           cell: Cell, cell_size: tuple[float, float], background: str) -> TextBlock | None:
    language = rng.choices(list(config.languages), weights=list(config.languages.values()))[0]
    vertical = language == "zh" and rng.random() < config.vertical_probability
    if language == "en":
        parts, joiner = _english_text(rng, config), " "
        family = rng.choice(_LATIN_FAMILIES)
    else:
        parts, joiner = list(sampler.text(rng.randint(*config.chinese_characters))), ""
        family = rng.choice(FALLBACK_FAMILIES["zh"])
    while parts and _fit_size(joiner.join(parts), vertical, cell_size, config) < config.size_px[0]:
        parts.pop()
    if not parts:
        return None
    text = joiner.join(parts)
    colours = [c for c in _PALETTE if contrast_ratio(c, background) >= config.min_contrast]
    return TextBlock(
        text=text, language=language, font_family=family,
        size_px=max(config.size_px[0], _fit_size(text, vertical, cell_size, config)),
        weight=700 if rng.random() < config.bold_probability else 400, color=rng.choice(colours),
        writing_mode="vertical-rl" if vertical else "horizontal-tb",
        align=rng.choice(("left", "center", "right")), cell=cell)


def procedural_rng(seed: int, key: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def sample_blueprint(key: str, config: ProceduralLayoutConfig) -> Blueprint:
    """The blueprint of `key` (a row's upstream id) under the config's seed."""
    rng = procedural_rng(config.seed, key)
    sampler = BalancedCharacterSampler(rng, config.bucket_edges)
    width, height = rng.choice(config.canvases)
    rows, cols = rng.randint(*config.rows), rng.randint(*config.cols)
    background = rng.choice([c for c in _PALETTE if sum(contrast_ratio(c, t) >= config.min_contrast
                                                         for t in _PALETTE) >= 3])
    grid = Grid(rows=rows, cols=cols, margin_px=max(8, min(width, height) // 24), gap_px=12)
    cells: list[Cell] = []
    first_row = 0
    if cols > 1 and rows > 1 and rng.random() < config.title_row_probability:
        cells.append(Cell(row=0, col=0, col_span=cols))
        first_row = 1
    cells += [Cell(row=r, col=c) for r in range(first_row, rows) for c in range(cols)]
    probe = Blueprint(canvas=Canvas(width=width, height=height, background=background), grid=grid,
                      blocks=(TextBlock(text="x", language="en", font_family=_LATIN_FAMILIES[0], size_px=8,
                                        cell=cells[0]),))
    blocks = []
    for number, cell in enumerate(cells):
        if number and rng.random() < config.empty_cell_probability:
            continue
        left, top, right, bottom = probe.cell_box(cell)
        block = _block(rng, sampler, config, cell, (right - left, bottom - top), background)
        if block is not None:
            blocks.append(block)
    if not blocks:  # every cell too small for the minimum size: one short block across the whole grid
        cell = Cell(row=0, col=0, row_span=rows, col_span=cols)
        left, top, right, bottom = probe.cell_box(cell)
        blocks.append(_block(rng, sampler, config, cell, (right - left, bottom - top), background))
    return Blueprint(canvas=probe.canvas, grid=grid, blocks=tuple(b for b in blocks if b is not None))
