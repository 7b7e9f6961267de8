"""caption_content_filter: flag collages, watermarks, screenshots, memes and empty images from captions.

The report filters on the VLM captions it already has instead of running image classifiers. Rules come
from a YAML file (`rules_path`, default `data_engine/rules/caption_content.yaml`), so keywords change
without code changes; the file is loaded and checked when the job loads, and its sha256 is recorded in the
stage config (so in the manifest and the config hash). Columns: `content_categories` (every category any
caption of the row matched) and `content_matches` (``category: rule`` for each, the first rule that hit).
Decision: reason `caption_content` when a matched category is in `reject_categories`. Rows without a
caption are not flagged (nothing was checked; their columns stay null).

Optional judge (`judge`, off by default): a model behind a captioning backend (`transformers`, `openai`,
`vllm`) reads the row's captions (and the image with `send_image`) with the versioned prompt
(data_engine/prompts/caption_content_judge/) and answers one boolean per judged category as JSON, guided
where the backend supports it and parsed strictly (`parse_category_flags`). Extra columns then:
`content_judge_categories` (what it answered true), `content_judge_status` (`judged`, `unparseable`,
`request_failed`, `not_judged` for a row without captions), `content_judge_detail` (the refused output or the
request error), `content_judge_prompt` ("<prompt set>@<sha256>"). A row is flagged for the categories of the
rules and of the judge together; an answer that cannot be read is `caption_content_judge_unparseable` and a
failed request `caption_content_judge_request_failed`, never a silent pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from data_engine.captioning.backends import BackendConfig, GenerationRequest, check_backend_available, make_backend
from data_engine.captioning.parsing import category_flags_schema, parse_category_flags
from data_engine.captioning.prompts import load_prompt_set
from data_engine.curation.caption_rules import DEFAULT_RULES, CaptionRulesError, load_caption_rules
from data_engine.stage import Resources, Stage, StageConfig, StageUnavailable, register_stage
from data_engine.stages.generation_base import downscaled_image

JUDGED, NOT_JUDGED, UNPARSEABLE, REQUEST_FAILED = "judged", "not_judged", "unparseable", "request_failed"


class ContentJudgeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: BackendConfig
    prompt_version: str = "caption_content_judge/v1"
    # Which categories the judge answers (each needs a definition in the prompt set).
    categories: tuple[str, ...] = ("collage", "watermark", "screenshot", "meme")
    max_new_tokens: int = Field(default=64, gt=0)  # four booleans as JSON are ~30 tokens; room for a fence
    send_image: bool = False  # True: a VLM judge that also sees the image (the row needs image_bytes)
    image_max_side: int = Field(default=768, gt=0)

    @model_validator(mode="after")
    def _prompt_defines_every_category(self) -> ContentJudgeConfig:
        if not self.categories:
            raise ValueError("judge.categories is empty")
        prompts = load_prompt_set(self.prompt_version)
        definitions = prompts.text("definitions")
        missing = [category for category in self.categories if category not in definitions]
        if missing:
            raise ValueError(f"judge.categories {missing}: {self.prompt_version} defines only {sorted(definitions)}")
        try:
            prompts.text("instruction").format(definitions="", captions="", keys="")
        except (KeyError, IndexError) as exc:
            raise ValueError(f"{self.prompt_version}: instruction has an unknown placeholder {exc}") from None
        return self


class CaptionContentFilterConfig(StageConfig):
    # None: the rules shipped with the code (DEFAULT_RULES), found wherever the stage runs; an absolute
    # default would name the submitting machine's checkout, which cluster nodes do not have.
    rules_path: str | None = None
    # The rules file's sha256, filled in when the job loads, so the manifest's config (and the config hash
    # that guards a resumed output directory) names the exact rules; a given value must match the file.
    rules_sha256: str | None = None
    # A string column, or a map column ("<type>/<lang>" -> text, as in the caption schema): all values.
    caption_column: str = "captions"
    # Threshold (decide() only): which flagged categories reject.
    reject_categories: tuple[str, ...] = Field(
        default=("collage", "watermark", "screenshot", "meme", "low_information"))
    # None: the rules alone decide (no model is loaded).
    judge: ContentJudgeConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _pin_rules(cls, data: Any) -> Any:
        """Load the rules now: a malformed file fails `pipelines validate` and `run` before Ray starts."""
        if not isinstance(data, dict):
            return data
        path = Path(data.get("rules_path") or DEFAULT_RULES)
        try:
            rules = load_caption_rules(path)
        except CaptionRulesError as exc:
            raise ValueError(str(exc)) from None
        pinned = data.get("rules_sha256")
        if pinned is not None and pinned != rules.sha256:
            raise ValueError(f"{path} has changed since rules_sha256 {pinned[:12]} was recorded "
                             f"(now {rules.sha256[:12]}); restore it or drop rules_sha256 to use the new rules")
        unknown = sorted(set(data.get("reject_categories") or ()) - set(rules.category_names))
        if unknown:
            raise ValueError(f"reject_categories {unknown} are not categories of {path} "
                             f"({', '.join(rules.category_names)})")
        return data | {"rules_sha256": rules.sha256}

    @model_validator(mode="after")
    def _judge_answers_rule_categories(self) -> CaptionContentFilterConfig:
        if self.judge is not None:
            names = load_caption_rules(Path(self.rules_path or DEFAULT_RULES)).category_names
            unknown = sorted(set(self.judge.categories) - set(names))
            if unknown:
                raise ValueError(f"judge.categories {unknown} are not categories of the rules ({', '.join(names)})")
        return self


_JUDGE_FIELDS = (pa.field("content_judge_categories", pa.list_(pa.string())),
                 pa.field("content_judge_status", pa.string()), pa.field("content_judge_detail", pa.string()),
                 pa.field("content_judge_prompt", pa.string()))


@register_stage
class CaptionContentFilterStage(Stage[CaptionContentFilterConfig]):
    op = "caption_content_filter"
    Config = CaptionContentFilterConfig
    default_resources = Resources(num_cpus=0.5, batch_size=512)
    decision_reasons = frozenset({"caption_content", "caption_content_judge_unparseable",
                                  "caption_content_judge_request_failed"})
    threshold_fields = frozenset({"reject_categories"})

    @property
    def uses_model(self) -> bool:  # type: ignore[override]  # an actor pool only when a judge is configured
        return self.config.judge is not None

    def output_fields(self) -> tuple[pa.Field, ...]:
        rules = (pa.field("content_categories", pa.list_(pa.string())),
                 pa.field("content_matches", pa.list_(pa.string())))
        return rules + _JUDGE_FIELDS if self.config.judge is not None else rules

    def preflight(self) -> None:
        problem = check_backend_available(self.config.judge.backend) if self.config.judge is not None else None
        if problem:
            raise StageUnavailable(f"{self.name}: {problem}")

    def setup(self) -> None:
        path = Path(self.config.rules_path or DEFAULT_RULES)
        self.rules = load_caption_rules(path)
        if self.rules.sha256 != self.config.rules_sha256:
            raise CaptionRulesError(f"{path} changed after the job was loaded "
                                    f"(sha256 {self.rules.sha256[:12]}, expected {str(self.config.rules_sha256)[:12]})")
        if self.config.judge is not None:
            self.judge = _ContentJudge(self.config.judge)

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        if self.config.caption_column not in batch.column_names:
            raise KeyError(f"caption_column {self.config.caption_column!r} is not a column of this job's rows")
        categories, matches = [], []
        texts = [_caption_texts(value) for value in batch.column(self.config.caption_column).to_pylist()]
        for row_texts in texts:
            found: dict[str, str] = {}  # a row without caption text is checked too: nothing flagged
            for text in row_texts:
                for category, rule in self.rules.matches(text).items():
                    found.setdefault(category, rule)
            categories.append(sorted(found))
            matches.append([f"{category}: {found[category]}" for category in sorted(found)])
        columns: dict[str, Sequence[Any]] = {"content_categories": categories, "content_matches": matches}
        if self.config.judge is not None:
            images = batch.column("image_bytes").to_pylist() if self.config.judge.send_image else [None] * len(texts)
            columns |= self.judge.judge(texts, images)
        return columns

    def decide(self, scores: pa.Table) -> list[str | None]:
        rejecting = set(self.config.reject_categories)
        judged = (zip(scores.column("content_judge_categories").to_pylist(),
                      scores.column("content_judge_status").to_pylist())
                  if "content_judge_status" in scores.column_names else [(None, None)] * scores.num_rows)
        decisions: list[str | None] = []
        for flagged, (judge_flagged, status) in zip(scores.column("content_categories").to_pylist(), judged):
            if status == UNPARSEABLE:
                decisions.append("caption_content_judge_unparseable")
            elif status == REQUEST_FAILED:
                decisions.append("caption_content_judge_request_failed")
            else:
                either = set(flagged or ()) | set(judge_flagged or ())
                decisions.append("caption_content" if rejecting.intersection(either) else None)
        return decisions


class _ContentJudge:
    """The judge of one worker: its prompt set and backend, loaded once, and one request per captioned row."""

    def __init__(self, config: ContentJudgeConfig) -> None:
        self.config = config
        self.prompts = load_prompt_set(config.prompt_version)
        self.backend = make_backend(config.backend)
        self.schema = category_flags_schema(config.categories)
        definitions = self.prompts.text("definitions")
        self.definitions = "\n".join(definitions[category] for category in config.categories)

    def prompt(self, captions: list[str]) -> str:
        return self.prompts.text("instruction").format(
            definitions=self.definitions, captions="\n".join(f"- {text}" for text in captions),
            keys=", ".join(self.config.categories))

    def judge(self, texts: list[list[str]], images: list[bytes | None]) -> dict[str, list[Any]]:
        asked = [i for i, captions in enumerate(texts) if captions]
        generations = self.backend.generate([
            GenerationRequest(self.prompt(texts[i]), self.config.max_new_tokens,
                              downscaled_image(images[i], self.config.image_max_side) if images[i] else None,
                              self.schema) for i in asked])
        n = len(texts)
        columns: dict[str, list[Any]] = {"content_judge_categories": [None] * n,
                                         "content_judge_status": [NOT_JUDGED] * n,
                                         "content_judge_detail": [None] * n,
                                         "content_judge_prompt": [f"{self.prompts.name}@{self.prompts.sha256}"] * n}
        for i, generation in zip(asked, generations):
            if generation.error is not None:
                columns["content_judge_status"][i], columns["content_judge_detail"][i] = REQUEST_FAILED, generation.error
                continue
            parsed = parse_category_flags(generation.text or "", self.config.categories)
            if parsed.categories is None:
                columns["content_judge_status"][i], columns["content_judge_detail"][i] = UNPARSEABLE, parsed.detail
            else:
                columns["content_judge_status"][i] = JUDGED
                columns["content_judge_categories"][i] = list(parsed.categories)
        return columns


def _caption_texts(value: Any) -> list[str]:
    """The caption strings of one cell: a string, or the values of a map (pyarrow gives key/value pairs)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    return [text for _, text in value if text]
