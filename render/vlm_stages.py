"""VLM stages over rendered images, through the captioning backends (data_engine/captioning):

- `recognisability_check` (asset preprocessing, report 5.1.4): shows the model a rendered view of the asset
  with the category it is meant to be and asks yes or no (prompt set `recognisability/v1`). The answer is
  stored as data (`recognisability`: yes / no / unparseable / request_failed / not_checked, the raw reply
  beside it); `decide()` rejects "no" as `not_recognisable`, and answers that are not a yes or a no.
- `dense_caption` (multi-view corpus, report 4.1.5): fills the multiview sample's `dense_caption` from the
  collage or the main view with the caption prompts and parser every caption stage uses.

Without a configured backend neither stage invents anything: rows say `not_checked` (no dense caption,
`not_captioned` in its error column) and the stage logs a warning on the driver and in every worker.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from data_engine.captioning.backends import BackendConfig, GenerationRequest
from data_engine.captioning.parsing import CAPTION_REJECTS, REJECT_REQUEST_FAILED, clean_generation, parse_caption
from data_engine.captioning.prompts import Language, caption_prompt, check_caption_prompts, load_prompt_set
from data_engine.stage import Resources, Stage, StageConfig, register_stage
from data_engine.stages.generation_base import GenerationStage, downscaled_image

_log = logging.getLogger(__name__)

RenderedImage = Literal["main_view", "collage", "source_image"]
# Columns each choice reads: a multiview sample's main view or collage, an edit triplet's source image.
_IMAGE_COLUMNS: dict[str, tuple[str, ...]] = {"main_view": ("views", "main_view_index"), "collage": ("collage",),
                                              "source_image": ("source_image",)}
_MAX_ANSWER_CHARS = 200
# Stripped from both ends of a yes/no reply before matching ("Yes.", "**No**", "“是”。").
_EDGE_PUNCTUATION = " \t\r\n\"'`*.,!?:;()[]{}。，！？：；“”‘’（）「」"


def rendered_image_bytes(batch: pa.Table, image: RenderedImage, stage_name: str) -> list[bytes]:
    missing = [name for name in _IMAGE_COLUMNS[image] if name not in batch.column_names]
    if missing:
        raise ValueError(f"{stage_name}.image: {image!r} reads columns {missing}, which these rows do not have")
    if image == "main_view":
        return [views[index]["bytes"] for views, index in
                zip(batch.column("views").to_pylist(), batch.column("main_view_index").to_pylist())]
    return [ref["bytes"] for ref in batch.column(image).to_pylist()]


def parse_yes_no(raw: str, affirmative: Sequence[str], negative: Sequence[str]) -> bool | None:
    """True / False when the reply starts with one of the answer words (longest first, so "不是" is not
    "是"), None otherwise. A Latin word must end there ("not" is not "no")."""
    text = clean_generation(raw).lower().strip(_EDGE_PUNCTUATION)
    candidates = sorted([(word.lower(), True) for word in affirmative] + [(word.lower(), False) for word in negative],
                        key=lambda pair: -len(pair[0]))
    for word, answer in candidates:
        rest = text[len(word):] if text.startswith(word) else None
        if rest is not None and (not rest or not word.isascii() or not rest[0].isalnum()):
            return answer
    return None


class RenderedImageVlmConfig(StageConfig):
    backend: BackendConfig | None = None  # None: the stage records that it did not run, and warns
    image: RenderedImage = "main_view"
    image_max_side: int = Field(default=768, gt=0)  # downscaled to this long side before prompting
    language: Language = "en"


class RenderedImageVlmStage(GenerationStage):
    """Prompts a backend with one rendered image per row; a stage without a backend passes rows through."""

    default_resources = Resources(num_cpus=1, batch_size=8, concurrency=1)
    without_backend: ClassVar[str]  # what rows hold when no backend is configured, for the warning

    def _backend_missing(self) -> bool:
        """Whether no backend is configured; says so, on the driver (preflight) and in each worker (setup)."""
        if self.config.backend is None:
            _log.warning("%s: no backend configured; %s", self.name, self.without_backend)
        return self.config.backend is None

    def preflight(self) -> None:
        if not self._backend_missing():
            super().preflight()

    def setup(self) -> None:
        self.backend = None
        if not self._backend_missing():
            super().setup()

    def requests(self, batch: pa.Table, prompts: list[str], max_tokens: int) -> list[GenerationRequest]:
        images = rendered_image_bytes(batch, self.config.image, self.name)
        return [GenerationRequest(prompt, max_tokens, downscaled_image(image, self.config.image_max_side))
                for prompt, image in zip(prompts, images)]

    def prompts_used(self) -> str:
        return f"{self.prompts.name}@{self.prompts.sha256}"


class RecognisabilityCheckConfig(RenderedImageVlmConfig):
    prompt_version: str = "recognisability/v1"
    max_new_tokens: int = Field(default=4, gt=0)  # a one-word answer

    @model_validator(mode="after")
    def _prompts(self) -> RecognisabilityCheckConfig:
        prompts = load_prompt_set(self.prompt_version)
        prompts.text("question", self.language)
        for key in ("affirmative", "negative"):
            if not prompts.text("answers", key):
                raise ValueError(f"prompt_version: {self.prompt_version} lists no {key} answers")
        return self


RECOGNISED, NOT_RECOGNISED, UNPARSEABLE, REQUEST_FAILED, NOT_CHECKED = (
    "yes", "no", "unparseable", "request_failed", "not_checked")
_REJECT_FOR_STATUS = {NOT_RECOGNISED: "not_recognisable", UNPARSEABLE: "recognisability_unparseable",
                      REQUEST_FAILED: "recognisability_request_failed"}


@register_stage
class RecognisabilityCheckStage(RenderedImageVlmStage, Stage[RecognisabilityCheckConfig]):
    op = "recognisability_check"
    Config = RecognisabilityCheckConfig
    decision_reasons = frozenset(_REJECT_FOR_STATUS.values())
    without_backend = f"rows are marked recognisability={NOT_CHECKED} and none is rejected for it"

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("recognisability", pa.string()),  # yes / no / unparseable / request_failed / not_checked
                pa.field("recognisability_answer", pa.string()),  # the reply as the model gave it (or the error)
                pa.field("recognisability_prompts", pa.string()))  # "<prompt set>@<sha256>"

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        if self.backend is None:
            return {"recognisability": [NOT_CHECKED] * batch.num_rows}
        if "asset_category" not in batch.column_names:
            raise ValueError(f"{self.name} needs the column asset_category (written by the render stages)")
        question = self.prompts.text("question", self.config.language)
        prompts = [question.format(category=category) for category in batch.column("asset_category").to_pylist()]
        generations = self.backend.generate(self.requests(batch, prompts, self.config.max_new_tokens))
        affirmative, negative = self.prompts.text("answers", "affirmative"), self.prompts.text("answers", "negative")
        statuses, answers = [], []
        for generation in generations:
            if generation.error is not None:
                statuses.append(REQUEST_FAILED)
                answers.append(generation.error[:_MAX_ANSWER_CHARS])
                continue
            verdict = parse_yes_no(generation.text or "", affirmative, negative)
            statuses.append(UNPARSEABLE if verdict is None else RECOGNISED if verdict else NOT_RECOGNISED)
            answers.append((generation.text or "")[:_MAX_ANSWER_CHARS])
        return {"recognisability": statuses, "recognisability_answer": answers,
                "recognisability_prompts": [self.prompts_used()] * batch.num_rows}

    def decide(self, scores: pa.Table) -> list[str | None]:
        return [_REJECT_FOR_STATUS.get(status) for status in scores.column("recognisability").to_pylist()]


NOT_CAPTIONED = "not_captioned"


class DenseCaptionConfig(RenderedImageVlmConfig):
    image: RenderedImage = "collage"
    prompt_version: str = "caption/v1"
    # trainer/latents.py feeds the dense caption to training as "extended_long/en".
    caption_type: Literal["short", "long", "extended_long"] = "extended_long"
    max_new_tokens: int = Field(default=768, gt=0)
    required: bool = True  # threshold: reject a row whose caption failed (a missing backend never rejects)

    @model_validator(mode="after")
    def _prompts(self) -> DenseCaptionConfig:
        check_caption_prompts(load_prompt_set(self.prompt_version), (self.caption_type,), (self.language,))
        return self


@register_stage
class DenseCaptionStage(RenderedImageVlmStage, Stage[DenseCaptionConfig]):
    op = "dense_caption"
    Config = DenseCaptionConfig
    decision_reasons = CAPTION_REJECTS
    threshold_fields = frozenset({"required"})
    without_backend = f"dense_caption stays empty, dense_caption_error says {NOT_CAPTIONED}"

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("dense_caption_error", pa.string()),  # "<reject code>: <detail>" when no caption
                pa.field("dense_caption_prompts", pa.string()))  # "<prompt set>@<sha256>"

    def replaced_columns(self) -> tuple[str, ...]:
        return ("dense_caption",)

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        if self.backend is None:
            return {"dense_caption_error": [f"{NOT_CAPTIONED}: {self.name}.backend is not configured"] * batch.num_rows}
        prompt = caption_prompt(self.prompts, self.config.caption_type, self.config.language, [])
        generations = self.backend.generate(self.requests(batch, [prompt] * batch.num_rows, self.config.max_new_tokens))
        captions, errors = [], []
        for generation in generations:
            if generation.error is not None:
                captions.append(None)
                errors.append(f"{REJECT_REQUEST_FAILED}: {generation.error}")
                continue
            parsed = parse_caption(self.config.caption_type, generation.text or "")
            captions.append(parsed.text)
            errors.append(None if parsed.reject is None else f"{parsed.reject}: {parsed.detail}")
        return {"dense_caption": captions, "dense_caption_error": errors,
                "dense_caption_prompts": [self.prompts_used()] * batch.num_rows}

    def decide(self, scores: pa.Table) -> list[str | None]:
        if not self.config.required:
            return [None] * scores.num_rows
        errors = scores.column("dense_caption_error").to_pylist()
        codes = [error.split(":", 1)[0] if error else None for error in errors]
        return [code if code in CAPTION_REJECTS else None for code in codes]  # not_captioned never rejects
