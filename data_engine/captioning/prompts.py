"""Versioned prompt files under `data_engine/prompts/<family>/<version>.yaml`.

A prompt set is named `<family>/<version>` (e.g. `caption/v1`); its sha256 travels with the rows so a
shard says exactly which wording produced it. A wording change is a new version file, never an edit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

PROMPTS_ROOT = Path(__file__).resolve().parents[1] / "prompts"

CaptionType = Literal["short", "long", "extended_long", "structured"]
Language = Literal["en", "zh"]
CAPTION_TYPES: tuple[str, ...] = get_args(CaptionType)
LANGUAGES: tuple[str, ...] = get_args(Language)


class PromptFileError(ValueError):
    """A prompt set is missing or malformed; the message names the file and the key."""


def caption_key(caption_type: str, language: str) -> str:
    return f"{caption_type}/{language}"


def caption_key_language(key: str, field: str = "source") -> Language:
    """The language of a caption key (`short/en` -> `en`); ValueError naming `field` otherwise."""
    language = key.rpartition("/")[2]
    if language not in LANGUAGES:
        raise ValueError(f"{field}: {key!r} must end in /<language>, one of {list(LANGUAGES)}")
    return language  # type: ignore[return-value]


@dataclass(frozen=True)
class PromptSet:
    name: str
    sha256: str
    data: dict[str, Any]

    def text(self, *path: str) -> Any:
        node: Any = self.data
        for part in path:
            if not isinstance(node, dict) or part not in node:
                raise PromptFileError(f"prompt set {self.name}: no key {'.'.join(path)}")
            node = node[part]
        return node


def load_prompt_set(name: str, root: Path = PROMPTS_ROOT) -> PromptSet:
    family, _, version = name.partition("/")
    path = root / family / f"{version}.yaml"
    if not version or not path.is_file():
        available = sorted(f"{p.parent.name}/{p.stem}" for p in root.glob("*/*.yaml"))
        raise PromptFileError(f"prompt set {name!r} not found ({path}); available: {', '.join(available)}")
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:  # a job validating its stages reports this in one line, before Ray starts
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise PromptFileError(f"{path}:{where} invalid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(data, dict):
        raise PromptFileError(f"{path}: expected a mapping at the top level")
    return PromptSet(name, hashlib.sha256(raw).hexdigest(), data)


def caption_prompt(prompts: PromptSet, caption_type: str, language: str, ocr_lines: list[str]) -> str:
    """The caption instruction for one type and language; with OCR lines, the OCR hint is appended."""
    prompt = prompts.text("types", caption_type, language)
    if ocr_lines:
        listing = "; ".join(f'"{line}"' for line in ocr_lines)
        prompt = f"{prompt}\n{prompts.text('ocr_hint', language).format(ocr_text=listing)}"
    return prompt


def check_caption_prompts(prompts: PromptSet, types: tuple[str, ...], languages: tuple[str, ...]) -> None:
    for caption_type in types:
        for language in languages:
            prompts.text("types", caption_type, language)
            prompts.text("ocr_hint", language)
