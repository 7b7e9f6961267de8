"""OCR-aware captioning (report 4.1.2): `ocr_text` reads text first (engine `rapidocr` or `tesseract`, see
`data_engine/captioning/ocr_engines.py`), `caption_image` with `ocr_aware: true` puts it in the prompts,
and `ocr_caption_filter` keeps a row only if its captions cover all OCR text, agree with it and keep its
original language (definitions in `data_engine/captioning/ocr_check.py`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image
from pydantic import Field

from data_engine.captioning.ocr_check import check_caption_against_ocr
from data_engine.captioning.ocr_engines import OcrEngineName, TesseractConfig, check_tesseract, make_ocr_engine
from data_engine.stage import Resources, Stage, StageConfig, register_stage
from data_engine.stages.caption import OCR_LINES_COLUMN, ocr_texts

OCR_LINE = pa.struct([("text", pa.string()), ("score", pa.float32()), ("box", pa.list_(pa.float32()))])


class OcrTextConfig(StageConfig):
    engine: OcrEngineName = "rapidocr"
    tesseract: TesseractConfig = Field(default_factory=TesseractConfig)  # used when engine is tesseract
    min_score: float = Field(default=0.5, ge=0, le=1)  # lines the recogniser is less sure of are dropped
    max_side: int = Field(default=1536, gt=0)  # images are downscaled to this long side before detection


@register_stage
class OcrTextStage(Stage[OcrTextConfig]):
    """Text lines with confidence and quadrilateral box (x1, y1, ..., x4, y4 in stored-image pixels)."""

    op = "ocr_text"
    Config = OcrTextConfig
    uses_model = True
    default_resources = Resources(num_cpus=1, batch_size=8, concurrency=1)

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field(OCR_LINES_COLUMN, pa.list_(OCR_LINE)),)

    def preflight(self) -> None:
        if self.config.engine == "tesseract":
            check_tesseract(self.config.tesseract)

    def setup(self) -> None:
        self.engine = make_ocr_engine(self.config.engine, self.config.tesseract)

    def read_lines(self, images: Sequence[bytes]) -> list[list[dict[str, Any]]]:
        """Each image's lines at or above `min_score`, boxes in the stored image's pixels."""
        scaled, scales = [], []
        for data in images:
            with Image.open(io.BytesIO(data)) as image:
                rgb = image.convert("RGB")
            scale = min(1.0, self.config.max_side / max(rgb.size))
            if scale < 1.0:
                rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.BICUBIC)
            scaled.append(rgb)
            scales.append(scale)
        return [[line | {"box": (np.asarray(line["box"], dtype=np.float32) / scale).tolist()} for line in lines
                 if line["score"] >= self.config.min_score and line["text"].strip()]
                for lines, scale in zip(self.engine.read_lines(scaled), scales)]

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        return {OCR_LINES_COLUMN: self.read_lines(batch.column("image_bytes").to_pylist())}


class OcrCaptionFilterConfig(StageConfig):
    # Caption keys to check; structured captions are checked through their visible_text field.
    captions: tuple[str, ...] | None = None  # None: every caption the row has
    match_ratio: float = Field(default=0.85, gt=0, le=1)  # similarity that counts as "the same text"
    # Thresholds over the stored scores (re-appliable by `pipelines redecide`).
    min_coverage: float = Field(default=1.0, ge=0, le=1)  # "covers all OCR text"
    min_agreement: float = Field(default=1.0, ge=0, le=1)
    reject_translated: bool = True


@register_stage
class OcrCaptionFilterStage(Stage[OcrCaptionFilterConfig]):
    op = "ocr_caption_filter"
    Config = OcrCaptionFilterConfig
    default_resources = Resources(num_cpus=1, batch_size=64)
    decision_reasons = frozenset({"ocr_translated", "ocr_not_covered", "ocr_disagrees"})
    threshold_fields = frozenset({"min_coverage", "min_agreement", "reject_translated"})

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("ocr_coverage", pa.float32()),  # worst caption of the row
                pa.field("ocr_agreement", pa.float32()),
                pa.field("ocr_translated", pa.bool_()),
                pa.field("ocr_check", pa.string()))  # JSON per caption key: scores, missing, unmatched quotes

    def checked_text(self, key: str, text: str) -> str:
        if key.startswith("structured/"):
            return json.loads(text).get("visible_text", "")
        return text

    def check_row(self, captions: list[tuple[str, str]], lines: list[str]) -> dict[str, Any]:
        wanted = self.config.captions
        per_caption = {key: check_caption_against_ocr(self.checked_text(key, text), lines, self.config.match_ratio)
                       for key, text in captions if wanted is None or key in wanted}
        if not per_caption:
            return {"ocr_coverage": None, "ocr_agreement": None, "ocr_translated": None, "ocr_check": "{}"}
        detail = {key: {"coverage": round(c.coverage, 4), "agreement": round(c.agreement, 4),
                        "translated": c.translated, "missing": list(c.missing),
                        "unmatched_quotes": list(c.unmatched_quotes)} for key, c in per_caption.items()}
        return {"ocr_coverage": min(c.coverage for c in per_caption.values()),
                "ocr_agreement": min(c.agreement for c in per_caption.values()),
                "ocr_translated": any(c.translated for c in per_caption.values()),
                "ocr_check": json.dumps(detail, ensure_ascii=False, sort_keys=True)}

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        rows = [self.check_row(captions or [], ocr_texts(lines)) for captions, lines in
                zip(batch.column("captions").to_pylist(), batch.column(OCR_LINES_COLUMN).to_pylist())]
        return {f.name: [row[f.name] for row in rows] for f in self.output_fields()}

    def decide(self, scores: pa.Table) -> list[str | None]:
        config = self.config
        decisions: list[str | None] = []
        for coverage, agreement, translated in zip(scores.column("ocr_coverage").to_pylist(),
                                                   scores.column("ocr_agreement").to_pylist(),
                                                   scores.column("ocr_translated").to_pylist()):
            if coverage is None:  # no caption to check: nothing to disagree with
                decisions.append(None)
            elif translated and config.reject_translated:
                decisions.append("ocr_translated")
            elif coverage < config.min_coverage - 1e-6:
                decisions.append("ocr_not_covered")
            elif agreement < config.min_agreement - 1e-6:
                decisions.append("ocr_disagrees")
            else:
                decisions.append(None)
        return decisions
