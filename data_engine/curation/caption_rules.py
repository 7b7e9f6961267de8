"""Keyword and pattern rules over captions, loaded from YAML (`data_engine/rules/caption_content.yaml`).

A rule file maps categories (collage, watermark, screenshot, ...) to
- English keywords: matched case-insensitively on Latin word boundaries only, so an English word next to
  Chinese characters still matches (网络meme, 一张screenshot); the words of a keyword may be joined by a
  space, a hyphen or nothing ("split screen" finds split-screen and splitscreen); the last word also matches
  its inflections (collage: collages, collaged; screenshot: screenshots);
- Chinese keywords: substrings (Chinese has no spaces between words);
- patterns: Python regular expressions, searched case-insensitively;
- exclude: phrases inside which a hit does not count (九宫格火锅 is a hot pot, not a photo grid);
- cues and combinations: a concept that no single word names ("a login page with a password field and a
  button" is a screenshot) is evidence from several vocabularies. `cues` names vocabularies of weak evidence
  (English words, Chinese substrings and patterns, matched as above); a `combinations` entry lists cue names
  that must all hit within one sentence for the category to match (a UI surface and a UI control, an
  on-image mark and where it sits on the image). `vetoes` names cues that, hit in a sentence, void the
  category's hits in that sentence (a watermark in a banknote is not a mark on the image).
A hit that the file's `negation` section says is negated does not count either: an English cue ("no",
"without", "not a") a few words before it in the same clause, an English suffix right after it
("watermark-free"), or a Chinese cue (没有, 无, 不是) a few characters before it in the same clause.

`CaptionRules.matches(text)` says which categories a caption hits and, for each, the first rule that hit (a
combination as `surface+control`), so a reviewer sees why a row was flagged. A rule file that cannot work
(bad YAML, an unknown key, an empty keyword, a pattern that matches the empty string, a combination naming
a cue the category lacks) is a one-line `CaptionRulesError` naming the file and the rule.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_RULES = Path(__file__).resolve().parents[1] / "rules" / "caption_content.yaml"
_LATIN = r"0-9A-Za-z\u00C0-\u024F"
_WORD_JOINER = r"[\s\-]?"
# A zero-width match anywhere in this text means the pattern can match nothing at all.
_PROBE = "A sample caption: 一张照片, 2 cats."
# Where a sentence ends, the scope of a combination: a full stop followed by a space (not the dot of
# www.site.com or 2.5) or a Chinese sentence mark.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])|\n+")


class CaptionRulesError(ValueError):
    """A rule file cannot be used; the message names the file and the rule."""


def _nonblank(values: list[str], what: str) -> list[str]:
    for value in values:
        if not value.strip():
            raise ValueError(f"{what} {value!r} is empty")
    return values


class _Keywords(BaseModel):
    model_config = ConfigDict(extra="forbid")

    en: list[str] = Field(default_factory=list)
    zh: list[str] = Field(default_factory=list)

    @field_validator("en", "zh")
    @classmethod
    def _no_empty_keyword(cls, words: list[str]) -> list[str]:
        return _nonblank(words, "keyword")


def _compilable(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a regular expression ({exc})") from None
        if any(match.end() == match.start() for match in compiled.finditer(_PROBE)):
            raise ValueError(f"pattern {pattern!r} matches the empty string")
    return patterns


class _Cue(_Keywords):
    """One vocabulary of weak evidence: words as keywords are, and patterns."""

    patterns: list[str] = Field(default_factory=list)

    @field_validator("patterns")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        return _compilable(patterns)


class _Category(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keywords: _Keywords = Field(default_factory=_Keywords)
    patterns: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    cues: dict[str, _Cue] = Field(default_factory=dict)
    combinations: list[list[str]] = Field(default_factory=list)
    vetoes: list[str] = Field(default_factory=list)

    @field_validator("patterns")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        return _compilable(patterns)

    @model_validator(mode="after")
    def _combinations_name_cues(self) -> _Category:
        for combination in self.combinations:
            if len(set(combination)) < 2:
                raise ValueError(f"combination {combination} needs two different cues (one cue alone is a keyword)")
            unknown = sorted(set(combination) - set(self.cues))
            if unknown:
                raise ValueError(f"combination {combination} names {unknown}, not cues of this category "
                                 f"({', '.join(self.cues) or 'none'})")
        unknown = sorted(set(self.vetoes) - set(self.cues))
        if unknown:
            raise ValueError(f"vetoes name {unknown}, not cues of this category ({', '.join(self.cues) or 'none'})")
        return self

    @field_validator("exclude")
    @classmethod
    def _no_empty_exclude(cls, phrases: list[str]) -> list[str]:
        return _nonblank(phrases, "exclude phrase")


class _Negation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    en_before: list[str] = Field(default_factory=list)  # cue words/phrases before the hit
    en_after: list[str] = Field(default_factory=list)  # suffixes right after the hit ("-free")
    en_window_words: int = Field(default=4, ge=0)
    en_clause_breaks: list[str] = Field(default_factory=list)  # words that end the negation's reach
    zh_before: list[str] = Field(default_factory=list)
    zh_window_chars: int = Field(default=6, ge=0)
    clause_punctuation: str = ".;:!?。；：！？，"

    @field_validator("en_before", "en_after", "en_clause_breaks", "zh_before")
    @classmethod
    def _no_empty_cue(cls, cues: list[str]) -> list[str]:
        return _nonblank(cues, "negation cue")


class _RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    negation: _Negation = Field(default_factory=_Negation)
    categories: dict[str, _Category]


@dataclass(frozen=True)
class _CompiledCategory:
    name: str
    rules: tuple[tuple[str, re.Pattern[str]], ...]  # (rule as written, compiled matcher), in file order
    exclude: re.Pattern[str] | None
    cues: dict[str, tuple[re.Pattern[str], ...]]  # cue name -> its matchers
    combinations: tuple[tuple[str, ...], ...]
    vetoes: tuple[re.Pattern[str], ...]  # the matchers of the veto cues


class _Negator:
    """Whether a hit at text[start:end] is negated (see the module docstring)."""

    def __init__(self, config: _Negation) -> None:
        self.config = config
        en_cues = "|".join(_english_phrase(cue) for cue in sorted(config.en_before, key=len, reverse=True))
        self.en_before = re.compile(rf"(?<![{_LATIN}])(?:{en_cues})(?![{_LATIN}])", re.IGNORECASE) if en_cues \
            else None
        breaks = "|".join(_english_phrase(word) for word in config.en_clause_breaks)
        self.en_break = re.compile(rf"(?<![{_LATIN}])(?:{breaks})(?![{_LATIN}])", re.IGNORECASE) if breaks else None
        self.en_after = tuple(suffix.casefold() for suffix in config.en_after)

    def clause_start(self, text: str, start: int) -> int:
        before = text[:start]
        return max((before.rfind(mark) + 1 for mark in self.config.clause_punctuation), default=0)

    def negated(self, text: str, start: int, end: int) -> bool:
        if any(text[end:end + len(suffix)].casefold() == suffix for suffix in self.en_after):
            return True
        clause = text[self.clause_start(text, start):start]
        if self.en_break is not None:
            last_break = None
            for last_break in self.en_break.finditer(clause):
                pass
            if last_break is not None:
                clause = clause[last_break.end():]
        words = clause.split()
        window = " ".join(words[-self.config.en_window_words:]) if self.config.en_window_words else ""
        if self.en_before is not None and window and self.en_before.search(window):
            return True
        near = clause[-self.config.zh_window_chars:] if self.config.zh_window_chars else ""
        return any(cue in near for cue in self.config.zh_before)


class CaptionRules:
    def __init__(self, categories: tuple[_CompiledCategory, ...], negation: _Negation, sha256: str) -> None:
        self.categories = categories
        self.negator = _Negator(negation)
        self.sha256 = sha256

    @property
    def category_names(self) -> tuple[str, ...]:
        return tuple(category.name for category in self.categories)

    def _counts(self, category: _CompiledCategory, text: str, match: re.Match[str], vetoed: bool = True) -> bool:
        if category.exclude is not None and any(
                excluded.start() <= match.start() and match.end() <= excluded.end()
                for excluded in category.exclude.finditer(text)):
            return False
        if self.negator.negated(text, match.start(), match.end()):
            return False
        return not (vetoed and category.vetoes and self._hits(category, _sentence(text, match.start()),
                                                                 *category.vetoes, vetoed=False))

    def _hits(self, category: _CompiledCategory, text: str, *matchers: re.Pattern[str], vetoed: bool = True) -> bool:
        return any(self._counts(category, text, match, vetoed)
                   for matcher in matchers for match in matcher.finditer(text))

    def _combination(self, category: _CompiledCategory, text: str) -> str | None:
        """The first combination whose cues all hit in one sentence of `text`, as `cue+cue`."""
        for sentence in _SENTENCE_END.split(text):
            hit = {name for name, matchers in category.cues.items() if self._hits(category, sentence, *matchers)}
            for combination in category.combinations:
                if hit.issuperset(combination):
                    return "+".join(combination)
        return None

    def matches(self, text: str) -> dict[str, str]:
        """category -> the first rule of that category with a hit in `text` that counts."""
        found = {}
        for category in self.categories:
            written = next((written for written, matcher in category.rules if self._hits(category, text, matcher)),
                           None) or self._combination(category, text)
            if written is not None:
                found[category.name] = written
        return found


def _sentence(text: str, position: int) -> str:
    """The sentence of `text` that holds `position` (sentences end where `_SENTENCE_END` says)."""
    start = 0
    for end in _SENTENCE_END.finditer(text):
        if end.start() >= position:
            return text[start:end.start()]
        start = end.end()
    return text[start:]


def _english_phrase(phrase: str) -> str:
    return _WORD_JOINER.join(re.escape(word) for word in phrase.split())


def _inflected(word: str) -> str:
    """A regex for `word` and its regular inflections (plural, past, -ing, the -e/-y spelling changes)."""
    if len(word) < 3 or not word[-1].isalpha():
        return re.escape(word)
    if word.endswith("e"):
        return re.escape(word[:-1]) + "(?:e|es|ed|ing)"
    if word.endswith("y") and word[-2] not in "aeiou":
        return re.escape(word[:-1]) + "(?:y|ies|ied|ying)"
    return re.escape(word) + "(?:s|es|ed|ing)?"


def english_keyword(keyword: str) -> re.Pattern[str]:
    *head, last = keyword.split()
    parts = [re.escape(word) for word in head] + [_inflected(last)]
    return re.compile(rf"(?<![{_LATIN}]){_WORD_JOINER.join(parts)}(?![{_LATIN}])", re.IGNORECASE)


def rules_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise CaptionRulesError(f"{path}: cannot read rule file ({exc.strerror})") from None


# Compiled rule files by (path, sha256): compiling a few hundred keyword patterns takes about a second, and a
# job validates its config more than once; an edited file has a new hash and is compiled again.
_COMPILED: dict[tuple[str, str], CaptionRules] = {}


def load_caption_rules(path: Path = DEFAULT_RULES) -> CaptionRules:
    sha256 = rules_sha256(path)
    key = (str(Path(path).resolve()), sha256)
    if key not in _COMPILED:
        _COMPILED[key] = _load(Path(path), sha256)
    return _COMPILED[key]


def _load(path: Path, sha256: str) -> CaptionRules:
    try:
        parsed = _RuleFile.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
    except yaml.YAMLError as exc:
        raise CaptionRulesError(f"{path}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "<root>"
        raise CaptionRulesError(f"{path}: {location}: {first['msg'].removeprefix('Value error, ')}") from None
    return CaptionRules(tuple(_compile(name, category) for name, category in parsed.categories.items()),
                        parsed.negation, sha256)


def _word_rules(words: _Keywords, patterns: list[str]) -> list[tuple[str, re.Pattern[str]]]:
    rules = [(word, english_keyword(word)) for word in words.en]
    rules += [(word, re.compile(re.escape(word))) for word in words.zh]
    return rules + [(pattern, re.compile(pattern, re.IGNORECASE)) for pattern in patterns]


def _compile(name: str, category: _Category) -> _CompiledCategory:
    exclude = re.compile("|".join(re.escape(phrase) for phrase in category.exclude), re.IGNORECASE) \
        if category.exclude else None
    cues = {cue: tuple(matcher for _, matcher in _word_rules(words, words.patterns))
            for cue, words in category.cues.items()}
    return _CompiledCategory(name, tuple(_word_rules(category.keywords, category.patterns)), exclude, cues,
                             tuple(tuple(combination) for combination in category.combinations),
                             tuple(matcher for cue in category.vetoes for matcher in cues[cue]))
