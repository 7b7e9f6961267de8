"""vlm_aesthetic: a 0-100 aesthetic score from a vision-language model (report 4.1.1: > 60 to continue
training, > 65 for annotation), through the captioning backends (`transformers`, `openai`, `vllm`).

One request per image with the versioned prompt (`prompt_version`, data_engine/prompts/vlm_aesthetic/), asking
for {"score": <integer 0..100>}: guided by the JSON schema on vLLM and on OpenAI-compatible servers
(`response_format`), and on every backend parsed strictly (`parse_score`), so a score is only ever what the
model answered. Columns: `vlm_aesthetic_score` (float32; empty unless scored), `vlm_aesthetic_status` (`scored`,
`unparseable`, `request_failed`, or `not_scored` when no backend is configured: the stage warns once and invents
nothing), `vlm_aesthetic_detail` (the refused output or the request error) and `vlm_aesthetic_prompt`
("<prompt set>@<sha256>").
Decision (from the stored columns, so redecide re-applies it): `vlm_aesthetic_below_threshold` unless the score
is above `min_score` (compared as float32; presets: 60, and 65 at stage3_1024p), `vlm_aesthetic_unparseable`,
`vlm_aesthetic_request_failed`; unscored rows are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
from pydantic import Field, model_validator

from data_engine.captioning.backends import BackendConfig, GenerationRequest
from data_engine.captioning.parsing import SCORE_SCHEMA, parse_score
from data_engine.captioning.prompts import load_prompt_set
from data_engine.curation.presets import PresetConfig
from data_engine.stage import Resources, Stage, register_stage, stored_threshold
from data_engine.stages.generation_base import GenerationStage, downscaled_image

_log = logging.getLogger(__name__)
SCORED, NOT_SCORED, UNPARSEABLE, REQUEST_FAILED = "scored", "not_scored", "unparseable", "request_failed"


class VlmAestheticConfig(PresetConfig):
    preset_op = "vlm_aesthetic"

    backend: BackendConfig | None = None  # None: nothing is scored (status not_scored)
    prompt_version: str = "vlm_aesthetic/v1"
    max_new_tokens: int = Field(default=16, gt=0)  # {"score": 100} is 6 tokens; room for a fence or a think tag
    image_max_side: int = Field(default=768, gt=0)  # images are downscaled to this long side before prompting
    # Threshold (decide() only): a scored row is kept when its score is above it.
    min_score: float = Field(default=60.0, ge=0, le=100)

    @model_validator(mode="after")
    def _prompt(self) -> VlmAestheticConfig:
        instruction = load_prompt_set(self.prompt_version).text("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(f"prompt_version: {self.prompt_version} has no instruction text")
        return self


@register_stage
class VlmAestheticStage(GenerationStage, Stage[VlmAestheticConfig]):
    op = "vlm_aesthetic"
    Config = VlmAestheticConfig
    default_resources = Resources(num_cpus=1, batch_size=16, concurrency=1)
    decision_reasons = frozenset({"vlm_aesthetic_below_threshold", "vlm_aesthetic_unparseable",
                                  "vlm_aesthetic_request_failed"})
    threshold_fields = frozenset({"min_score"})
    score_bounds = {"min_score": "min"}

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("vlm_aesthetic_score", pa.float32()), pa.field("vlm_aesthetic_status", pa.string()),
                pa.field("vlm_aesthetic_detail", pa.string()), pa.field("vlm_aesthetic_prompt", pa.string()))

    def preflight(self) -> None:
        if self.config.backend is not None:
            super().preflight()

    def setup(self) -> None:
        if self.config.backend is None:
            _log.warning("%s: no backend configured; vlm_aesthetic_score stays empty (%s)", self.name, NOT_SCORED)
            self.backend = None
            return
        super().setup()

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        n = batch.num_rows
        if self.backend is None:
            return {"vlm_aesthetic_score": [None] * n, "vlm_aesthetic_status": [NOT_SCORED] * n,
                    "vlm_aesthetic_detail": [None] * n, "vlm_aesthetic_prompt": [None] * n}
        instruction = self.prompts.text("instruction")
        generations = self.backend.generate([
            GenerationRequest(instruction, self.config.max_new_tokens,
                              downscaled_image(image, self.config.image_max_side), SCORE_SCHEMA)
            for image in batch.column("image_bytes").to_pylist()])
        results: list[tuple[float | None, str, str | None]] = []  # (score, status, detail) per row
        for generation in generations:
            if generation.error is not None:
                results.append((None, REQUEST_FAILED, generation.error))
                continue
            parsed = parse_score(generation.text or "")
            results.append((None, UNPARSEABLE, parsed.detail) if parsed.score is None
                           else (float(parsed.score), SCORED, None))
        return {"vlm_aesthetic_score": [r[0] for r in results], "vlm_aesthetic_status": [r[1] for r in results],
                "vlm_aesthetic_detail": [r[2] for r in results],
                "vlm_aesthetic_prompt": [f"{self.prompts.name}@{self.prompts.sha256}"] * n}

    def decide(self, scores: pa.Table) -> list[str | None]:
        threshold = stored_threshold(self.config.min_score, scores.schema.field("vlm_aesthetic_score").type)
        decisions: list[str | None] = []
        for score, status in zip(scores.column("vlm_aesthetic_score").to_pylist(),
                                 scores.column("vlm_aesthetic_status").to_pylist()):
            if status == UNPARSEABLE:
                decisions.append("vlm_aesthetic_unparseable")
            elif status == REQUEST_FAILED:
                decisions.append("vlm_aesthetic_request_failed")
            elif status == SCORED and not score > threshold:
                decisions.append("vlm_aesthetic_below_threshold")
            else:
                decisions.append(None)
        return decisions
