"""Edit curation (report 5.1.5): filters over edit triplets, each storing its scores beside the decision so
`python -m pipelines redecide` re-applies new thresholds without recomputing anything.

- `edit_change`: the share of pixels that change between source and target (a pixel changes when a channel
  differs by more than `pixel_tolerance` at the working size). Reject `edit_negligible_change` below
  `min_changed_fraction`.
- `edit_region`: for triplets that know where the edit happens (`edit_region` and/or `edit_mask`, grown by
  `margin_px`), the share of the pixels outside that area that change. Reject `edit_outside_region` above
  `max_outside_fraction`; rows without an area are scored `edit_area = none` and kept.
- `edit_quality`: blur and artifacts of the target against its own source, so a soft or synthetic domain is
  not held to a photograph's numbers: the ratio of target to source sharpness (variance of the Laplacian,
  `data_engine.ops.image_stats`) and the NIQE increase (`data_engine.ops.niqe`; undefined below two 96 px
  blocks, then not decided). Reject `edit_target_blurred` below `min_sharpness_ratio`, `edit_target_artifacts`
  above `max_niqe_increase`.
- `edit_intent_judge`: an optional VLM judge over the captioning backends; it sees source and target side by
  side and the instruction, and answers {"clarity": 0..100, "reason": "..."} (versioned prompt
  `edit_judge/v1`, parsed strictly). Reject `edit_intent_ambiguous` below `min_clarity`,
  `edit_judge_unparseable`, `edit_judge_request_failed`; without a backend rows say `not_checked`.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import jsonschema
import numpy as np
import pyarrow as pa
from PIL import Image
from pydantic import Field, model_validator

from data_engine.captioning.backends import BackendConfig, GenerationRequest
from data_engine.captioning.parsing import clean_generation
from data_engine.captioning.prompts import load_prompt_set
from data_engine.curation.pixels import resize_long_side
from data_engine.editing.triplet import decode_rgb, edit_area
from data_engine.ops.image_stats import basic_image_stats
from data_engine.ops.niqe import niqe_score
from data_engine.stage import Resources, Stage, StageConfig, register_stage, stored_threshold
from data_engine.stages.niqe_base import NiqeStage
from data_engine.stages.generation_base import GenerationStage

_log = logging.getLogger(__name__)


def _pair_at_working_size(row: dict[str, Any], working_side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Source and target RGB at the working size (the target fitted to the source's size first) and the edit
    area at that size (None when the row knows none)."""
    source, target = decode_rgb(row["source_image"]), decode_rgb(row["target_image"])
    if target.shape != source.shape:
        target = cv2.resize(target, (source.shape[1], source.shape[0]), interpolation=cv2.INTER_AREA)
    area = edit_area(row, source.shape[:2])
    source, target = resize_long_side(source, working_side), resize_long_side(target, working_side)
    if area is not None:
        area = cv2.resize(area.astype(np.uint8), (source.shape[1], source.shape[0]),
                          interpolation=cv2.INTER_NEAREST).astype(bool)
    return source, target, area


def changed_pixels(source: np.ndarray, target: np.ndarray, tolerance: int) -> np.ndarray:
    """HxW bool: pixels where some channel differs by more than `tolerance`."""
    return (np.abs(source.astype(np.int16) - target.astype(np.int16)) > tolerance).any(axis=2)


class _PixelConfig(StageConfig):
    working_side: int = Field(default=256, gt=0)
    pixel_tolerance: int = Field(default=12, ge=0, le=255)


# ---------------------------------------------------------------- negligible change


class EditChangeConfig(_PixelConfig):
    min_changed_fraction: float = Field(default=0.002, ge=0, le=1)  # threshold (decide() only)


@register_stage
class EditChangeStage(Stage[EditChangeConfig]):
    op = "edit_change"
    Config = EditChangeConfig
    default_resources = Resources(num_cpus=1, batch_size=32)
    decision_reasons = frozenset({"edit_negligible_change"})
    threshold_fields = frozenset({"min_changed_fraction"})

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("edit_changed_fraction", pa.float32()),)

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        fractions = []
        for row in batch.to_pylist():
            source, target, _ = _pair_at_working_size(row, self.config.working_side)
            fractions.append(float(changed_pixels(source, target, self.config.pixel_tolerance).mean()))
        return {"edit_changed_fraction": fractions}

    def decide(self, scores: pa.Table) -> list[str | None]:
        column = scores.column("edit_changed_fraction")
        threshold = stored_threshold(self.config.min_changed_fraction, column.type)
        return ["edit_negligible_change" if fraction < threshold else None for fraction in column.to_pylist()]


# ---------------------------------------------------------------- change outside the edited area


class EditRegionConfig(_PixelConfig):
    margin_px: int = Field(default=2, ge=0)  # the area is grown by this much at the working size
    max_outside_fraction: float = Field(default=0.01, ge=0, le=1)  # threshold (decide() only)


