"""refine_instruction: edit instructions rewritten into explicit, executable prompts (report 5.1.6).

Prompt rewriting as the `rewrite_prompt` stage does it (`data_engine/stages/rewrite.py`: a text LLM through
the same captioning backends and generation-stage base), applied to a triplet's `instruction` in its own
`language`, with the versioned prompt `edit_refine/v1` asking for JSON {"instruction": "..."}. The original
is kept in `instruction_original`, and it stays the instruction when the answer cannot be used:
- malformed output (not exactly that JSON object, an empty instruction) or a failed request;
- a quoted text of the original (`Replace "OPEN" with "CLOSED"`) missing verbatim from the rewrite;
each recorded in `refine_status` = `kept_original` with the reason in `refine_detail`. Spatial edits are not
sent to the model: their instruction is the one spatial-edit template (camera moves: `data_engine/camera_move.py`,
which a viewpoint edit's instruction must parse back through; a mismatch is recorded), status `template`.
The stage rejects nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
from pydantic import Field, model_validator

from data_engine.camera_move import parse_camera_move
from data_engine.captioning.backends import BackendConfig, GenerationRequest, TransformersBackendConfig
from data_engine.captioning.ocr_check import quoted_spans
from data_engine.captioning.parsing import clean_generation
from data_engine.captioning.prompts import LANGUAGES, load_prompt_set
from data_engine.stage import Resources, Stage, StageConfig, register_stage
from data_engine.stages.generation_base import GenerationStage

REFINED, KEPT_ORIGINAL, TEMPLATE = "refined", "kept_original", "template"
REFINED_SCHEMA: dict = {"type": "object", "properties": {"instruction": {"type": "string"}},
                        "required": ["instruction"], "additionalProperties": False}


def parse_refined(raw: str, original: str) -> tuple[str | None, str | None]:
    """(the refined instruction, None) or (None, why the original is kept)."""
    text = clean_generation(raw)
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"unparseable: {exc.msg} at char {exc.pos}: {text[:200]!r}"
    if not isinstance(value, dict) or set(value) != {"instruction"} or not isinstance(value["instruction"], str):
        return None, f"unparseable: expected exactly {{\"instruction\": <string>}}, got {text[:200]!r}"
    refined = value["instruction"].strip()
    if not refined:
        return None, "empty: the rewritten instruction is empty"
    lost = [span for span in quoted_spans(original) if span not in quoted_spans(refined)]
    if lost:
        return None, f"quoted_text_changed: {lost} not kept verbatim in {refined[:200]!r}"
    return refined, None


class RefineInstructionConfig(StageConfig):
    backend: BackendConfig = Field(default_factory=lambda: TransformersBackendConfig(model="tiny:qwen3vl"))
    prompt_version: str = "edit_refine/v1"
    max_new_tokens: int = Field(default=128, gt=0)

    @model_validator(mode="after")
    def _prompt(self) -> RefineInstructionConfig:
        prompts = load_prompt_set(self.prompt_version)
        for language in LANGUAGES:
            prompts.text("template", language)
        return self


@register_stage
class RefineInstructionStage(GenerationStage, Stage[RefineInstructionConfig]):
    op = "refine_instruction"
    Config = RefineInstructionConfig
    default_resources = Resources(num_cpus=1, batch_size=16, concurrency=1)

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("instruction_original", pa.string()), pa.field("refine_status", pa.string()),
                pa.field("refine_detail", pa.string()), pa.field("refine_prompt", pa.string()))

    def replaced_columns(self) -> tuple[str, ...]:
        return ("instruction",)

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        rows = batch.to_pylist()
        instructions = [row["instruction"] for row in rows]
        statuses: list[str] = [KEPT_ORIGINAL] * len(rows)
        details: list[str | None] = [None] * len(rows)
        sent = []
        for number, row in enumerate(rows):
            if row["source_kind"] == "spatial_render":
                statuses[number] = TEMPLATE
                if row["task_category"] == "viewpoint":
                    details[number] = parse_camera_move(row["instruction"], row["language"]).reject_reason
            else:
                sent.append(number)
        generations = self.backend.generate([GenerationRequest(
            self.prompts.text("template", rows[n]["language"]).format(text=rows[n]["instruction"]),
            self.config.max_new_tokens, json_schema=REFINED_SCHEMA) for n in sent])
        for number, generation in zip(sent, generations):
            if generation.error is not None:
                details[number] = f"request_failed: {generation.error}"
                continue
            refined, details[number] = parse_refined(generation.text or "", rows[number]["instruction"])
            if refined is not None:
                instructions[number], statuses[number] = refined, REFINED
        return {"instruction": instructions, "instruction_original": [row["instruction"] for row in rows],
                "refine_status": statuses, "refine_detail": details,
                "refine_prompt": [f"{self.prompts.name}@{self.prompts.sha256}"] * len(rows)}
