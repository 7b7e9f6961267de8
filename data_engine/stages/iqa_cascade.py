"""iqa_cascade: the report's in-house IQA operator (4.1.1): statistical and perceptual indicators, cascaded.

Scores (columns, all measured on the image resized to `working_side` on its long side, so scale-dependent
ones compare across resolutions): `iqa_brightness`, `iqa_entropy`, `iqa_saturation`, `iqa_sharpness`
(see `data_engine.ops.image_stats`) and `niqe` (`data_engine.ops.niqe`; null where undefined).
The perceptual group is NIQE plus the learned indicators `musiq` and `clipiqa` where the job scored them:
`learned_iqa` stages placed before this one write those columns, and a row whose learned score is empty
(no such stage, or `not_scored`) is judged by the indicators it has. Each perceptual indicator grades a row
as passing (NIQE <= `niqe_max`, MUSIQ >= `musiq_min`, CLIP-IQA >= `clipiqa_min`), borderline (within the
relaxed `niqe_recover_max` / `musiq_recover_min` / `clipiqa_recover_min`) or failing.

Decision (`classify_iqa`, in this order; every threshold is a config field that `redecide` may change):
1. extremely dark (brightness < `dark_brightness`) -> skipped, reason `too_dark`;
2. unconditional rejects, first match: NIQE above `niqe_reject` (`niqe_very_high`); severely abnormal
   statistics: brightness above `severe_max_brightness` (`overexposed`), entropy below `severe_min_entropy`
   (`low_entropy`), sharpness below `severe_min_sharpness` (`blurry`) or above `severe_max_sharpness`
   (`oversharpened`); NIQE undefined, i.e. fewer than two 96 px blocks at the working size
   (`niqe_undefined`); a learned score that is NaN (`musiq_nan`, `clipiqa_nan`: the model failed on the
   image, which says nothing about its quality);
3. statistics inside their normal ranges and every perceptual indicator passing -> accepted;
4. statistics normal, no perceptual indicator failing, some borderline, and saturation >=
   `recover_min_saturation` -> accepted as recovered;
5. otherwise rejected: `statistics` when a statistic is outside its normal range, else `perceptual`.
With `enforce: false` (preset stage1_208p) the scores are computed and nothing is rejected.
"Below" and "above" are strict and every comparison is made in float32, the type the scores are stored in
(`decide` rounds the thresholds to it), so a score of exactly a threshold is on the side the rule states.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from data_engine.curation.learned_iqa import LEARNED_IQA_METRICS
from data_engine.curation.pixels import working_rgb
from data_engine.curation.presets import PresetConfig
from data_engine.ops.image_stats import basic_image_stats
from data_engine.ops.niqe import niqe_score
from data_engine.stage import Resources, register_stage, stored_threshold
from data_engine.stages.niqe_base import NiqeStage

SCORE_COLUMNS = ("iqa_brightness", "iqa_entropy", "iqa_saturation", "iqa_sharpness", "niqe")
Verdict = Literal["accept", "recovered", "skip", "reject"]
Grade = Literal["pass", "borderline", "fail"]


class IqaCascadeConfig(PresetConfig):
    preset_op = "iqa_cascade"

    working_side: int = Field(default=512, ge=0)  # long side the indicators are measured at; 0: native
    niqe_params: str | None = None  # pristine-parameter file; None: $JOYAI_NIQE_PARAMS or the repo cache
    # Thresholds (decide() only).
    enforce: bool = True
    dark_brightness: float = Field(default=20.0, ge=0, le=255)
    niqe_reject: float = Field(default=10.0, gt=0)
    severe_max_brightness: float = Field(default=240.0, ge=0, le=255)
    severe_min_entropy: float = Field(default=3.0, ge=0, le=8)
    severe_min_sharpness: float = Field(default=5.0, ge=0)
    severe_max_sharpness: float = Field(default=8000.0, gt=0)
    min_brightness: float = Field(default=40.0, ge=0, le=255)
    max_brightness: float = Field(default=220.0, ge=0, le=255)
    min_entropy: float = Field(default=5.0, ge=0, le=8)
    min_saturation: float = Field(default=0.05, ge=0, le=1)
    min_sharpness: float = Field(default=40.0, ge=0)
    max_sharpness: float = Field(default=4000.0, gt=0)
    niqe_max: float = Field(default=6.0, gt=0)
    niqe_recover_max: float = Field(default=7.5, gt=0)
    # Learned indicators. Starting points on the published models' scales (MUSIQ-KonIQ: mean opinion score
    # about 0..100, other MUSIQ heads have other scales; CLIP-IQA: 0..1), to be tuned on a labelled sample
    # with `pipelines redecide`.
    musiq_min: float = 40.0
    musiq_recover_min: float = 30.0
    clipiqa_min: float = Field(default=0.4, ge=0, le=1)
    clipiqa_recover_min: float = Field(default=0.3, ge=0, le=1)
    recover_min_saturation: float = Field(default=0.25, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> IqaCascadeConfig:
        pairs = [("niqe_max", "niqe_recover_max"), ("niqe_recover_max", "niqe_reject"),
                 ("min_brightness", "max_brightness"), ("max_brightness", "severe_max_brightness"),
                 ("severe_min_entropy", "min_entropy"), ("severe_min_sharpness", "min_sharpness"),
                 ("min_sharpness", "max_sharpness"), ("max_sharpness", "severe_max_sharpness"),
                 ("dark_brightness", "min_brightness"), ("musiq_recover_min", "musiq_min"),
                 ("clipiqa_recover_min", "clipiqa_min")]
        for low, high in pairs:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} ({getattr(self, low)}) must not exceed {high} ({getattr(self, high)})")
        return self


@dataclass(frozen=True)
class IqaVerdict:
    verdict: Verdict
    rule: str  # the reject reason, or "accept" / "recovered"

    @property
    def reject_reason(self) -> str | None:
        return self.rule if self.verdict in ("skip", "reject") else None


def _grade(value: float, accept: float, recover: float, higher_is_better: bool) -> Grade:
    if not higher_is_better:  # compare NIQE-like scores as their negatives
        value, accept, recover = -value, -accept, -recover
    return "pass" if value >= accept else "borderline" if value >= recover else "fail"


def perceptual_grades(scores: Mapping[str, float | None], config: IqaCascadeConfig) -> list[Grade]:
    """NIQE's grade, then those of the learned indicators the row has a score for."""
    grades = [_grade(scores["niqe"], config.niqe_max, config.niqe_recover_max, higher_is_better=False)]
    for metric in LEARNED_IQA_METRICS:  # column names; thresholds `<metric>_min`, `<metric>_recover_min`
        if scores.get(metric) is not None:
            accept, recover = getattr(config, f"{metric}_min"), getattr(config, f"{metric}_recover_min")
            grades.append(_grade(scores[metric], accept, recover, higher_is_better=True))
    return grades


