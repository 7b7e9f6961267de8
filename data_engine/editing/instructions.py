"""video_pair_instruction: the edit instruction of a frame pair from a VLM (report 5.1.3), over the captioning
backends (`transformers`, `openai`, `vllm`), with the versioned prompt `video_pair_instruction/<version>`.

Per pair three requests: a short caption of each frame, and the instruction from both frames side by side
(left: before, right: after; one image, so every backend, single-image ones included, sees the same input).
The answer must be JSON {"instruction", "instruction_zh", "change_type", "confidence"} (guided where the
backend supports it, parsed strictly everywhere: `judge_instruction`). Processing rejects, with the model's
answer in `reject_detail`:
- `instruction_request_failed`: a request failed;
- `instruction_unparseable`: not that JSON (prose, a missing or empty field, a change type off the list);
- `no_visible_change`: change type `none`, or an instruction saying nothing changed;
- `instruction_ungrounded`: the instruction names a thing that neither frame's caption mentions (words of
  three letters or more outside the prompt file's `grounding_ignore` list, plural -s/-es ignored).
Decision (stored `confidence`, so redecide re-applies it): `low_confidence` below `min_confidence`.
Columns: `instruction`, `instruction_zh`, `change_type`, `confidence`, `source_caption`, `target_caption` and
`instruction_prompt` ("<prompt set>@<sha256>").
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema
import numpy as np
import pyarrow as pa
from PIL import Image
from pydantic import Field, model_validator

from data_engine.captioning.backends import BackendConfig, GenerationRequest
from data_engine.captioning.parsing import clean_generation, json_body, strict_json_object
from data_engine.captioning.prompts import PromptSet, load_prompt_set
from data_engine.stage import (REJECT_COLUMN, REJECT_DETAIL_COLUMN, Resources, Stage, StageConfig, register_stage,
                               stored_threshold)
from data_engine.stages.generation_base import GenerationStage, downscaled_image

CHANGE_TYPES = ("add", "remove", "replace", "move", "attribute", "pose", "lighting", "camera", "other", "none")
INSTRUCTION_SCHEMA: dict = {
    "type": "object",
    "properties": {"instruction": {"type": "string", "minLength": 1},
                   "instruction_zh": {"type": "string", "minLength": 1},
                   "change_type": {"enum": list(CHANGE_TYPES)},
                   "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
    "required": ["instruction", "instruction_zh", "change_type", "confidence"],
    "additionalProperties": False,
}
_VALIDATOR = jsonschema.Draft202012Validator(INSTRUCTION_SCHEMA)
_NO_CHANGE = re.compile(r"\b(no|nothing)\b.{0,20}\b(visible )?(change|changed|difference)", re.IGNORECASE)
_WORD = re.compile(r"[a-z]+")
_SEPARATOR_PIXELS = 4
_MAX_DETAIL = 300


@dataclass(frozen=True)
class JudgedInstruction:
    fields: dict[str, Any] | None  # instruction, instruction_zh, change_type, confidence; None when rejected
    reject: str | None = None
    detail: str | None = None


def _stem(word: str) -> str:
    for suffix in ("es", "s"):
        if len(word) > 3 + len(suffix) and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def ungrounded_words(instruction: str, captions: Sequence[str], ignore: frozenset[str]) -> list[str]:
    """Words of the instruction (three letters or more, not in `ignore`) that no caption contains."""
    known = {_stem(word) for caption in captions for word in _WORD.findall(caption.lower())}
    words = [word for word in _WORD.findall(instruction.lower()) if len(word) >= 3 and word not in ignore]
    return sorted({word for word in words if _stem(word) not in known})


def judge_instruction(raw: str, source_caption: str, target_caption: str, ignore: frozenset[str]) -> JudgedInstruction:
    """The model's answer checked: parsed strictly, not a "no change", and grounded in the two captions."""
    body = json_body(raw)
    value, detail = strict_json_object(raw, _VALIDATOR)
    if value is None:
        return JudgedInstruction(None, "instruction_unparseable", detail)
    if not all(value[key].strip() for key in ("instruction", "instruction_zh")):
        return JudgedInstruction(None, "instruction_unparseable", f"an instruction is blank: {body[:_MAX_DETAIL]!r}")
    value = {key: value[key].strip() if isinstance(value[key], str) else float(value[key]) for key in value}
    if value["change_type"] == "none" or _NO_CHANGE.search(value["instruction"]):
        return JudgedInstruction(None, "no_visible_change", body[:_MAX_DETAIL])
    absent = ungrounded_words(value["instruction"], (source_caption, target_caption), ignore)
    if absent:
        return JudgedInstruction(None, "instruction_ungrounded",
                                 f"{absent} in neither caption; instruction {value['instruction'][:_MAX_DETAIL]!r}")
    return JudgedInstruction(value)


