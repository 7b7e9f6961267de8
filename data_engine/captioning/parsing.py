"""Turn raw model output into a stored caption or a reject code, identically for every backend.

Reject codes are short and stable (they become manifest histogram keys); the detail says what was seen.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import jsonschema

STRUCTURED_KEYS = ("subject", "background", "style", "composition", "visible_text")
# The structured caption of report 4.1.2: exactly five string fields. Also sent to backends that support
# guided decoding, so the server cannot produce anything else.
STRUCTURED_CAPTION_SCHEMA: dict = {
    "type": "object",
    "properties": {key: {"type": "string"} for key in STRUCTURED_KEYS},
    "required": list(STRUCTURED_KEYS),
    "additionalProperties": False,
}
_VALIDATOR = jsonschema.Draft202012Validator(STRUCTURED_CAPTION_SCHEMA)
# Reasoning models may emit a think block before the answer; it is not part of the caption.
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)
_CODE_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL | re.IGNORECASE)
# A short or long caption that is a JSON object or array (or the start of one) is not a caption.
_JSON_START = re.compile(r'^\s*(?:\{\s*["}]|\[\s*[\[{"\]])')
# visible_text is "" when the image shows no text; every other field must say something.
_MAY_BE_EMPTY = frozenset({"visible_text"})
_MAX_DETAIL = 200

REJECT_EMPTY = "caption_empty"
REJECT_JSON_INVALID = "caption_json_invalid"
REJECT_JSON_SCHEMA = "caption_json_schema"
REJECT_JSON_DUPLICATE_KEY = "caption_json_duplicate_key"
REJECT_JSON_EMPTY_FIELD = "caption_json_empty_field"
REJECT_UNEXPECTED_JSON = "caption_unexpected_json"
REJECT_REQUEST_FAILED = "caption_request_failed"
STRUCTURED_REJECTS = frozenset({REJECT_JSON_INVALID, REJECT_JSON_SCHEMA, REJECT_JSON_DUPLICATE_KEY,
                                REJECT_JSON_EMPTY_FIELD})
CAPTION_REJECTS = STRUCTURED_REJECTS | frozenset({REJECT_EMPTY, REJECT_UNEXPECTED_JSON, REJECT_REQUEST_FAILED})


@dataclass(frozen=True)
class ParsedCaption:
    text: str | None  # the caption to store (structured: canonical JSON), None when rejected
    reject: str | None = None
    detail: str | None = None


class _DuplicateKey(ValueError):
    pass


def _refuse_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """json.loads keeps the last of two equal keys; a caption that says two things for one field is refused."""
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def clean_generation(raw: str) -> str:
    return _THINK_BLOCK.sub("", raw).strip()


def json_body(raw: str) -> str:
    """The text a JSON answer is parsed from: the output without a think block and without a code fence."""
    text = clean_generation(raw)
    fenced = _CODE_FENCE.match(text)
    return fenced.group(1) if fenced else text


def parse_caption(caption_type: str, raw: str) -> ParsedCaption:
    text = clean_generation(raw)
    if not text:
        return ParsedCaption(None, REJECT_EMPTY, f"model output {raw[:_MAX_DETAIL]!r} is empty once cleaned")
    fenced = _CODE_FENCE.match(text)
    body = fenced.group(1) if fenced else text
    if caption_type != "structured":
        if fenced or _JSON_START.match(body):
            return ParsedCaption(None, REJECT_UNEXPECTED_JSON,
                                 f"a {caption_type} caption must be prose, got {text[:_MAX_DETAIL]!r}")
        return ParsedCaption(text)
    try:
        value = json.loads(body, object_pairs_hook=_refuse_duplicate_keys)
    except json.JSONDecodeError as exc:
        return ParsedCaption(None, REJECT_JSON_INVALID, f"{exc.msg} at char {exc.pos}: {body[:_MAX_DETAIL]!r}")
    except _DuplicateKey as exc:
        return ParsedCaption(None, REJECT_JSON_DUPLICATE_KEY, f"key {exc} appears twice: {body[:_MAX_DETAIL]!r}")
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "<root>"
        return ParsedCaption(None, REJECT_JSON_SCHEMA, f"{where}: {error.message}"[:_MAX_DETAIL])
    blank = [key for key in STRUCTURED_KEYS if not value[key].strip() and (key not in _MAY_BE_EMPTY or value[key])]
    if blank:
        return ParsedCaption(None, REJECT_JSON_EMPTY_FIELD,
                             f"fields {blank} are empty or whitespace only"[:_MAX_DETAIL])
    return ParsedCaption(json.dumps(value, ensure_ascii=False, sort_keys=True))


# The VLM aesthetic score (report 4.1.1): one integer 0..100, nothing else. Sent for guided decoding too.
SCORE_SCHEMA: dict = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 100}},
    "required": ["score"],
    "additionalProperties": False,
}
_SCORE_VALIDATOR = jsonschema.Draft202012Validator(SCORE_SCHEMA)


@dataclass(frozen=True)
class ParsedScore:
    score: int | None  # None when the output is refused; `detail` then says why
    detail: str | None = None


def strict_json_object(raw: str, validator: jsonschema.Draft202012Validator) -> tuple[dict | None, str | None]:
    """(value, None) when, after a think block and a code fence are removed, the output is exactly one JSON
    value that `validator` accepts (no prose around it, no repeated key); else (None, what was wrong)."""
    body = json_body(raw)
    try:
        value = json.loads(body, object_pairs_hook=_refuse_duplicate_keys)
    except json.JSONDecodeError as exc:
        return None, f"{exc.msg} at char {exc.pos}: {body[:_MAX_DETAIL]!r}"
    except _DuplicateKey as exc:
        return None, f"key {exc} appears twice: {body[:_MAX_DETAIL]!r}"
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "<root>"
        return None, f"{where}: {error.message}"[:_MAX_DETAIL]
    return value, None


def parse_score(raw: str) -> ParsedScore:
    """Strict: the output must be exactly one JSON object {"score": integer 0..100} (no prose around it, no
    other key, no repeated key, no boolean, no 72.5)."""
    value, detail = strict_json_object(raw, _SCORE_VALIDATOR)
    if value is None:
        return ParsedScore(None, detail)
    if not isinstance(value["score"], int):  # JSON Schema counts 72.0 as an integer
        return ParsedScore(None, f"score: {value['score']!r} is not an integer")
    return ParsedScore(value["score"])


def category_flags_schema(categories: tuple[str, ...]) -> dict:
    """The content judge's answer: one boolean per category, every category, nothing else."""
    return {"type": "object", "properties": {category: {"type": "boolean"} for category in categories},
            "required": list(categories), "additionalProperties": False}


@dataclass(frozen=True)
class ParsedFlags:
    categories: tuple[str, ...] | None  # the categories answered true; None when the output is refused
    detail: str | None = None


def parse_category_flags(raw: str, categories: tuple[str, ...]) -> ParsedFlags:
    """Strict: exactly one JSON object with a boolean for each of `categories` and no other key ("yes", 1 or
    a missing category is a refusal, never a guess)."""
    value, detail = strict_json_object(raw, jsonschema.Draft202012Validator(category_flags_schema(categories)))
    if value is None:
        return ParsedFlags(None, detail)
    return ParsedFlags(tuple(category for category in categories if value[category]))
