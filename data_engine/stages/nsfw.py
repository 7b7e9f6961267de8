"""nsfw: exclusion of explicit images with NudeNet's detector (its ONNX model ships inside the wheel).

Pluggable: `model_path` takes another detector of the same family (e.g. NudeNet's 640 px export) and
`inference_resolution` its input size. Scores: `nsfw_class_scores`, the highest detection score per
NudeNet class found (classes below NudeNet's own 0.2 floor are absent). Decision: reason `nsfw` when any
class in `nsfw_classes` scores at least `max_score`; both are thresholds, so the policy can change later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import pyarrow as pa
from pydantic import Field

from data_engine.curation.pixels import working_rgb
from data_engine.stage import Resources, Stage, StageConfig, register_stage, stored_threshold

EXPOSED_CLASSES = ("FEMALE_BREAST_EXPOSED", "FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED",
                   "BUTTOCKS_EXPOSED", "ANUS_EXPOSED")


class NsfwConfig(StageConfig):
    model_path: str | None = None  # None: the 320 px detector inside the nudenet package
    inference_resolution: int = Field(default=320, gt=0)
    working_side: int = Field(default=640, gt=0)  # decode size; the detector resizes to its own input
    # Thresholds (decide() only).
    nsfw_classes: tuple[str, ...] = EXPOSED_CLASSES
    max_score: float = Field(default=0.5, gt=0, le=1)


@register_stage
class NsfwStage(Stage[NsfwConfig]):
    op = "nsfw"
    Config = NsfwConfig
    uses_model = True
    default_resources = Resources(num_cpus=1, batch_size=16)
    decision_reasons = frozenset({"nsfw"})
    threshold_fields = frozenset({"nsfw_classes", "max_score"})

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("nsfw_class_scores", pa.map_(pa.string(), pa.float32())),)

    def setup(self) -> None:
        from nudenet import NudeDetector

        if self.config.model_path is not None and not Path(self.config.model_path).is_file():
            raise FileNotFoundError(f"nsfw.model_path: {self.config.model_path} does not exist")
        cv2.setNumThreads(1)
        self.detector = NudeDetector(model_path=self.config.model_path,
                                     inference_resolution=self.config.inference_resolution)

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        scores = []
        for data in batch.column("image_bytes").to_pylist():
            # NudeNet reads a 4-channel array as RGBA (3-channel arrays have no stated order there).
            rgba = cv2.cvtColor(working_rgb(data, self.config.working_side), cv2.COLOR_RGB2RGBA)
            best: dict[str, float] = {}
            for detection in self.detector.detect(rgba):
                best[detection["class"]] = max(best.get(detection["class"], 0.0), detection["score"])
            scores.append(sorted(best.items()))
        return {"nsfw_class_scores": scores}

    def decide(self, scores: pa.Table) -> list[str | None]:
        watched = set(self.config.nsfw_classes)
        threshold = stored_threshold(self.config.max_score, scores.schema.field("nsfw_class_scores").type)
        return ["nsfw" if any(name in watched and score >= threshold for name, score in pairs or ())
                else None for pairs in scores.column("nsfw_class_scores").to_pylist()]
