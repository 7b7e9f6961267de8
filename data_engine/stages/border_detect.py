"""border_detect: solid frames and letterbox bars (report Table 4: off at 208p, on at 512p and 1024p).

Scores: `border_top`, `border_bottom`, `border_left`, `border_right`, each the fraction of the image height
or width covered by a uniform band on that side (`data_engine.ops.borders`), measured at `working_side`.
Decision: reason `border` when the widest band covers at least `max_border_fraction` and `enforce` is on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import pyarrow as pa
from pydantic import Field

from data_engine.curation.pixels import working_rgb
from data_engine.curation.presets import PresetConfig
from data_engine.ops.borders import border_fractions
from data_engine.stage import Resources, Stage, register_stage, stored_threshold

SIDES = ("border_top", "border_bottom", "border_left", "border_right")


class BorderDetectConfig(PresetConfig):
    preset_op = "border_detect"

    working_side: int = Field(default=512, ge=0)
    tolerance: int = Field(default=12, ge=0, le=255)  # max channel difference from the border colour
    outlier_fraction: float = Field(default=0.02, ge=0, lt=1)  # pixels of a border line allowed to differ
    # Thresholds (decide() only).
    enforce: bool = True
    max_border_fraction: float = Field(default=0.04, gt=0, le=1)


@register_stage
class BorderDetectStage(Stage[BorderDetectConfig]):
    op = "border_detect"
    Config = BorderDetectConfig
    default_resources = Resources(num_cpus=1, batch_size=32)
    decision_reasons = frozenset({"border"})
    threshold_fields = frozenset({"enforce", "max_border_fraction"})
    score_bounds = {"max_border_fraction": "max"}

    def output_fields(self) -> tuple[pa.Field, ...]:
        return tuple(pa.field(name, pa.float32()) for name in SIDES)

    def setup(self) -> None:
        cv2.setNumThreads(1)

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        found = [border_fractions(working_rgb(data, self.config.working_side), tolerance=self.config.tolerance,
                                  outlier_fraction=self.config.outlier_fraction)
                 for data in batch.column("image_bytes").to_pylist()]
        return {"border_top": [f.top for f in found], "border_bottom": [f.bottom for f in found],
                "border_left": [f.left for f in found], "border_right": [f.right for f in found]}

    def decide(self, scores: pa.Table) -> list[str | None]:
        if not self.config.enforce:
            return [None] * scores.num_rows
        threshold = stored_threshold(self.config.max_border_fraction, scores.schema.field(SIDES[0]).type)
        widest = [max(sides) for sides in zip(*(scores.column(name).to_pylist() for name in SIDES))]
        return ["border" if width >= threshold else None for width in widest]