def classify_iqa(scores: Mapping[str, float | None], config: IqaCascadeConfig) -> IqaVerdict:
    """The cascade's verdict for one row of scores (keys `SCORE_COLUMNS`, and `LEARNED_IQA_METRICS` where
    scored)."""
    brightness, entropy = scores["iqa_brightness"], scores["iqa_entropy"]
    saturation, sharpness, niqe = scores["iqa_saturation"], scores["iqa_sharpness"], scores["niqe"]
    if brightness < config.dark_brightness:
        return IqaVerdict("skip", "too_dark")
    niqe_defined = niqe is not None and not math.isnan(niqe)
    severe = [("niqe_very_high", niqe_defined and niqe > config.niqe_reject),
              ("overexposed", brightness > config.severe_max_brightness),
              ("low_entropy", entropy < config.severe_min_entropy),
              ("blurry", sharpness < config.severe_min_sharpness),
              ("oversharpened", sharpness > config.severe_max_sharpness),
              ("niqe_undefined", not niqe_defined)]
    severe += [(f"{metric}_nan", scores.get(metric) is not None and math.isnan(scores[metric]))
               for metric in LEARNED_IQA_METRICS]
    for rule, failed in severe:
        if failed:
            return IqaVerdict("reject", rule)
    statistics_normal = (config.min_brightness <= brightness <= config.max_brightness
                         and entropy >= config.min_entropy and saturation >= config.min_saturation
                         and config.min_sharpness <= sharpness <= config.max_sharpness)
    if not statistics_normal:
        return IqaVerdict("reject", "statistics")
    grades = perceptual_grades(scores, config)
    if all(grade == "pass" for grade in grades):
        return IqaVerdict("accept", "accept")
    if "fail" not in grades and saturation >= config.recover_min_saturation:
        return IqaVerdict("recovered", "recovered")
    return IqaVerdict("reject", "perceptual")


@register_stage
class IqaCascadeStage(NiqeStage[IqaCascadeConfig]):
    op = "iqa_cascade"
    Config = IqaCascadeConfig
    default_resources = Resources(num_cpus=1, batch_size=16)
    decision_reasons = frozenset({"too_dark", "niqe_undefined", "niqe_very_high", "overexposed", "low_entropy",
                                  "blurry", "oversharpened", "statistics", "perceptual",
                                  *(f"{metric}_nan" for metric in LEARNED_IQA_METRICS)})
    threshold_fields = frozenset(set(IqaCascadeConfig.model_fields) - {"preset", "working_side", "niqe_params"})
    score_bounds = {"dark_brightness": "min", "niqe_reject": "max", "severe_max_brightness": "max",
                    "severe_min_entropy": "min", "severe_min_sharpness": "min", "severe_max_sharpness": "max",
                    "min_brightness": "min", "max_brightness": "max", "min_entropy": "min", "min_saturation": "min",
                    "min_sharpness": "min", "max_sharpness": "max", "niqe_max": "max", "niqe_recover_max": "max",
                    "musiq_min": "min", "musiq_recover_min": "min", "clipiqa_min": "min",
                    "clipiqa_recover_min": "min", "recover_min_saturation": "min"}

    def output_fields(self) -> tuple[pa.Field, ...]:
        return tuple(pa.field(name, pa.float32()) for name in SCORE_COLUMNS)

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        rows = [self._scores(data) for data in batch.column("image_bytes").to_pylist()]
        return {name: [row[name] for row in rows] for name in SCORE_COLUMNS}

    def _scores(self, data: bytes) -> dict[str, float | None]:
        rgb = working_rgb(data, self.config.working_side)
        stats = basic_image_stats(rgb)
        niqe = niqe_score(rgb, self.params)
        return {"iqa_brightness": stats["brightness"], "iqa_entropy": stats["entropy"],
                "iqa_saturation": stats["saturation"], "iqa_sharpness": stats["sharpness"],
                "niqe": None if math.isnan(niqe) else niqe}

    def decide(self, scores: pa.Table) -> list[str | None]:
        if not self.config.enforce:
            return [None] * scores.num_rows
        learned = [column for column in LEARNED_IQA_METRICS if column in scores.column_names]
        rows = scores.select([*SCORE_COLUMNS, *learned]).to_pylist()
        # Every score column is float32 (output_fields; learned_iqa's too): thresholds as that type stores them.
        score_type = scores.schema.field(SCORE_COLUMNS[0]).type
        config = self.config.model_copy(update={name: stored_threshold(getattr(self.config, name), score_type)
                                                for name in self.score_bounds})
        return [classify_iqa(row, config).reject_reason for row in rows]
