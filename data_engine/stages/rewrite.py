"""rewrite_prompt: prompt enhancement (report 3.1.2) through the same backends as captioning.

A text-only LLM turns a concise caption (`source`, e.g. "short/en") into a detailed, stylistically varied
instruction with the same meaning, stored beside it in `captions` under `target` (e.g. "rewritten/en").
The style is drawn per row from the prompt file's list, seeded by the row id, so reruns reproduce it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
from pydantic import Field, model_validator

from data_engine.captioning.backends import BackendConfig, GenerationRequest, TransformersBackendConfig
from data_engine.captioning.parsing import clean_generation
from data_engine.captioning.prompts import caption_key_language, load_prompt_set
from data_engine.stage import REJECT_COLUMN, REJECT_DETAIL_COLUMN, Resources, Stage, StageConfig, register_stage
from data_engine.stages.generation_base import GenerationStage


class RewritePromptConfig(StageConfig):
    backend: BackendConfig = Field(default_factory=lambda: TransformersBackendConfig(model="tiny:qwen3vl"))
    prompt_version: str = "rewrite/v1"
    source: str = "short/en"  # caption key to rewrite; its language suffix picks the prompt language
    target: str = "rewritten/en"
    max_new_tokens: int = Field(default=256, gt=0)
    style_seed: int = 0

    @model_validator(mode="after")
    def _keys(self) -> RewritePromptConfig:
        language = caption_key_language(self.source)
        if self.target == self.source:
            raise ValueError("target: must differ from source, the original caption is kept")
        prompts = load_prompt_set(self.prompt_version)
        prompts.text("template", language)
        if not prompts.text("styles", language):
            raise ValueError(f"prompt_version: {self.prompt_version} has no styles for {language}")
        return self


@register_stage
class RewritePromptStage(GenerationStage, Stage[RewritePromptConfig]):
    op = "rewrite_prompt"
    Config = RewritePromptConfig
    default_resources = Resources(num_cpus=1, batch_size=16, concurrency=1)

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("rewrite_style", pa.string()),)

    def replaced_columns(self) -> tuple[str, ...]:
        return ("captions",)

    def setup(self) -> None:
        super().setup()
        self.language = caption_key_language(self.config.source)

    def style_for(self, row_id: str) -> str:
        styles = self.prompts.text("styles", self.language)
        digest = hashlib.sha256(f"{self.config.style_seed}\x00{row_id}".encode()).digest()
        return styles[int.from_bytes(digest[:8], "big") % len(styles)]

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        ids = batch.column("id").to_pylist()
        captions = [dict(c or []) for c in batch.column("captions").to_pylist()]
        styles = [self.style_for(row_id) for row_id in ids]
        template = self.prompts.text("template", self.language)
        todo = [i for i, c in enumerate(captions) if c.get(self.config.source)]
        generations = self.backend.generate([GenerationRequest(
            template.format(style=styles[i], text=captions[i][self.config.source]), self.config.max_new_tokens)
            for i in todo])
        rejects: list[str | None] = ["rewrite_source_missing"] * len(ids)
        details: list[str | None] = [f"no caption {self.config.source!r}"] * len(ids)
        for i, generation in zip(todo, generations):
            text = clean_generation(generation.text or "")
            if generation.error is not None:
                rejects[i], details[i] = "rewrite_request_failed", generation.error
            elif not text:
                rejects[i], details[i] = "rewrite_empty", f"model output {(generation.text or '')[:200]!r}"
            else:
                captions[i][self.config.target] = text
                rejects[i], details[i] = None, None
        return {"captions": [sorted(c.items()) for c in captions], "rewrite_style": styles,
                REJECT_COLUMN: rejects, REJECT_DETAIL_COLUMN: details}
