"""caption_image: every caption type in every language per image, through a pluggable backend.

All requested captions of a row are stored in the `captions` map ("<type>/<lang>" -> text); a caption the
parser refused is absent there and its reject code and detail sit in `caption_errors` under the same key.
`decide()` rejects a row when a caption in `required` failed, so which captions must be valid can be
re-decided later without generating again. `caption_sampling` records the training-time sampling
probabilities over type and language (report 4.1.2), as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
from pydantic import Field, model_validator

from data_engine.captioning.backends import BackendConfig, GenerationRequest, TransformersBackendConfig
from data_engine.captioning.parsing import (CAPTION_REJECTS, REJECT_REQUEST_FAILED, STRUCTURED_CAPTION_SCHEMA,
                                            parse_caption)
from data_engine.captioning.prompts import (CAPTION_TYPES, LANGUAGES, CaptionType, Language, caption_key,
                                            caption_prompt, check_caption_prompts, load_prompt_set)
from data_engine.stage import Resources, Stage, StageConfig, register_stage
from data_engine.stages.generation_base import GenerationStage, downscaled_image

OCR_LINES_COLUMN = "ocr_lines"  # written by the ocr_text stage: list of {text, score, box}


class CaptionSampling(StageConfig):
    """Training-time probabilities of drawing each caption type and language (each group sums to 1)."""

    types: dict[CaptionType, float] = Field(default_factory=lambda: {"short": 0.2, "long": 0.3,
                                                                     "extended_long": 0.3, "structured": 0.2})
    languages: dict[Language, float] = Field(default_factory=lambda: {"en": 0.5, "zh": 0.5})

    @model_validator(mode="after")
    def _probabilities(self) -> CaptionSampling:
        for name, group in (("types", self.types), ("languages", self.languages)):
            if any(p < 0 for p in group.values()) or abs(sum(group.values()) - 1.0) > 1e-6:
                raise ValueError(f"{name}: probabilities must be non-negative and sum to 1, got {group}")
        return self


class CaptionImageConfig(StageConfig):
    backend: BackendConfig = Field(default_factory=lambda: TransformersBackendConfig(model="tiny:qwen3vl"))
    prompt_version: str = "caption/v2"
    types: tuple[CaptionType, ...] = CAPTION_TYPES
    languages: tuple[Language, ...] = LANGUAGES
    max_new_tokens: dict[CaptionType, int] = Field(default_factory=lambda: {
        "short": 64, "long": 256, "extended_long": 768, "structured": 384})
    image_max_side: int = Field(default=768, gt=0)  # images are downscaled to this long side before prompting
    ocr_aware: bool = False  # add the row's OCR lines (column ocr_lines) to the prompts
    sampling: CaptionSampling = Field(default_factory=CaptionSampling)
    # Threshold: caption keys ("<type>/<lang>") that must be valid to keep the row; None means all requested.
    required: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CaptionImageConfig:
        missing = [t for t in self.types if t not in self.max_new_tokens]
        if missing:
            raise ValueError(f"max_new_tokens: no budget for caption types {missing}")
        sampled = {t for t, p in self.sampling.types.items() if p > 0} - set(self.types)
        sampled |= {lang for lang, p in self.sampling.languages.items() if p > 0} - set(self.languages)
        if sampled:
            raise ValueError(f"sampling: gives probability to {sorted(sampled)}, which are not generated")
        requested = {caption_key(t, lang) for t in self.types for lang in self.languages}
        unknown = sorted(set(self.required or ()) - requested)
        if unknown:
            raise ValueError(f"required: {unknown} are not among the requested captions {sorted(requested)}")
        check_caption_prompts(load_prompt_set(self.prompt_version), self.types, self.languages)
        return self




def ocr_texts(lines: list[dict[str, Any]] | None) -> list[str]:
    return [line["text"] for line in lines or [] if line.get("text")]




@register_stage
class CaptionImageStage(GenerationStage, Stage[CaptionImageConfig]):
    op = "caption_image"
    Config = CaptionImageConfig
    default_resources = Resources(num_cpus=1, batch_size=8, concurrency=1)
    decision_reasons = CAPTION_REJECTS
    threshold_fields = frozenset({"required"})

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("caption_errors", pa.map_(pa.string(), pa.string())),
                pa.field("caption_prompts", pa.string()))  # "<prompt set>@<sha256>"

    def replaced_columns(self) -> tuple[str, ...]:
        return ("captions", "caption_sampling")

    def caption_keys(self) -> list[tuple[str, str]]:
        return [(t, lang) for t in self.config.types for lang in self.config.languages]

    def requests_for_row(self, image: bytes, ocr_lines: list[str]) -> list[GenerationRequest]:
        sent = downscaled_image(image, self.config.image_max_side)
        return [GenerationRequest(
            prompt=caption_prompt(self.prompts, caption_type, language, ocr_lines),
            max_tokens=self.config.max_new_tokens[caption_type], image=sent,
            json_schema=STRUCTURED_CAPTION_SCHEMA if caption_type == "structured" else None)
            for caption_type, language in self.caption_keys()]

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        images = batch.column("image_bytes").to_pylist()
        if self.config.ocr_aware and OCR_LINES_COLUMN not in batch.column_names:
            raise ValueError(f"{self.name}.ocr_aware needs the column {OCR_LINES_COLUMN}: run ocr_text before it")
        ocr = (batch.column(OCR_LINES_COLUMN).to_pylist() if self.config.ocr_aware else [None] * batch.num_rows)
        requests = [r for image, lines in zip(images, ocr) for r in self.requests_for_row(image, ocr_texts(lines))]
        generations = self.backend.generate(requests)
        keys = self.caption_keys()
        captions, errors = [], []
        for row in range(batch.num_rows):
            row_captions, row_errors = [], []
            for (caption_type, language), generation in zip(keys, generations[row * len(keys):(row + 1) * len(keys)]):
                key = caption_key(caption_type, language)
                if generation.error is not None:
                    row_errors.append((key, f"{REJECT_REQUEST_FAILED}: {generation.error}"))
                    continue
                parsed = parse_caption(caption_type, generation.text or "")
                if parsed.reject is None:
                    row_captions.append((key, parsed.text))
                else:
                    row_errors.append((key, f"{parsed.reject}: {parsed.detail}"))
            captions.append(row_captions)
            errors.append(row_errors)
        sampling = json.dumps(self.config.sampling.model_dump(mode="json"), sort_keys=True)
        prompts = f"{self.prompts.name}@{self.prompts.sha256}"
        return {"captions": captions, "caption_errors": errors, "caption_sampling": [sampling] * batch.num_rows,
                "caption_prompts": [prompts] * batch.num_rows}

    def decide(self, scores: pa.Table) -> list[str | None]:
        required = self.config.required
        decisions: list[str | None] = []
        for row_errors in scores.column("caption_errors").to_pylist():
            failed = [(key, message) for key, message in row_errors or []
                      if required is None or key in required]
            decisions.append(failed[0][1].split(":", 1)[0] if failed else None)
        return decisions