@register_stage
class EditRegionStage(Stage[EditRegionConfig]):
    op = "edit_region"
    Config = EditRegionConfig
    default_resources = Resources(num_cpus=1, batch_size=32)
    decision_reasons = frozenset({"edit_outside_region"})
    threshold_fields = frozenset({"max_outside_fraction"})

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("edit_outside_changed_fraction", pa.float32()),  # null: the row knows no edit area
                pa.field("edit_area", pa.string()))  # region / mask / region+mask / none

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        fractions, kinds = [], []
        for row in batch.to_pylist():
            kind = "+".join(name for name, column in (("region", "edit_region"), ("mask", "edit_mask"))
                            if row.get(column) is not None) or "none"
            kinds.append(kind)
            if kind == "none":
                fractions.append(None)
                continue
            source, target, area = _pair_at_working_size(row, self.config.working_side)
            if self.config.margin_px:
                side = 2 * self.config.margin_px + 1
                area = cv2.dilate(area.astype(np.uint8), np.ones((side, side), np.uint8)).astype(bool)
            outside = ~area
            changed = changed_pixels(source, target, self.config.pixel_tolerance)
            fractions.append(float(changed[outside].mean()) if outside.any() else 0.0)
        return {"edit_outside_changed_fraction": fractions, "edit_area": kinds}

    def decide(self, scores: pa.Table) -> list[str | None]:
        column = scores.column("edit_outside_changed_fraction")
        threshold = stored_threshold(self.config.max_outside_fraction, column.type)
        return ["edit_outside_region" if fraction is not None and fraction > threshold else None
                for fraction in column.to_pylist()]


# ---------------------------------------------------------------- blur and artifacts


class EditQualityConfig(StageConfig):
    working_side: int = Field(default=512, gt=0)
    niqe_params: str | None = None  # pristine-parameter file; None: $JOYAI_NIQE_PARAMS or the repo cache
    # Thresholds (decide() only).
    min_sharpness_ratio: float = Field(default=0.5, ge=0)  # target sharpness / source sharpness
    max_niqe_increase: float = Field(default=2.0)  # target NIQE - source NIQE (lower NIQE is better)


@register_stage
class EditQualityStage(NiqeStage[EditQualityConfig]):
    op = "edit_quality"
    Config = EditQualityConfig
    default_resources = Resources(num_cpus=1, batch_size=16)
    decision_reasons = frozenset({"edit_target_blurred", "edit_target_artifacts"})
    threshold_fields = frozenset({"min_sharpness_ratio", "max_niqe_increase"})
    score_bounds = {"min_sharpness_ratio": "min", "max_niqe_increase": "max"}
    SCORES = ("source_sharpness", "target_sharpness", "sharpness_ratio", "source_niqe", "target_niqe",
              "niqe_increase")

    def output_fields(self) -> tuple[pa.Field, ...]:
        return tuple(pa.field(name, pa.float32()) for name in self.SCORES)

    def processed_rows(self, table: pa.Table) -> list[bool]:
        return [value is not None for value in table.column("source_sharpness").to_pylist()]

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        columns: dict[str, list[float | None]] = {name: [] for name in self.SCORES}
        for row in batch.to_pylist():
            source, target, _ = _pair_at_working_size(row, self.config.working_side)
            sharpness = [basic_image_stats(image)["sharpness"] for image in (source, target)]
            niqe = [niqe_score(image, self.params) for image in (source, target)]
            niqe = [None if math.isnan(value) else value for value in niqe]
            values = {"source_sharpness": sharpness[0], "target_sharpness": sharpness[1],
                      "sharpness_ratio": sharpness[1] / sharpness[0] if sharpness[0] > 0 else None,
                      "source_niqe": niqe[0], "target_niqe": niqe[1],
                      "niqe_increase": niqe[1] - niqe[0] if None not in niqe else None}
            for name in self.SCORES:
                columns[name].append(values[name])
        return columns

    def decide(self, scores: pa.Table) -> list[str | None]:
        ratio_column, niqe_column = scores.column("sharpness_ratio"), scores.column("niqe_increase")
        min_ratio = stored_threshold(self.config.min_sharpness_ratio, ratio_column.type)
        max_increase = stored_threshold(self.config.max_niqe_increase, niqe_column.type)
        decisions: list[str | None] = []
        for ratio, increase in zip(ratio_column.to_pylist(), niqe_column.to_pylist()):
            if ratio is not None and ratio < min_ratio:
                decisions.append("edit_target_blurred")
            elif increase is not None and increase > max_increase:
                decisions.append("edit_target_artifacts")
            else:
                decisions.append(None)
        return decisions


# ---------------------------------------------------------------- intent ambiguity (optional VLM judge)

JUDGED, NOT_CHECKED, UNPARSEABLE, REQUEST_FAILED = "judged", "not_checked", "unparseable", "request_failed"
JUDGEMENT_SCHEMA: dict = {
    "type": "object",
    "properties": {"clarity": {"type": "integer", "minimum": 0, "maximum": 100}, "reason": {"type": "string"}},
    "required": ["clarity", "reason"],
    "additionalProperties": False,
}
_JUDGEMENT_VALIDATOR = jsonschema.Draft202012Validator(JUDGEMENT_SCHEMA)


