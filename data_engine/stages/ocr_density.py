"""ocr_density: the dense-OCR resolution rule of Table 4 (off at 208p, min side > 512 at 512p, > 768 at 1024p).

Text-heavy images (posters, documents, signs) teach text rendering only when the glyphs are legible, so
they need more pixels than other images. A text detector (RapidOCR's PP-OCR detection model, an ONNX file
that ships inside the `rapidocr` wheel, or the same architecture from `det_model_path`) finds text boxes
at `working_side`; the share of the image they cover is the score.
Columns: `ocr_text_coverage` (0..1, union of the detected boxes), `ocr_text_boxes` (count).
Decision: reason `dense_text_low_resolution` when coverage >= `dense_text_min_coverage` in at least
`dense_text_min_boxes` boxes and the short side is not above `dense_text_min_side`.
`dense_text_min_side: 0` turns the rule off (Table 4's 208p stage, the largest pool): the detector is then not
run at all and both columns stay empty, so switching the rule on later means rerunning the stage: redecide
marks such rows `unprocessed`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa
from pydantic import Field

from data_engine.curation.pixels import working_rgb
from data_engine.curation.presets import PresetConfig
from data_engine.stage import Resources, Stage, register_stage, stored_threshold


class OcrDensityConfig(PresetConfig):
    preset_op = "ocr_density"

    working_side: int = Field(default=736, gt=0)  # RapidOCR's default detection size limit
    det_model_path: str | None = None  # a PP-OCR detection ONNX; None: the model shipped with rapidocr
    # Thresholds (decide() only).
    dense_text_min_coverage: float = Field(default=0.1, ge=0, le=1)
    # "Dense" means several lines: one large box is more often a detector false positive on texture
    # (petals, foliage) than a caption-worthy text block.
    dense_text_min_boxes: int = Field(default=3, ge=1)
    dense_text_min_side: int = Field(default=512, ge=0)


def text_coverage(boxes: np.ndarray | None, height: int, width: int) -> float:
    """Share of an image of this size covered by the union of quadrilateral boxes (n, 4, 2) in pixels."""
    if boxes is None or len(boxes) == 0:
        return 0.0
    mask = np.zeros((height, width), np.uint8)
    for box in boxes:  # one call per box: a single fillPoly call fills overlaps by the even-odd rule
        cv2.fillConvexPoly(mask, np.round(box).astype(np.int32), 1)
    return float(mask.mean())


@register_stage
class OcrDensityStage(Stage[OcrDensityConfig]):
    op = "ocr_density"
    Config = OcrDensityConfig
    uses_model = True
    default_resources = Resources(num_cpus=1, batch_size=8)
    decision_reasons = frozenset({"dense_text_low_resolution"})
    threshold_fields = frozenset({"dense_text_min_coverage", "dense_text_min_boxes", "dense_text_min_side"})

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("ocr_text_coverage", pa.float32()), pa.field("ocr_text_boxes", pa.int32()))

    @property
    def rule_on(self) -> bool:
        return self.config.dense_text_min_side > 0

    def processed_rows(self, table: pa.Table) -> list[bool]:
        if not self.rule_on:  # nothing to measure: every row that reaches the stage passes it unscored
            return [True] * table.num_rows
        return super().processed_rows(table)

    def setup(self) -> None:
        if not self.rule_on:
            return
        from rapidocr import RapidOCR

        params: dict[str, Any] = {"Global.log_level": "error", "Det.limit_side_len": self.config.working_side,
                                  "EngineConfig.onnxruntime.intra_op_num_threads": 1}
        if self.config.det_model_path is not None:
            path = Path(self.config.det_model_path)
            if not path.is_file():
                raise FileNotFoundError(f"ocr_density.det_model_path: {path} does not exist")
            params["Det.model_path"] = str(path)
        self.engine = RapidOCR(params=params)

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        if not self.rule_on:
            return {"ocr_text_coverage": [None] * batch.num_rows, "ocr_text_boxes": [None] * batch.num_rows}
        coverage, counts = [], []
        for data in batch.column("image_bytes").to_pylist():
            rgb = working_rgb(data, self.config.working_side)
            boxes = self.engine(rgb, use_det=True, use_cls=False, use_rec=False).boxes
            coverage.append(text_coverage(boxes, *rgb.shape[:2]))
            counts.append(0 if boxes is None else len(boxes))
        return {"ocr_text_coverage": coverage, "ocr_text_boxes": counts}

    def decide(self, scores: pa.Table) -> list[str | None]:
        config = self.config
        min_coverage = stored_threshold(config.dense_text_min_coverage, scores.schema.field("ocr_text_coverage").type)
        decisions: list[str | None] = []
        for coverage, boxes, width, height in zip(
                scores.column("ocr_text_coverage").to_pylist(), scores.column("ocr_text_boxes").to_pylist(),
                scores.column("width").to_pylist(), scores.column("height").to_pylist()):
            dense = (self.rule_on and coverage is not None and coverage >= min_coverage
                     and boxes >= config.dense_text_min_boxes)
            decisions.append("dense_text_low_resolution" if dense and min(width, height) <= config.dense_text_min_side
                             else None)
        return decisions
