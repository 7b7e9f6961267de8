"""Pairs (report 5.1.3): two sampled frames of ONE shot, adjacent or a short interval apart, as an edit candidate.

Pairing (in the `video_files` reader, which holds the frames): for every sharp frame of a shot, the frames
`strides` sampled positions later in the same shot, up to `max_interval_s` apart. A pair never spans a cut.
Score: `change_score`, the fraction of pixels whose grey level moved by more than `pixel_delta` (0..255)
between the two frames at their stored size: 0 for identical frames, near 1 for two unrelated images, and
robust to codec noise, which moves few pixels by more than a few levels.
Decision (`video_pair_change`, from the stored score, so `redecide` re-applies it): `negligible_change` when
the score is at most `min_change` (nothing to edit), `change_too_large` when it is at least `max_change`
(a new scene or a camera move, not an edit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from data_engine.editing.shots import SampledFrame
from data_engine.stage import Resources, Stage, StageConfig, register_stage, stored_threshold


class PairingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    strides: tuple[int, ...] = (1,)  # 1: adjacent sampled frames; 2, 3, ...: short intervals
    max_interval_s: float = Field(default=2.0, gt=0)
    pixel_delta: int = Field(default=24, ge=0, le=255)  # grey levels a pixel must move to count as changed

    @model_validator(mode="after")
    def _strides(self) -> PairingConfig:
        if not self.strides or min(self.strides) < 1 or len(set(self.strides)) != len(self.strides):
            raise ValueError(f"strides: distinct positive integers, got {list(self.strides)}")
        return self


def change_score(source_grey: np.ndarray, target_grey: np.ndarray, pixel_delta: int) -> float:
    """Fraction of pixels whose grey level differs by more than `pixel_delta` (frames of equal size)."""
    difference = np.abs(source_grey.astype(np.int16) - target_grey.astype(np.int16))
    return float(np.count_nonzero(difference > pixel_delta)) / difference.size


def shot_pairs(frames: Sequence[SampledFrame], config: PairingConfig) -> list[tuple[SampledFrame, SampledFrame]]:
    """Candidate (source, target) pairs among the frames of one shot (sorted by time)."""
    shots = {frame.shot_id for frame in frames}
    if len(shots) > 1:
        raise ValueError(f"shot_pairs: frames of shots {sorted(shots)} given together; pairs stay in one shot")
    return [(frames[i], frames[i + stride]) for i in range(len(frames)) for stride in config.strides
            if i + stride < len(frames)
            and frames[i + stride].timestamp_s - frames[i].timestamp_s <= config.max_interval_s]


class VideoPairChangeConfig(StageConfig):
    # Thresholds (decide() only) on `change_score`.
    min_change: float = Field(default=0.002, ge=0, le=1)
    max_change: float = Field(default=0.5, gt=0, le=1)

    @model_validator(mode="after")
    def _order(self) -> VideoPairChangeConfig:
        if self.min_change >= self.max_change:
            raise ValueError(f"min_change {self.min_change} must be below max_change {self.max_change}")
        return self


@register_stage
class VideoPairChangeStage(Stage[VideoPairChangeConfig]):
    """Keeps pairs whose change is visible and small enough to be an edit; the score comes from the reader."""

    op = "video_pair_change"
    Config = VideoPairChangeConfig
    default_resources = Resources(num_cpus=1, batch_size=256)
    decision_reasons = frozenset({"negligible_change", "change_too_large"})
    threshold_fields = frozenset({"min_change", "max_change"})
    score_bounds = {"min_change": "min", "max_change": "max"}

    def output_fields(self) -> tuple[pa.Field, ...]:
        return ()

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        return {}

    def decide(self, scores: pa.Table) -> list[str | None]:
        column_type = scores.schema.field("change_score").type
        low = stored_threshold(self.config.min_change, column_type)
        high = stored_threshold(self.config.max_change, column_type)
        return ["negligible_change" if score <= low else "change_too_large" if score >= high else None
                for score in scores.column("change_score").to_pylist()]
