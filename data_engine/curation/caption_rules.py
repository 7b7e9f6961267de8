"""Keyword and pattern rules over captions, loaded from YAML (`data_engine/rules/caption_content.yaml`).

A rule file maps categories (collage, watermark, screenshot, ...) to English keywords (whole words,
case-insensitive), Chinese keywords (substrings: Chinese has no spaces between words) and regular
expressions (case-insensitive search). `CaptionRules.matches(text)` says which categories a caption hits
and, for each, the first rule that hit, so a reviewer sees why a row was flagged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_RULES = Path(__file__).resolve().parents[1] / "rules" / "caption_content.yaml"


class CaptionRulesError(ValueError):
    """A rule file cannot be used; the message names the file and the rule."""


class _Keywords(BaseModel):
    model_config = ConfigDict(extra="forbid")

    en: list[str] = Field(default_factory=list)
    zh: list[str] = Field(default_factory=list)


class _Category(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keywords: _Keywords = Field(default_factory=_Keywords)
    patterns: list[str] = Field(default_factory=list)

    @field_validator("patterns")
    @classmethod
    def _compilable(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} is not a regular expression ({exc})") from None
        return patterns


class _RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    categories: dict[str, _Category]


@dataclass(frozen=True)
class _CompiledCategory:
    name: str
    rules: tuple[tuple[str, re.Pattern[str]], ...]  # (rule as written, compiled matcher), in file order


class CaptionRules:
    def __init__(self, categories: tuple[_CompiledCategory, ...]) -> None:
        self.categories = categories

    @property
    def category_names(self) -> tuple[str, ...]:
        return tuple(category.name for category in self.categories)

    def matches(self, text: str) -> dict[str, str]:
        """category -> the first rule of that category found in `text`."""
        found = {}
        for category in self.categories:
            for written, matcher in category.rules:
                if matcher.search(text):
                    found[category.name] = written
                    break
        return found


def load_caption_rules(path: Path = DEFAULT_RULES) -> CaptionRules:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        parsed = _RuleFile.model_validate(data)
    except OSError as exc:
        raise CaptionRulesError(f"{path}: cannot read rule file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise CaptionRulesError(f"{path}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        raise CaptionRulesError(f"{path}: {location}: {first['msg'].removeprefix('Value error, ')}") from None
    return CaptionRules(tuple(_compile(name, category) for name, category in parsed.categories.items()))


def _compile(name: str, category: _Category) -> _CompiledCategory:
    rules = [(word, re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)) for word in category.keywords.en]
    rules += [(word, re.compile(re.escape(word))) for word in category.keywords.zh]
    rules += [(pattern, re.compile(pattern, re.IGNORECASE)) for pattern in category.patterns]
    return _CompiledCategory(name, tuple(rules))