def parse_judgement(raw: str) -> tuple[int | None, str]:
    """(clarity, reason) from the judge's answer, or (None, why it was refused): exactly one JSON object with
    an integer clarity 0..100 and a reason, after a think block and a code fence are removed."""
    text = clean_generation(raw)
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"{exc.msg} at char {exc.pos}: {text[:200]!r}"
    error = jsonschema.exceptions.best_match(_JUDGEMENT_VALIDATOR.iter_errors(value))
    if error is None and not isinstance(value["clarity"], int):  # JSON Schema counts 70.0 as an integer
        return None, f"clarity: {value['clarity']!r} is not an integer"
    if error is not None:
        return None, f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"[:200]
    return value["clarity"], value["reason"]


def side_by_side(row: dict[str, Any], max_side: int) -> bytes:
    """Source (left) and target (right) at the same height, as the judge sees them (PNG)."""
    images = [Image.fromarray(resize_long_side(decode_rgb(row[name]), max_side)) for name in ("source_image",
                                                                                              "target_image")]
    height = min(image.height for image in images)
    images = [image.resize((max(1, round(image.width * height / image.height)), height)) for image in images]
    canvas = Image.new("RGB", (sum(image.width for image in images) + 8, height), (255, 255, 255))
    canvas.paste(images[0], (0, 0))
    canvas.paste(images[1], (images[0].width + 8, 0))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


class EditIntentJudgeConfig(StageConfig):
    backend: BackendConfig | None = None  # None: nothing is judged (status not_checked)
    prompt_version: str = "edit_judge/v1"
    max_new_tokens: int = Field(default=96, gt=0)
    image_max_side: int = Field(default=512, gt=0)  # each image's long side in the side-by-side view
    min_clarity: float = Field(default=50.0, ge=0, le=100)  # threshold (decide() only)

    @model_validator(mode="after")
    def _prompt(self) -> EditIntentJudgeConfig:
        load_prompt_set(self.prompt_version).text("instruction")
        return self


@register_stage
class EditIntentJudgeStage(GenerationStage, Stage[EditIntentJudgeConfig]):
    op = "edit_intent_judge"
    Config = EditIntentJudgeConfig
    default_resources = Resources(num_cpus=1, batch_size=16, concurrency=1)
    decision_reasons = frozenset({"edit_intent_ambiguous", "edit_judge_unparseable", "edit_judge_request_failed"})
    threshold_fields = frozenset({"min_clarity"})
    score_bounds = {"min_clarity": "min"}

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("intent_clarity", pa.float32()), pa.field("intent_status", pa.string()),
                pa.field("intent_detail", pa.string()),  # the judge's reason, the refused output or the error
                pa.field("intent_prompt", pa.string()))

    def preflight(self) -> None:
        if self.config.backend is not None:
            super().preflight()

    def setup(self) -> None:
        if self.config.backend is None:
            _log.warning("%s: no backend configured; intents are not judged (%s)", self.name, NOT_CHECKED)
            self.backend = None
            return
        super().setup()

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        rows = batch.to_pylist()
        if self.backend is None:
            return {"intent_clarity": [None] * len(rows), "intent_status": [NOT_CHECKED] * len(rows),
                    "intent_detail": [None] * len(rows), "intent_prompt": [None] * len(rows)}
        template = self.prompts.text("instruction")
        generations = self.backend.generate([
            GenerationRequest(template.format(instruction=row["instruction"]), self.config.max_new_tokens,
                              side_by_side(row, self.config.image_max_side), JUDGEMENT_SCHEMA) for row in rows])
        results: list[tuple[float | None, str, str | None]] = []
        for generation in generations:
            if generation.error is not None:
                results.append((None, REQUEST_FAILED, generation.error))
                continue
            clarity, detail = parse_judgement(generation.text or "")
            results.append((None, UNPARSEABLE, detail) if clarity is None else (float(clarity), JUDGED, detail))
        return {"intent_clarity": [r[0] for r in results], "intent_status": [r[1] for r in results],
                "intent_detail": [r[2] for r in results],
                "intent_prompt": [f"{self.prompts.name}@{self.prompts.sha256}"] * len(rows)}

    def decide(self, scores: pa.Table) -> list[str | None]:
        threshold = stored_threshold(self.config.min_clarity, scores.schema.field("intent_clarity").type)
        decisions: list[str | None] = []
        for clarity, status in zip(scores.column("intent_clarity").to_pylist(),
                                   scores.column("intent_status").to_pylist()):
            decisions.append("edit_judge_unparseable" if status == UNPARSEABLE
                             else "edit_judge_request_failed" if status == REQUEST_FAILED
                             else "edit_intent_ambiguous" if status == JUDGED and clarity < threshold else None)
        return decisions
