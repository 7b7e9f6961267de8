"""OCR-aware captioning (report 4.1.2): `ocr_text` reads text first (engine `rapidocr` or `tesseract`, see
`data_engine/captioning/ocr_engines.py`), `caption_image` with `ocr_aware: true` puts it in the prompts,
and `ocr_caption_filter` keeps each caption only if it covers all OCR text, agrees with it and keeps its
original language (definitions in `data_engine/captioning/ocr_check.py`); a row goes only when no caption is
left.
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

from data_engine.captioning.ocr_check import OCR_REASONS, check_caption_against_ocr
from data_engine.captioning.ocr_engines import OcrEngineName, TesseractConfig, check_tesseract, make_ocr_engine
from data_engine.captioning.parsing import STRUCTURED_REJECTS, parse_caption
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
    # Caption keys to check ("<type>/<lang>"); the others are kept as they are. None: every caption.
    captions: tuple[str, ...] | None = None
    # Tolerate the few character confusions OCR engines make (ocr_check.py); never digits or symbols.
    ocr_confusions: bool = True


@register_stage
class OcrCaptionFilterStage(Stage[OcrCaptionFilterConfig]):
    """Decides per caption (report 4.1.2 keeps the captions that pass): a caption that fails the check
    leaves `captions` and its reason goes into `ocr_caption_rejects` under its key; the row is rejected only
    when no caption is left, with the most telling reason among its captions (the order of OCR_REASONS, a
    malformed structured caption last). `ocr_check` holds, per checked key, the reason, the missing and
    altered OCR lines, the unsupported quotes and, for a removed caption, its text. Rows without OCR lines
    (OCR not run) or without captions are left alone. Which captions stay is settled while processing (it
    rewrites `captions`), so this stage has no thresholds for `redecide`; a changed check needs a rerun."""

    op = "ocr_caption_filter"
    Config = OcrCaptionFilterConfig
    default_resources = Resources(num_cpus=1, batch_size=64)
    decision_reasons = frozenset(OCR_REASONS) | STRUCTURED_REJECTS

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("ocr_caption_rejects", pa.map_(pa.string(), pa.string())),  # key -> reason
                pa.field("ocr_check", pa.string()))  # JSON per checked caption key

    def replaced_columns(self) -> tuple[str, ...]:
        return ("captions",)

    def processed_rows(self, table: pa.Table) -> list[bool]:
        # A row without OCR lines or captions is left alone with both columns empty: nothing to check.
        seen = super().processed_rows(table)
        return [done or not lines or not captions for done, lines, captions in
                zip(seen, table.column(OCR_LINES_COLUMN).to_pylist(), table.column("captions").to_pylist())]

    def check_caption(self, key: str, text: str, lines: list[str]) -> dict[str, Any]:
        if not key.startswith("structured/"):
            return check_caption_against_ocr(text, lines, confusions=self.config.ocr_confusions).to_json()
        parsed = parse_caption("structured", text)
        if parsed.reject is not None:
            return {"reason": parsed.reject, "detail": parsed.detail}
        fields = json.loads(parsed.text)
        others = "\n".join(value for name, value in sorted(fields.items()) if name != "visible_text")
        return check_caption_against_ocr(others, lines, visible_text=fields["visible_text"],
                                         confusions=self.config.ocr_confusions).to_json()

    def check_row(self, captions: list[tuple[str, str]] | None, lines: list[dict] | None) -> dict[str, Any]:
        if lines is None or not captions:
            return {"captions": captions, "ocr_caption_rejects": None, "ocr_check": None}
        wanted = self.config.captions
        texts = ocr_texts(lines)
        kept, rejects, detail = [], [], {}
        for key, text in captions:
            if wanted is not None and key not in wanted:
                kept.append((key, text))
                continue
            detail[key] = self.check_caption(key, text, texts)
            if detail[key]["reason"] is None:
                kept.append((key, text))
            else:
                rejects.append((key, detail[key]["reason"]))
                detail[key]["text"] = text
        return {"captions": kept, "ocr_caption_rejects": rejects,
                "ocr_check": json.dumps(detail, ensure_ascii=False, sort_keys=True)}

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        rows = [self.check_row(captions, lines) for captions, lines in
                zip(batch.column("captions").to_pylist(), batch.column(OCR_LINES_COLUMN).to_pylist())]
        return {name: [row[name] for row in rows] for name in ("captions", "ocr_caption_rejects", "ocr_check")}

    def decide(self, scores: pa.Table) -> list[str | None]:
        precedence = {reason: rank for rank, reason in enumerate(OCR_REASONS)}
        decisions: list[str | None] = []
        for captions, rejects in zip(scores.column("captions").to_pylist(),
                                     scores.column("ocr_caption_rejects").to_pylist()):
            if captions or not rejects:
                decisions.append(None)
            else:
                decisions.append(min((precedence.get(reason, len(precedence)), key, reason)
                                     for key, reason in rejects)[2])
        return decisions