def side_by_side(source_png: bytes, target_png: bytes, max_side: int) -> bytes:
    """Both frames at most `max_side` on their long side, left and right of a white bar, as one PNG."""
    frames = []
    for data in (source_png, target_png):
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB")
            scale = min(1.0, max_side / max(image.size))
            frames.append(np.asarray(image.resize((max(1, round(image.width * scale)),
                                                   max(1, round(image.height * scale))))))
    height = max(frame.shape[0] for frame in frames)
    canvas = np.full((height, sum(f.shape[1] for f in frames) + _SEPARATOR_PIXELS, 3), 255, np.uint8)
    canvas[: frames[0].shape[0], : frames[0].shape[1]] = frames[0]
    canvas[: frames[1].shape[0], frames[0].shape[1] + _SEPARATOR_PIXELS:] = frames[1]
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG")
    return buffer.getvalue()


def grounding_ignore(prompts: PromptSet) -> frozenset[str]:
    return frozenset(str(prompts.text("grounding_ignore")).lower().split())


class VideoPairInstructionConfig(StageConfig):
    backend: BackendConfig
    prompt_version: str = "video_pair_instruction/v1"
    caption_max_new_tokens: int = Field(default=48, gt=0)
    instruction_max_new_tokens: int = Field(default=160, gt=0)
    image_max_side: int = Field(default=512, gt=0)  # each frame's long side in the prompts
    # Threshold (decide() only).
    min_confidence: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _prompt(self) -> VideoPairInstructionConfig:
        prompts = load_prompt_set(self.prompt_version)
        for key in ("caption", "instruction"):
            if not str(prompts.text(key)).strip():
                raise ValueError(f"prompt_version: {self.prompt_version} has no {key} text")
        grounding_ignore(prompts)
        return self


@register_stage
class VideoPairInstructionStage(GenerationStage, Stage[VideoPairInstructionConfig]):
    op = "video_pair_instruction"
    Config = VideoPairInstructionConfig
    default_resources = Resources(num_cpus=1, batch_size=8, concurrency=1)
    decision_reasons = frozenset({"low_confidence"})
    threshold_fields = frozenset({"min_confidence"})
    score_bounds = {"min_confidence": "min"}

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("instruction", pa.string()), pa.field("instruction_zh", pa.string()),
                pa.field("change_type", pa.string()), pa.field("confidence", pa.float32()),
                pa.field("source_caption", pa.string()), pa.field("target_caption", pa.string()),
                pa.field("instruction_prompt", pa.string()))

    def setup(self) -> None:
        super().setup()
        self.ignore = grounding_ignore(self.prompts)

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        sources, targets = batch.column("source_image").to_pylist(), batch.column("target_image").to_pylist()
        side = self.config.image_max_side
        caption = self.prompts.text("caption")
        requests = [GenerationRequest(caption, self.config.caption_max_new_tokens, downscaled_image(image, side))
                    for image in sources + targets]
        requests += [GenerationRequest(self.prompts.text("instruction"), self.config.instruction_max_new_tokens,
                                       side_by_side(source, target, side), INSTRUCTION_SCHEMA)
                     for source, target in zip(sources, targets)]
        generations = self.backend.generate(requests)
        n = batch.num_rows
        out: dict[str, list[Any]] = {f.name: [None] * n for f in self.output_fields()}
        out[REJECT_COLUMN], out[REJECT_DETAIL_COLUMN] = [None] * n, [None] * n
        out["instruction_prompt"] = [f"{self.prompts.name}@{self.prompts.sha256}"] * n
        for row in range(n):
            answers = (generations[row], generations[n + row], generations[2 * n + row])
            failed = [g.error for g in answers if g.error is not None]
            if failed:
                out[REJECT_COLUMN][row], out[REJECT_DETAIL_COLUMN][row] = "instruction_request_failed", failed[0]
                continue
            source_caption, target_caption = (clean_generation(g.text or "") for g in answers[:2])
            out["source_caption"][row], out["target_caption"][row] = source_caption, target_caption
            judged = judge_instruction(answers[2].text or "", source_caption, target_caption, self.ignore)
            if judged.fields is None:
                out[REJECT_COLUMN][row], out[REJECT_DETAIL_COLUMN][row] = judged.reject, judged.detail
                continue
            for key, value in judged.fields.items():
                out[key][row] = value
        return out

    def decide(self, scores: pa.Table) -> list[str | None]:
        threshold = stored_threshold(self.config.min_confidence, scores.schema.field("confidence").type)
        return ["low_confidence" if confidence is not None and confidence < threshold else None
                for confidence in scores.column("confidence").to_pylist()]
