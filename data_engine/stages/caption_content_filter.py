"""caption_content_filter: flag collages, watermarks, screenshots, memes and empty images from captions.

The report filters on the VLM captions it already has instead of running image classifiers. Rules come
from a YAML file (`rules_path`, default `data_engine/rules/caption_content.yaml`), so keywords change
without code changes; the file is loaded and checked when the job loads, and its sha256 is recorded in the
stage config (so in the manifest and the config hash). Columns: `content_categories` (every category any
caption of the row matched) and `content_matches` (``category: rule`` for each, the first rule that hit).
Decision: reason `caption_content` when a matched category is in `reject_categories`. Rows without a
caption are not flagged (nothing was checked; their columns stay null).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import Field, model_validator

from data_engine.curation.caption_rules import DEFAULT_RULES, CaptionRulesError, load_caption_rules
from data_engine.stage import Resources, Stage, StageConfig, register_stage


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


@register_stage
class CaptionContentFilterStage(Stage[CaptionContentFilterConfig]):
    op = "caption_content_filter"
    Config = CaptionContentFilterConfig
    default_resources = Resources(num_cpus=0.5, batch_size=512)
    decision_reasons = frozenset({"caption_content"})
    threshold_fields = frozenset({"reject_categories"})

    def output_fields(self) -> tuple[pa.Field, ...]:
        return (pa.field("content_categories", pa.list_(pa.string())),
                pa.field("content_matches", pa.list_(pa.string())))

    def setup(self) -> None:
        path = Path(self.config.rules_path or DEFAULT_RULES)
        self.rules = load_caption_rules(path)
        if self.rules.sha256 != self.config.rules_sha256:
            raise CaptionRulesError(f"{path} changed after the job was loaded "
                                    f"(sha256 {self.rules.sha256[:12]}, expected {str(self.config.rules_sha256)[:12]})")

    def process_batch(self, batch: pa.Table) -> Mapping[str, Sequence[Any]]:
        if self.config.caption_column not in batch.column_names:
            raise KeyError(f"caption_column {self.config.caption_column!r} is not a column of this job's rows")
        categories, matches = [], []
        for value in batch.column(self.config.caption_column).to_pylist():
            found: dict[str, str] = {}  # a row without caption text is checked too: nothing flagged
            for text in _caption_texts(value):
                for category, rule in self.rules.matches(text).items():
                    found.setdefault(category, rule)
            categories.append(sorted(found))
            matches.append([f"{category}: {found[category]}" for category in sorted(found)])
        return {"content_categories": categories, "content_matches": matches}

    def decide(self, scores: pa.Table) -> list[str | None]:
        rejecting = set(self.config.reject_categories)
        return ["caption_content" if flagged and rejecting.intersection(flagged) else None
                for flagged in scores.column("content_categories").to_pylist()]


def _caption_texts(value: Any) -> list[str]:
    """The caption strings of one cell: a string, or the values of a map (pyarrow gives key/value pairs)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    return [text for _, text in value if text]
