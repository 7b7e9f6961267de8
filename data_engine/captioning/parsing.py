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
_CODE_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_MAX_DETAIL = 200

REJECT_EMPTY = "caption_empty"
REJECT_JSON_INVALID = "caption_json_invalid"
REJECT_JSON_SCHEMA = "caption_json_schema"
REJECT_REQUEST_FAILED = "caption_request_failed"
CAPTION_REJECTS = frozenset({REJECT_EMPTY, REJECT_JSON_INVALID, REJECT_JSON_SCHEMA, REJECT_REQUEST_FAILED})


@dataclass(frozen=True)
class ParsedCaption:
    text: str | None  # the caption to store (structured: canonical JSON), None when rejected
    reject: str | None = None
    detail: str | None = None


def clean_generation(raw: str) -> str:
    return _THINK_BLOCK.sub("", raw).strip()


def parse_caption(caption_type: str, raw: str) -> ParsedCaption:
    text = clean_generation(raw)
    if not text:
        return ParsedCaption(None, REJECT_EMPTY, f"model output {raw[:_MAX_DETAIL]!r} is empty once cleaned")
    if caption_type != "structured":
        return ParsedCaption(text)
    fenced = _CODE_FENCE.match(text)
    body = fenced.group(1) if fenced else text
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        return ParsedCaption(None, REJECT_JSON_INVALID, f"{exc.msg} at char {exc.pos}: {body[:_MAX_DETAIL]!r}")
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "<root>"
        return ParsedCaption(None, REJECT_JSON_SCHEMA, f"{where}: {error.message}"[:_MAX_DETAIL])
    return ParsedCaption(json.dumps(value, ensure_ascii=False, sort_keys=True))
